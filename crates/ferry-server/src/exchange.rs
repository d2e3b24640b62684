//! The token exchange and the JWT bearer grant, top to bottom. Each step returns an
//! [`OAuthError`] that names itself; the outcome, allowed or denied, becomes exactly one
//! audit event.
//!
//! Token exchange (RFC 8693):
//! 1. Choose the provider by the exact, string-typed `iss` of the subject token (a
//!    registered service account's `iss` selects the `service_account` provider).
//! 2. Verify the subject token with that provider's rules and keys (RFC 8725); a
//!    service account's assertion is verified with its registered keys and its `jti`
//!    consumed (RFC 7523 §3).
//! 3. Spend the DPoP proof's `jti`, if a proof came (only now: RFC 9449 §11.1).
//! 4. Apply the provider's condition and mapping → principal; charge the provider's
//!    rate bucket only when the condition passed, else the tenant's.
//! 5. Apply the audiences' access rules → grant (audiences, scopes, lifetime cap).
//! 6. Compute the lifetime (never past the subject token unless the provider opts out;
//!    never an already-expired token).
//! 7. Sign an RFC 9068 access token.
//!
//! JWT bearer (RFC 7523 §2.1): the assertion is a service account's own; it is verified
//! like step 2, the proof spent (3), the principal is the service account, then 5–7.

use std::collections::BTreeMap;

use ferry_core::decision::{Ask, Outcome, decide_for};
use ferry_core::error::desc;
use ferry_core::mapping::Principal;
use ferry_core::mint::{MintInput, access_token_claims};
use ferry_core::request::{ExchangeRequest, IssuedTokenType, JwtBearerRequest};
use ferry_core::response::TokenResponse;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_token::Act;
use ferry_verify::Verified;
use ferry_verify::dpop::DpopProof;
use serde::Deserialize as _;
use serde_json::Value;
use tracing::Instrument as _;

use crate::accounts::{AssertionError, verify_assertion};
use crate::audit::AuditEvent;
use crate::dpop::Pending;
use crate::errors::Role;
use crate::state::{AppState, Loaded};
use crate::{fingerprint, random_id};

/// The provider id under which service accounts appear in policies (`provider`).
pub const SERVICE_ACCOUNT_PROVIDER: &str = "service-account";

/// Verifies a service account's assertion: its registered keys, `aud` Ferry's issuer or
/// token endpoint, bounded lifetime, `jti` single use.
async fn verify_service_account(
    state: &AppState,
    loaded: &Loaded,
    iss: &str,
    token: &str,
    now: i64,
) -> Result<Verified, AssertionError> {
    let sa = loaded
        .accounts
        .service_accounts
        .get(iss)
        .ok_or(AssertionError::UnknownAccount)?;
    verify_assertion(
        token,
        &sa.keys,
        &sa.rules,
        state.replay.as_ref(),
        now,
        i64::try_from(loaded.config.limits.replay_clock_skew).unwrap_or(0),
    )
    .instrument(tracing::info_span!("verify", service_account = %iss))
    .await
}

/// Runs the exchange, filling `audit` with what was learnt along the way.
pub async fn exchange(
    state: &AppState,
    req: &ExchangeRequest,
    dpop: Option<&Pending>,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    // A Ferry token to narrow: its own path.
    if req.subject_token_type == ferry_core::request::SubjectTokenType::AccessToken {
        return crate::downscope::downscope(state, req, dpop, audit).await;
    }
    let now = state.clock.now();
    let loaded = state.loaded();
    audit.subject_token_sha256 = Some(fingerprint(req.subject_token.as_bytes()));
    audit.audiences = crate::audit::targets(&req.targets());

    // 1. Provider by exact issuer. A token from an unknown issuer costs no key lookup.
    //    The token is split and decoded once, here; verification reuses it.
    let peeked =
        ferry_verify::peek(&req.subject_token).map_err(|e| Role::Subject.verify_error(&e))?;
    let (provider, verified) = match loaded.providers.get(peeked.issuer()) {
        Some(provider) => {
            audit.provider = Some(provider.config.id.clone());
            audit.original_issuer = Some(peeked.issuer().to_owned());
            // 2. Verify.
            let verified =
                ferry_verify::verify_peeked_from(peeked, &provider.rules, &provider.keys, now)
                    .instrument(tracing::info_span!("verify", provider = %provider.config.id))
                    .await
                    .map_err(|e| Role::Subject.verify_error(&e))?;
            (provider, verified)
        }
        None => {
            // A service account's own assertion, where a service_account provider is
            // configured.
            let iss = peeked.issuer().to_owned();
            let provider = loaded
                .providers
                .get(ferry_core::config::SERVICE_ACCOUNT_ISSUER)
                .filter(|_| loaded.accounts.service_accounts.contains_key(&iss))
                .ok_or_else(|| Role::Subject.invalid("issuer not configured"))?;
            audit.provider = Some(provider.config.id.clone());
            audit.original_issuer = Some(iss.clone());
            let verified = verify_service_account(state, &loaded, &iss, &req.subject_token, now)
                .await
                .map_err(|e| Role::Subject.assertion_error(&e))?;
            (provider, verified)
        }
    };
    // 3. The subject token verified: now, and only now, the proof is spent.
    let dpop = crate::dpop::consume(state, dpop).await?;
    // A subject token bound to a key (RFC 9449 §6) is exchanged only by that key's
    // holder, and the new token stays bound to it: a stolen bound token never comes back
    // out of /token as a bearer token.
    if let Some(jkt) = ferry_verify::dpop::bound_jkt(&verified.claims)
        && dpop.is_none_or(|p| p.jkt != jkt)
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            Step::Verify,
            desc::INVALID_DPOP_PROOF,
        )
        .detail("the subject token is bound to a key and no proof by that key came with it"));
    }
    audit.original_subject = verified
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .map(crate::audit::bounded);

    // 4. Condition and mapping; the bucket of whoever is to pay.
    let principal = {
        let _span = tracing::info_span!("policy").entered();
        crate::charge::map(state, provider, &verified.claims)?
    };
    audit.subject = Some(principal.subject.clone());
    // 5–6. Access policy, lifetime.
    // Delegation (RFC 8693 §1.1, §4.1): an actor token names who acts for the subject.
    let (actor, act) = delegation(state, &loaded, req, &verified.claims, now).await?;
    let targets = req.targets();
    let ask = Ask {
        targets: &targets,
        scopes: &req.scopes,
        client_id: req.client_id.as_deref(),
        actor: actor.as_ref(),
    };
    let policy_span = tracing::info_span!("policy").entered();
    let outcome = decide_for(
        &loaded.config,
        provider.config.cap_lifetime_at_subject_expiry,
        principal,
        Some(verified.exp),
        now,
        ask,
        None,
    )?;
    drop(policy_span);
    let fallback = format!("ferry-provider:{}", provider.config.id);
    let resp = mint_token(
        state,
        &loaded,
        outcome,
        req.client_id.as_deref().unwrap_or(&fallback),
        req.requested_token_type,
        dpop,
        act.as_ref(),
        now,
        audit,
    )?;
    crate::tokens::maybe_reference(state, req.requested_token_type, resp, now).await
}

/// Delegation: verifies the actor token like a subject token (a trusted issuer, its
/// mapping), honours the subject's `may_act` (RFC 8693 §4.4), and builds the `act`
/// claim, nesting any `act` the subject already carries (a chain). Without an actor
/// token (impersonation) the subject's `act`, if any, is kept.
pub(crate) async fn delegation(
    state: &AppState,
    loaded: &Loaded,
    req: &ExchangeRequest,
    subject: &serde_json::Map<String, Value>,
    now: i64,
) -> Result<(Option<Principal>, Option<Act>), OAuthError> {
    // An `act` that is not an object naming its actor is refused, not copied blindly.
    let prior = match subject.get("act") {
        None => None,
        Some(v) => Some(
            Act::deserialize(v).map_err(|_| Role::Subject.invalid("the act claim is malformed"))?,
        ),
    };
    let Some(token) = &req.actor_token else {
        return Ok((None, prior));
    };
    let iss = ferry_verify::peek_issuer(token).map_err(|e| Role::Actor.verify_error(&e))?;
    let provider = loaded
        .providers
        .get(&iss)
        .ok_or_else(|| Role::Actor.invalid("actor issuer not configured"))?;
    let verified = ferry_verify::verify_from(token, &provider.rules, &provider.keys, now)
        .instrument(tracing::info_span!("verify_actor", provider = %provider.config.id))
        .await
        .map_err(|e| Role::Actor.verify_error(&e))?;
    if let Some(may) = subject.get("may_act") {
        let sub_ok = may.get("sub").and_then(Value::as_str)
            == verified.claims.get("sub").and_then(Value::as_str);
        let iss_ok = may
            .get("iss")
            .is_none_or(|i| i.as_str() == Some(iss.as_str()));
        if !(sub_ok && iss_ok) {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                Step::Policy,
                desc::ACTOR_NOT_ALLOWED,
            )
            .rule("may_act")
            .detail("the actor is not the one the subject token's may_act names"));
        }
    }
    // The actor's provider is charged like a subject's: after its condition passed.
    let actor = crate::charge::map(state, provider, &verified.claims)?;
    let act = Act {
        sub: actor.subject.clone(),
        provider: Some(actor.provider.clone()),
        act: prior.map(Box::new),
        ..Act::default()
    };
    Ok((Some(actor), Some(act)))
}

/// The JWT bearer grant: a service account trades its own signed assertion.
pub async fn jwt_bearer(
    state: &AppState,
    req: &JwtBearerRequest,
    client_id: Option<&str>,
    dpop: Option<&Pending>,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let now = state.clock.now();
    let loaded = state.loaded();
    audit.subject_token_sha256 = Some(fingerprint(req.assertion.as_bytes()));
    audit.audiences = crate::audit::targets(&req.targets());
    let iss = ferry_verify::peek_issuer(&req.assertion)
        .map_err(|e| Role::ServiceAccountAssertion.verify_error(&e))?;
    audit.provider = Some(SERVICE_ACCOUNT_PROVIDER.to_owned());
    verify_service_account(state, &loaded, &iss, &req.assertion, now)
        .await
        .map_err(|e| Role::ServiceAccountAssertion.assertion_error(&e))?;
    // A registered account's id, not whatever an unverified token claimed.
    audit.original_issuer = Some(iss.clone());
    let dpop = crate::dpop::consume(state, dpop).await?;
    // The account itself is the tenant and its own assertion the condition.
    crate::charge::provider(state, SERVICE_ACCOUNT_PROVIDER)?;
    audit.original_subject = Some(iss.clone());
    audit.subject = Some(iss.clone());
    let principal = Principal {
        provider: SERVICE_ACCOUNT_PROVIDER.to_owned(),
        subject: iss.clone(),
        groups: Vec::new(),
        attributes: BTreeMap::from([("service_account".to_owned(), iss.clone())]),
        original_issuer: iss.clone(),
        original_subject: Some(iss.clone()),
        ancestors: Vec::new(),
    };
    let targets = req.targets();
    let ask = Ask {
        targets: &targets,
        scopes: &req.scopes,
        client_id,
        actor: None,
    };
    // The assertion proves possession now; the issued lifetime is the policy's (its
    // short `exp` does not cap it).
    let outcome = {
        let _span = tracing::info_span!("policy").entered();
        decide_for(&loaded.config, false, principal, None, now, ask, None)?
    };
    let fallback = format!("ferry-service-account:{iss}");
    let act: Option<Act> = None;
    mint_token(
        state,
        &loaded,
        outcome,
        client_id.unwrap_or(&fallback),
        IssuedTokenType::AccessToken,
        dpop,
        act.as_ref(),
        now,
        audit,
    )
}

/// 7. Signs the access token and fills the audit event.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mint_token(
    state: &AppState,
    loaded: &Loaded,
    outcome: Outcome,
    client_id: &str,
    issued: IssuedTokenType,
    dpop: Option<&DpopProof>,
    act: Option<&Act>,
    now: i64,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    let _sign = tracing::info_span!("sign").entered();
    let Outcome {
        principal,
        grant,
        mut ttl,
    } = outcome;
    // Cut off from the key store past the ring's scheduled rotation, this replica's key
    // may be retired and later removed by the others: no token may outlive that.
    // One snapshot for both the deadline and the signer.
    let keys = state.keys.snapshot();
    if let Some(why) = &keys.cannot_sign {
        return Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            Step::Mint,
            desc::SIGNING_UNAVAILABLE,
        )
        .detail(why.clone()));
    }
    if let Some(deadline) = keys.signing_deadline {
        let left = u64::try_from(deadline.saturating_sub(now)).unwrap_or(0);
        if left < ttl {
            if left < loaded.config.lifetimes.min_ttl {
                return Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    Step::Mint,
                    desc::SIGNING_UNAVAILABLE,
                )
                .detail("the key store has been unreachable past the signing key's rotation: refusing to sign"));
            }
            // Every request hits this while the store is away: one line per interval.
            tracing::debug!(ttl, left, "token lifetime shortened");
            state.warnings.warn(
                "key store unreachable past the scheduled rotation: token lifetime shortened",
            );
            ttl = left;
        }
    }
    // An audience or rule may grant only key-bound tokens.
    if grant.require_dpop && dpop.is_none() {
        return Err(OAuthError::new(
            ErrorCode::InvalidDpopProof,
            Step::Policy,
            desc::DPOP_REQUIRED,
        )
        .rule(grant.rules.join(", "))
        .detail("DPoP required by the audience or rule"));
    }
    audit.rule = Some(grant.rules.join(", "));
    audit.scopes = grant.scopes.clone();
    audit.client_id = Some(client_id.to_owned());
    let jti = random_id(16);
    let input = MintInput {
        issuer: &loaded.config.issuer,
        client_id,
        now,
        ttl,
        jti: &jti,
        cnf_jkt: dpop.map(|p| p.jkt.as_str()),
        act,
    };
    let claims = access_token_claims(&input, &principal, &grant);
    let token = ferry_keys::sign_jwt(
        keys.active.as_ref(),
        ferry_token::ACCESS_TOKEN_TYPE,
        &claims,
    )
    .map_err(|e| crate::tokens::sign_error(&e))?;
    audit.jti = Some(jti);
    audit.exp = Some(now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
    Ok(TokenResponse {
        access_token: token,
        issued_token_type: issued.uri(),
        token_type: if dpop.is_some() { "DPoP" } else { "Bearer" },
        expires_in: ttl,
        scope: (!grant.scopes.is_empty()).then(|| grant.scopes.join(" ")),
    })
}
