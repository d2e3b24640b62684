//! Server-side downscoping: a token Ferry issued, presented as
//! `subject_token_type=urn:ietf:params:oauth:token-type:access_token`, is exchanged for a
//! narrower one — a subset of its audiences, a subset of its scopes, an `exp` no later
//! than its own. Nothing can widen: an audience or scope the parent lacks is refused
//! (`invalid_target`, `invalid_scope`). A bound parent needs a DPoP proof by its key and
//! the child stays bound. Ferry's own tokens are never accepted as `…:jwt` or
//! `…:id_token` subjects (their `typ` is `at+jwt` and Ferry is not its own provider).
//! Narrowing counts against the bucket of the provider the parent came from.

use std::sync::{Arc, RwLock};

use ferry_core::decision::Outcome;
use ferry_core::error::desc;
use ferry_core::mapping::Principal;
use ferry_core::policy::Grant;
use ferry_core::request::{ExchangeRequest, IssuedTokenType};
use ferry_core::response::TokenResponse;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_token::AccessClaims;
use ferry_verify::{Algorithm, KeySet, Rules};
use serde_json::Value;

use crate::audit::AuditEvent;
use crate::dpop::Pending;
use crate::errors::Role;
use crate::fingerprint;
use crate::state::AppState;

/// Ferry's own public keys, parsed once per key-ring version.
#[derive(Debug, Default)]
pub struct OwnKeys(RwLock<Option<(u64, Arc<KeySet>)>>);

impl OwnKeys {
    /// The key set of the ring version in force.
    pub(crate) fn get(&self, state: &AppState) -> Arc<KeySet> {
        let snap = state.keys.snapshot();
        if let Some((v, k)) = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && *v == snap.version
        {
            return k.clone();
        }
        let algs = Algorithm::ferry();
        let set = Arc::new(
            KeySet::from_jwks(snap.jwks.as_bytes(), &algs)
                .map(|(s, _)| s)
                .unwrap_or_default(),
        );
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((snap.version, set.clone()));
        set
    }
}

fn invalid_subject(detail: impl Into<String>) -> OAuthError {
    Role::Parent.invalid(detail)
}

/// How many times a token may be narrowed at Ferry, one from another: each child carries
/// the `jti`s of all its ancestors, so this bounds its size.
pub const MAX_NARROWING_DEPTH: usize = 8;

/// The child's ancestors: the parent's, then the parent.
fn lineage(parent: &AccessClaims) -> Result<Vec<String>, OAuthError> {
    if parent.ferry.ancestors.len() >= MAX_NARROWING_DEPTH {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Request,
            desc::NARROWED_TOO_OFTEN,
        ));
    }
    let mut ancestors = parent.ferry.ancestors.clone();
    ancestors.push(parent.jti.clone());
    Ok(ancestors)
}

/// Narrows a Ferry-issued token.
pub async fn downscope(
    state: &AppState,
    req: &ExchangeRequest,
    dpop: Option<&Pending>,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let now = state.clock.now();
    let loaded = state.loaded();
    let config = &loaded.config;
    audit.subject_token_sha256 = Some(fingerprint(req.subject_token.as_bytes()));
    audit.audiences = crate::audit::targets(&req.targets());
    audit.provider = Some("ferry".to_owned());
    audit.original_issuer = Some(config.issuer.clone());

    // A reference token stands for its JWT, which its holder never sees: what narrows a
    // handle is a handle (a request for a JWT by name is refused).
    let from_handle = req.subject_token.starts_with(crate::tokens::HANDLE_PREFIX);
    let issued_type = match (from_handle, req.requested_token_type) {
        (false, t) => t,
        (true, IssuedTokenType::Jwt) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                Step::Request,
                desc::HANDLE_NARROWS_TO_HANDLE,
            ));
        }
        (true, _) => IssuedTokenType::Reference,
    };
    let subject_token = match req.subject_token.strip_prefix(crate::tokens::HANDLE_PREFIX) {
        Some(_) => state
            .revocations
            .get_handle(&fingerprint(req.subject_token.as_bytes()), now)
            .await
            .map_err(crate::tokens::unavailable)?
            .ok_or_else(|| invalid_subject("unknown or expired reference token"))?,
        None => req.subject_token.clone(),
    };

    // 1. The parent: signed by Ferry's own keys, typ at+jwt, unexpired.
    // No audience requested keeps the parent's (Google's downscoping clients send none).
    let requested = req.targets();
    let peeked_aud = if requested.is_empty() {
        ferry_verify::peek_claims(&subject_token)
            .ok()
            .and_then(|c| AccessClaims::from_map(&c).ok())
            .map(|c| c.aud.0)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let targets = if requested.is_empty() {
        peeked_aud
    } else {
        requested
    };
    if targets.is_empty() {
        return Err(invalid_subject(
            "no audience requested and none in the parent",
        ));
    }
    let rules = Rules::new(config.issuer.clone(), targets.clone())
        .require_type(ferry_token::ACCESS_TOKEN_TYPE)
        .set_allowed_algorithms(Algorithm::ferry())
        .accept_other_audiences()
        .allow_lifetime_up_to(std::time::Duration::from_secs(
            crate::tokens::longest_lifetime(state)
                .saturating_add(60)
                .unsigned_abs(),
        ));
    let keys = state.own_keys.get(state);
    let parent = match ferry_verify::verify(&subject_token, &rules, &keys, now) {
        Ok(v) => v,
        // An audience the parent does not hold fails the aud check: that is widening.
        Err(ferry_verify::VerifyError::Audience) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                Step::Policy,
                desc::TARGET_NOT_ALLOWED,
            )
            .rule("downscoping: audiences must be a subset of the parent's")
            .detail("requested audience not in the parent token"));
        }
        Err(e) => return Err(Role::Parent.verify_error(&e)),
    };
    // Signed by Ferry as an access token, so it fits Ferry's token profile.
    let c = AccessClaims::from_map(&parent.claims)
        .map_err(|_| invalid_subject("the parent token's claims are malformed"))?;
    audit.original_subject = Some(crate::audit::bounded(&c.sub));
    // A revoked parent cannot be narrowed.
    match crate::tokens::is_revoked(state, &c, now).await {
        Ok(false) => {}
        Ok(true) => {
            // RFC 8693 §2.2.2: an unacceptable subject token is `invalid_request`.
            return Err(invalid_subject("the parent token has been revoked"));
        }
        Err(e) => return Err(crate::tokens::unavailable(e)),
    }
    // The parent verified: the proof is spent, and the narrowing is charged to the
    // bucket of the provider the parent was first issued from (downscoping is no way
    // around a provider's limit).
    let dpop = crate::dpop::consume(state, dpop).await?;
    crate::charge::provider(state, &c.ferry.provider)?;

    // 2. Audiences: every one requested must be one of the parent's.
    if let Some(extra) = targets.iter().find(|t| !c.aud.contains(t)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            Step::Policy,
            desc::TARGET_NOT_ALLOWED,
        )
        .rule("downscoping: audiences must be a subset of the parent's")
        .detail(format!(
            "audience of {} bytes not in the parent token",
            extra.len()
        )));
    }
    // 3. Scopes: a subset of the parent's; none requested keeps the parent's.
    if req.scopes.iter().any(|s| !c.scope.contains(s)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            Step::Policy,
            desc::SCOPE_NOT_ALLOWED,
        )
        .rule("downscoping: scopes must be a subset of the parent's"));
    }
    let scopes = if req.scopes.is_empty() {
        c.scope.0.clone()
    } else {
        req.scopes.clone()
    };
    // 4. Binding: a bound parent is narrowed only by its key's holder.
    if let Some(jkt) = c.bound_jkt()
        && dpop.is_none_or(|p| p.jkt != jkt)
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            Step::Verify,
            desc::INVALID_DPOP_PROOF,
        )
        .detail("the parent token is bound to a key and no proof by that key came with it"));
    }
    // 5. Lifetime: never past the parent's exp.
    let remaining = u64::try_from(parent.exp.saturating_sub(now)).unwrap_or(0);
    if remaining < config.lifetimes.min_ttl {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Mint,
            desc::SUBJECT_EXPIRES_TOO_SOON,
        )
        .detail(format!("parent has {remaining}s left")));
    }
    let principal = Principal {
        provider: c.ferry.provider.clone(),
        subject: c.sub.clone(),
        groups: c.groups.clone(),
        attributes: c.attributes.clone(),
        original_issuer: c.ferry.iss.clone(),
        original_subject: c.ferry.sub.clone(),
        ancestors: lineage(&c)?,
    };
    audit.subject = Some(principal.subject.clone());
    // A delegated parent keeps its `act`; a new actor is nested over it.
    let (_actor, act) =
        crate::exchange::delegation(state, &loaded, req, &parent.claims, now).await?;
    // An added access boundary (Google's `options`), on top of the parent's: every
    // boundary in the list must allow.
    let mut boundaries: Vec<Value> = c.access_boundaries.clone().unwrap_or_default();
    if let Some(options) = &req.options
        && let Some(b) = ferry_core::boundary::access_boundary(options, config.policy.cel())?
    {
        boundaries.push(b);
    }
    let outcome = Outcome {
        principal,
        grant: Grant {
            audiences: targets,
            scopes,
            ttl_cap: Some(remaining),
            rules: vec!["downscoping".to_owned()],
            require_dpop: c.bound_jkt().is_some(),
            access_boundaries: (!boundaries.is_empty()).then_some(boundaries),
        },
        ttl: remaining.min(config.lifetimes.max_ttl),
    };
    let client_id = c.client_id.clone();
    let resp = crate::exchange::mint_token(
        state,
        &loaded,
        outcome,
        &client_id,
        issued_type,
        dpop,
        act.as_ref(),
        now,
        audit,
    )?;
    crate::tokens::maybe_reference(state, issued_type, resp, now).await
}
