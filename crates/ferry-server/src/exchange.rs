//! The token exchange, top to bottom. Each step returns an [`OAuthError`] that names
//! itself; the outcome, allowed or denied, becomes exactly one audit event.
//!
//! 1. Choose the provider by the exact, string-typed `iss` of the subject token.
//! 2. Verify the subject token with that provider's rules and keys (RFC 8725).
//! 3. Apply the provider's condition and mapping → principal.
//! 4. Apply the audiences' access rules → grant (audiences, scopes, lifetime cap).
//! 5. Compute the lifetime (never past the subject token unless the provider opts out;
//!    never an already-expired token).
//! 6. Sign an RFC 9068 access token.

use ferry_core::decision::{Ask, Outcome, decide_for};
use ferry_core::error::desc;
use ferry_core::mint::{MintInput, access_token_claims};
use ferry_core::request::ExchangeRequest;
use ferry_core::response::TokenResponse;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_verify::VerifyError;
use tracing::Instrument as _;

use crate::audit::AuditEvent;
use crate::state::AppState;
use crate::{fingerprint, random_id};

fn invalid_subject(detail: impl Into<String>) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidRequest,
        Step::Verify,
        desc::INVALID_SUBJECT_TOKEN,
    )
    .detail(detail)
}

/// Runs the exchange, filling `audit` with what was learnt along the way.
pub async fn exchange(
    state: &AppState,
    req: &ExchangeRequest,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let now = state.clock.now();
    let loaded = state.loaded();
    audit.subject_token_sha256 = Some(fingerprint(req.subject_token.as_bytes()));
    audit.audiences = req.targets();

    // 1. Provider by exact issuer. A token from an unknown issuer costs no key lookup.
    let iss = ferry_verify::peek_issuer(&req.subject_token)
        .map_err(|e| invalid_subject(e.to_string()))?;
    let provider = loaded
        .providers
        .get(&iss)
        .ok_or_else(|| invalid_subject("issuer not configured"))?;
    audit.provider = Some(provider.config.id.clone());
    audit.original_issuer = Some(iss);

    // 2. Verify.
    let verified =
        ferry_verify::verify_from(&req.subject_token, &provider.rules, &provider.keys, now)
            .instrument(tracing::info_span!("verify", provider = %provider.config.id))
            .await
            .map_err(|e| match e {
                // The issuer cannot be reached and no usable cached keys remain.
                VerifyError::KeysUnavailable(detail) => OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    Step::Verify,
                    desc::KEYS_UNAVAILABLE,
                )
                .detail(detail),
                other => invalid_subject(other.to_string()),
            })?;
    // 2b. The provider's bucket counts only tokens whose signature verified.
    if let Err(retry) = state.limits.check_provider(&provider.config.id) {
        state
            .metrics
            .limited
            .get_or_create(&crate::metrics::LimitLabels {
                limit: "provider".to_owned(),
            })
            .inc();
        let mut e = OAuthError::new(ErrorCode::InvalidRequest, Step::Verify, desc::RATE_LIMITED)
            .status(429)
            .detail("provider rate limit");
        e.retry_after = Some(retry.0);
        return Err(e);
    }
    audit.original_subject = verified
        .claims
        .get("sub")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);

    // 3–5. Condition and mapping, access policy, lifetime.
    let targets = req.targets();
    let ask = Ask {
        targets: &targets,
        scopes: &req.scopes,
        client_id: req.client_id.as_deref(),
    };
    let policy_span = tracing::info_span!("policy").entered();
    let principal = provider
        .config
        .mapping
        .apply(&provider.config.id, &verified.claims, None)?;
    audit.subject = Some(principal.subject.clone());
    let Outcome {
        principal,
        grant,
        ttl,
    } = decide_for(
        &loaded.config,
        &provider.config,
        principal,
        Some(verified.exp),
        now,
        ask,
        None,
    )?;
    audit.rule = Some(grant.rules.join(", "));
    audit.scopes = grant.scopes.clone();

    drop(policy_span);
    // 6. Sign.
    let _sign = tracing::info_span!("sign").entered();
    let jti = random_id(16);
    let provider_client = format!("ferry-provider:{}", provider.config.id);
    let client_id = req.client_id.as_deref().unwrap_or(&provider_client);
    audit.client_id = Some(client_id.to_owned());
    let input = MintInput {
        issuer: &loaded.config.issuer,
        client_id,
        now,
        ttl,
        jti: &jti,
    };
    let claims = access_token_claims(&input, &principal, &grant);
    let token =
        ferry_keys::sign_jwt(state.keys.active().as_ref(), "at+jwt", &claims).map_err(|e| {
            OAuthError::new(ErrorCode::ServerError, Step::Mint, desc::INTERNAL)
                .detail(e.to_string())
        })?;
    audit.jti = Some(jti);
    audit.exp = Some(now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));

    Ok(TokenResponse {
        access_token: token,
        issued_token_type: req.requested_token_type.uri(),
        token_type: "Bearer",
        expires_in: ttl,
        scope: (!grant.scopes.is_empty()).then(|| grant.scopes.join(" ")),
    })
}
