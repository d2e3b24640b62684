//! DPoP at `/token` and `/v1/token` (RFC 9449): the proof in the `DPoP` header is checked
//! against the configured public URL of the path used (never the `Host` header) and, when configured, must
//! carry a fresh server nonce. Its `jti` is single use (§11.1), but it is spent only
//! once the grant's subject token verified: a checked proof is a [`Pending`] that the
//! grant must [`consume`] to get the [`DpopProof`] that minting takes, so no grant can
//! forget the step, and nobody without a valid subject token can fill the proof cache
//! (a proof's key is anyone's to make). Nonces are stateless: a timestamp and its HMAC
//! under a key made at start, valid for the proof window.

use axum::http::HeaderMap;
use ferry_core::error::desc;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_verify::dpop::{DEFAULT_DPOP_ALGORITHMS, DpopCheck, DpopProof, verify_proof};

use crate::replay::{ReplayError, Spend};
use crate::state::{AppState, Loaded};

/// The two paths of the token endpoint. Both run this same pipeline; they differ only in
/// the URL a DPoP proof's `htu` must name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Endpoint {
    /// `/token`, the one the metadata names.
    #[default]
    Token,
    /// `/v1/token`, where Google's client libraries post (`https://sts.<universe_domain>/v1/token`).
    GoogleV1,
}

fn invalid(detail: impl Into<String>) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidDpopProof,
        Step::Request,
        desc::INVALID_DPOP_PROOF,
    )
    .detail(detail)
}

/// A checked proof whose `jti` is not yet spent.
#[derive(Debug)]
pub struct Pending(DpopProof);

impl Pending {
    /// The thumbprint of the proof's key (RFC 7638).
    pub fn jkt(&self) -> &str {
        &self.0.jkt
    }
}

/// Spends the proof's `jti` (after the subject token verified), remembered under its
/// key for as long as any replica could accept the proof: `max(iat, now)` plus the
/// window plus the allowed clock difference between replicas.
pub async fn consume<'a>(
    state: &AppState,
    loaded: &Loaded,
    pending: Option<&'a Pending>,
) -> Result<Option<&'a DpopProof>, OAuthError> {
    let Some(Pending(p)) = pending else {
        return Ok(None);
    };
    let now = state.clock.now();
    let window = i64::try_from(loaded.config.dpop.iat_window).unwrap_or(60);
    let skew = i64::try_from(loaded.config.limits.replay_clock_skew).unwrap_or(0);
    let until = p.iat.max(now).saturating_add(window).saturating_add(skew);
    let principal = format!("dpop:{}", p.jkt);
    // A proof is accepted with an `iat` up to the window ahead of now: one issued
    // before a loss of the replay state plus the window may have been used.
    let spend = Spend {
        principal: &principal,
        jti: &p.jti,
        issued: p.iat,
        leeway: window,
        skew,
        until,
        now,
    };
    state
        .dpop_replay
        .consume(spend)
        .await
        .map_err(|e| match e {
            ReplayError::Unavailable => crate::errors::replay_unavailable(),
            // A full cache is not a replay: audited (and counted) as what it is.
            ReplayError::Full | ReplayError::ShareFull => {
                crate::errors::replay_full("DPoP replay cache full")
            }
            ReplayError::Replayed => invalid("DPoP proof replayed"),
            // RFC 9449 §5: the proof is what cannot be accepted; a new one (issued now)
            // will be once the loss is older than the window.
            ReplayError::BeforeLoss => OAuthError::new(
                ErrorCode::InvalidDpopProof,
                Step::Request,
                desc::DPOP_BEFORE_REPLAY_LOSS,
            )
            .detail("DPoP proof issued before replay state was lost"),
        })?;
    Ok(Some(p))
}

/// Checks the `DPoP` header of a token request, if any; its `jti` is spent later, by
/// [`consume`]. Its `htu` must name the path the request was sent to: a proof made for
/// `/token` is refused at `/v1/token` and the other way round.
pub async fn check_token_request(
    state: &AppState,
    loaded: &Loaded,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Result<Option<Pending>, OAuthError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    let proof = first
        .to_str()
        .map_err(|_| invalid("DPoP header is not ASCII"))?;
    let cfg = &loaded.config.dpop;
    let now = state.clock.now();
    let window = i64::try_from(cfg.iat_window).unwrap_or(60);
    let check = DpopCheck {
        method: "POST",
        url: match endpoint {
            Endpoint::Token => &cfg.token_url,
            Endpoint::GoogleV1 => &cfg.v1_token_url,
        },
        now,
        window,
        access_token: None,
        nonce: None,
        algorithms: DEFAULT_DPOP_ALGORITHMS,
    };
    let p = verify_proof(proof, &check).map_err(|e| invalid(e.to_string()))?;
    if cfg.require_nonce
        && !p
            .nonce
            .as_deref()
            .is_some_and(|n| state.nonces.valid(n, now, window))
    {
        return Err(
            OAuthError::new(ErrorCode::UseDpopNonce, Step::Request, desc::DPOP_NONCE)
                .detail("nonce missing or stale"),
        );
    }
    Ok(Some(Pending(p)))
}
