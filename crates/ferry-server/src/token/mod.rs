//! `POST /token` as one pipeline. [`run`] takes one configuration snapshot and runs the
//! shared steps in order, once each, for every grant:
//!
//!  1. admit — the source's and the global buckets (the HTTP adapter, before the body);
//!  2. client authentication;
//!  3. the client's bucket (registered clients);
//!  4. the DPoP proof, checked (its `jti` not yet spent);
//!  5. `grant.subject()` — the only grant-specific step: the credential verified and
//!     turned into a [`Subject`] (principal, provenance, expiry, binding, prior `act`,
//!     `may_act`, and whose rules decide);
//!  6. the bucket of whoever pays (the provider, or the tenant its condition refused);
//!  7. binding — the proof spent, the subject's key proven;
//!  8. delegation — the actor verified, `may_act`, the actor's key proven, `act` nested;
//!  9. the decision — the audiences' rules, or narrower than the parent (plus the rules
//!     for an actor added while narrowing);
//! 10. the lifetime;
//! 11. mint;
//! 12. the reference handle or split token, when one was asked for.
//!
//! A grant cannot skip or reorder a shared step: it only produces a subject.

mod actor;
mod mint;
mod parent;
mod provider;
mod saml;
mod subject;
mod x509;

use axum::http::HeaderMap;
use ferry_core::binding::{self, Binding, BindingError};
use ferry_core::error::desc;
use ferry_core::policy::Situation;
use ferry_core::request::{ClientParams, TokenRequest};
use ferry_core::response::TokenResponse;
use ferry_core::{ErrorCode, OAuthError, Step};

pub use crate::dpop::Endpoint;
pub use provider::SERVICE_ACCOUNT_PROVIDER;
pub use subject::{Ask, GrantKind, Subject, Trail};

use crate::audit::AuditEvent;
use crate::charge::Refused;
use crate::client_auth::authenticate;
use crate::state::{AppState, Loaded};

/// Who sent the request, as its connection says: the client's address (through trusted
/// proxies) and the certificate it presented, if any.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The client's address.
    pub source: Option<std::net::IpAddr>,
    /// The client certificate.
    pub certificate: Option<std::sync::Arc<crate::client_cert::ClientChain>>,
    /// The path the request was sent to: a DPoP proof must name it (RFC 9449 §4.3).
    pub endpoint: Endpoint,
}

/// What the audit event says of an issued token.
fn record_issued(
    audit: &mut AuditEvent,
    grant: &ferry_core::policy::Grant,
    subject: &Subject,
    jti: String,
    ttl: u64,
    now: i64,
    bound: &Binding,
) {
    audit.rule = Some(grant.rules.join(", "));
    audit.scopes = grant.scopes.clone();
    audit.client_id = Some(subject.client_id.clone());
    audit.jti = Some(jti);
    audit.exp = Some(now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
    audit.cnf_jkt = bound.jkt().map(str::to_owned);
    audit.cnf_x5t = bound.x5t().map(str::to_owned);
    audit.reference = subject.issued.is_handle();
}

/// Step 5: the grant's subject.
async fn subject_of(
    state: &AppState,
    loaded: &Loaded,
    ask: &Ask,
    now: i64,
    trail: &mut Trail,
) -> Result<Subject, Refused> {
    match ask.grant {
        GrantKind::ProviderToken => provider::provider_token(state, loaded, ask, now, trail).await,
        GrantKind::FerryToken => parent::ferry_token(state, loaded, ask, now, trail).await,
        GrantKind::JwtBearer => provider::jwt_bearer(state, loaded, ask, now, trail).await,
        GrantKind::Saml => saml::saml_assertion(state, loaded, ask, now, trail).await,
        GrantKind::X509 => x509::certificate_chain(loaded, ask, now, trail),
    }
}

/// Proofs that do not cover the keys the subject and actor are bound to: a missing or
/// other certificate is `invalid_request`, a missing or other DPoP key
/// `invalid_dpop_proof`.
fn unproven(e: BindingError) -> OAuthError {
    let (code, description) = if e.is_certificate() {
        (ErrorCode::InvalidRequest, desc::CERTIFICATE_REQUIRED)
    } else {
        (ErrorCode::InvalidDpopProof, desc::INVALID_DPOP_PROOF)
    };
    OAuthError::new(code, Step::Verify, description).detail(e.to_string())
}

/// Steps 2–4, then the rest: the request after the HTTP adapter admitted and parsed it.
#[allow(
    clippy::too_many_arguments,
    reason = "the request as the adapter read it"
)]
pub async fn run(
    state: &AppState,
    loaded: &Loaded,
    headers: &HeaderMap,
    caller: &Caller,
    request: TokenRequest,
    params: &ClientParams,
    audit: &mut AuditEvent,
) -> Result<TokenResponse, OAuthError> {
    // 2–3. The client, and its bucket.
    let chain = caller.certificate.as_deref();
    let client = authenticate(state, loaded, headers, params, chain).await?;
    if let Some(c) = client.as_ref().filter(|c| c.registered) {
        crate::charge::client(state, &c.id)?;
    }
    let client_authenticated = client
        .as_ref()
        .is_some_and(|c| c.registered && c.method != ferry_core::config::ClientAuth::None);
    let client_id = client.map(|c| c.id);
    audit.client_id = client_id.clone();
    // 4. The proof, checked; spent only once the subject is verified (step 7).
    let pending = crate::dpop::check_token_request(state, loaded, headers, caller.endpoint).await?;
    let mut ask = match request {
        TokenRequest::TokenExchange(req) => Ask::exchange(req, client_id),
        TokenRequest::JwtBearer(req) => Ask::jwt_bearer(req, client_id),
    };
    ask.certificate = caller.certificate.clone();
    audit.grant_type = Some(ask.grant.audit_name());
    audit.subject_token_sha256 = Some(crate::ids::fingerprint(ask.credential.as_bytes()));
    audit.actor_token_sha256 = ask
        .actor_token
        .as_ref()
        .map(|t| crate::ids::fingerprint(t.as_bytes()));
    audit.audiences = crate::audit::targets(&ask.targets);
    let now = state.clock.now();
    // 5–6. The subject, and the bucket of whoever pays for it.
    let mut trail = Trail::default();
    let subject = subject_of(state, loaded, &ask, now, &mut trail).await;
    audit.provider = trail.provider;
    audit.original_issuer = trail.original_issuer;
    audit.original_subject = trail.original_subject;
    let subject = crate::charge::settle(state, |s: &Subject| s.payer.clone(), subject)?;
    audit.subject = Some(subject.principal.subject.clone());
    audit.parent_jti = subject.principal.ancestors.last().cloned();
    // 7. Binding: the proof spent, the subject's key proven by it.
    let proof = crate::dpop::consume(state, loaded, pending.as_ref()).await?;
    let proofs = binding::Proofs {
        jkt: proof.map(|p| p.jkt.as_str()),
        x5t: ask.certificate.as_deref().map(|c| c.thumbprint()),
    };
    binding::check(&subject.binding, &Binding::Bearer, proofs).map_err(unproven)?;
    // 8. Delegation, the actor's key proven by the same proof.
    let delegation =
        actor::delegate(state, loaded, ask.actor_token.as_deref(), &subject, now).await?;
    if let Some(a) = &delegation.actor {
        audit.actor = Some(a.subject.clone());
        audit.actor_provider = Some(a.provider.clone());
    }
    binding::check(&subject.binding, &delegation.binding, proofs).map_err(unproven)?;
    // 9–10. The decision and the lifetime, under one key-ring snapshot with the signing.
    let situation = Situation {
        source_ip: caller.source,
        time: now,
        // A token is bound exactly when a proof or a certificate came (step 7 refused a
        // bound credential without its proof).
        sender_constrained: proofs.jkt.is_some() || proofs.x5t.is_some(),
        client_authenticated,
    };
    let grant = mint::decide(
        loaded,
        &ask,
        &subject,
        delegation.actor.as_ref(),
        &situation,
        now,
    )?;
    let keys = state.keys.snapshot();
    let ttl = mint::lifetime(state, loaded, &keys, &subject, &grant, now)?;
    // 11. Mint.
    let jti = mint::new_jti();
    let minting = mint::Minting {
        keys: &keys,
        grant: &grant,
        ttl,
        proofs,
        actor_binding: &delegation.binding,
        act: delegation.act.as_ref(),
        jti: &jti,
    };
    let (resp, bound) = mint::mint(loaded, &subject, &minting, now)?;
    record_issued(audit, &grant, &subject, jti, ttl, now, &bound);
    // 12. The reference handle.
    crate::tokens::maybe_reference(state, &loaded.config, subject.issued, resp, now).await
}
