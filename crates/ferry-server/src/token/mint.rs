//! The last steps: the decision (whose rules), the lifetime, and signing.

use ferry_core::binding::{self, Binding, BindingError};
use ferry_core::error::desc;
use ferry_core::mapping::Principal;
use ferry_core::mint::{MintInput, access_token_claims, issued_lifetime};
use ferry_core::narrow;
use ferry_core::policy::{Grant, Situation};
use ferry_core::response::TokenResponse;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_keys::Snapshot;
use ferry_token::Act;

use super::subject::{Ask, Policy, Subject};
use crate::ids::random_id;
use crate::state::{AppState, Loaded};

/// 9. The decision: the audiences' rules and then their own claims, or "narrower than the
///    parent" (its claims carried, never evaluated again) — and, when an actor is added
///    while narrowing, what the audiences' rules allow that actor too.
pub fn decide(
    loaded: &Loaded,
    ask: &Ask,
    subject: &Subject,
    actor: Option<&Principal>,
    situation: &Situation,
    now: i64,
) -> Result<Grant, OAuthError> {
    let _span = tracing::info_span!("policy").entered();
    let config = &loaded.config;
    let rules = |scopes: &[String]| {
        config.policy.decide_in(
            situation,
            &subject.principal,
            ask.client_id.as_deref(),
            subject.targets(ask),
            scopes,
            actor,
            None,
        )
    };
    // An access boundary asked for (Google's `options`) is added whatever the grant.
    let added = match &ask.options {
        Some(o) => ferry_core::boundary::access_boundary(o, config.policy.cel())?,
        None => None,
    };
    match &subject.policy {
        Policy::Rules => {
            // The rules, then the audiences' own claims (as `ferry explain` decides).
            let mut grant = config.policy.decide_with_claims(
                situation,
                &subject.principal,
                ask.client_id.as_deref(),
                &ask.targets,
                &ask.scopes,
                actor,
                None,
            )?;
            if let Some(b) = added {
                grant.access_boundaries.get_or_insert_with(Vec::new).push(b);
            }
            Ok(grant)
        }
        Policy::Narrower { parent, targets } => {
            let narrowed = narrow::narrow(parent, targets, &ask.scopes, added, now)?;
            match actor {
                None => Ok(narrowed),
                Some(_) => Ok(narrow::within(narrowed, rules(&ask.scopes)?)),
            }
        }
    }
}

/// 10. The lifetime: the grant's cap, the global cap, the subject's expiry; then no
///     longer than this replica may sign for.
pub fn lifetime(
    state: &AppState,
    loaded: &Loaded,
    keys: &Snapshot,
    subject: &Subject,
    grant: &Grant,
    now: i64,
) -> Result<u64, OAuthError> {
    let lifetimes = &loaded.config.lifetimes;
    let mut ttl = issued_lifetime(lifetimes, grant, now, subject.exp, subject.cap_at_exp)?;
    // Cut off from the key store past the ring's scheduled rotation, this replica's key
    // may be retired and later removed by the others: no token may outlive that.
    if let Some(deadline) = keys.signing_deadline {
        let left = u64::try_from(deadline.saturating_sub(now)).unwrap_or(0);
        if left < ttl {
            if left < lifetimes.min_ttl {
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
    Ok(ttl)
}

/// What one issued token is made of.
pub struct Minting<'a> {
    /// The key-ring snapshot whose deadline bounded the lifetime: its key signs.
    pub keys: &'a Snapshot,
    /// The decided grant.
    pub grant: &'a Grant,
    /// The lifetime.
    pub ttl: u64,
    /// What the request proved: its spent DPoP proof's key, its client certificate.
    pub proofs: binding::Proofs<'a>,
    /// The actor token's binding.
    pub actor_binding: &'a Binding,
    /// The `act` claim.
    pub act: Option<&'a Act>,
    /// The token's id.
    pub jti: &'a str,
}

/// The one binding of the issued token (`ferry_core::binding::issued`): a grant
/// requiring DPoP or a certificate, or a bound subject or actor, is never issued as a
/// bearer token.
fn issued_binding(subject: &Subject, m: &Minting<'_>) -> Result<Binding, OAuthError> {
    binding::issued(
        m.grant.require_dpop,
        m.grant.require_mtls,
        &subject.binding,
        m.actor_binding,
        m.proofs,
    )
    .map_err(|e| {
        let (code, description) = match e {
            BindingError::DpopRequired => (ErrorCode::InvalidDpopProof, desc::DPOP_REQUIRED),
            BindingError::CertificateRequired => {
                (ErrorCode::InvalidRequest, desc::CERTIFICATE_REQUIRED)
            }
            _ => (ErrorCode::InvalidRequest, desc::CONFLICTING_BINDINGS),
        };
        OAuthError::new(code, Step::Policy, description)
            .rule(m.grant.rules.join(", "))
            .detail(e.to_string())
    })
}

/// 11. Signs the access token, bound as [`issued_binding`] says; returns the response
///     and the binding.
pub fn mint(
    loaded: &Loaded,
    subject: &Subject,
    m: &Minting<'_>,
    now: i64,
) -> Result<(TokenResponse, Binding), OAuthError> {
    let _sign = tracing::info_span!("sign").entered();
    let bound = issued_binding(subject, m)?;
    let keys = m.keys;
    if let Some(why) = &keys.cannot_sign {
        return Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            Step::Mint,
            desc::SIGNING_UNAVAILABLE,
        )
        .detail(why.clone()));
    }
    let input = MintInput {
        issuer: &loaded.config.issuer,
        client_id: &subject.client_id,
        now,
        ttl: m.ttl,
        jti: m.jti,
        cnf: &bound,
        act: m.act,
        may_act: subject.may_act.as_ref(),
    };
    let claims = access_token_claims(&input, &subject.principal, m.grant);
    let token = ferry_keys::sign_jwt(
        keys.active.as_ref(),
        ferry_token::ACCESS_TOKEN_TYPE,
        &claims,
    )
    .map_err(|e| crate::tokens::sign_error(&e))?;
    // RFC 8705 §3: a certificate-bound token is still of type Bearer.
    let token_type = if bound.jkt().is_some() {
        "DPoP"
    } else {
        "Bearer"
    };
    Ok((
        TokenResponse {
            access_token: token,
            issued_token_type: subject.issued.uri(),
            token_type,
            expires_in: m.ttl,
            scope: (!m.grant.scopes.is_empty()).then(|| m.grant.scopes.join(" ")),
        },
        bound,
    ))
}

/// A fresh token id.
pub fn new_jti() -> String {
    random_id(16)
}
