//! The grants whose credential comes from outside Ferry: a provider's token, a service
//! account's own assertion as a subject token, and the JWT-bearer grant. Each only turns
//! its credential into a [`Subject`]; the shared steps are the pipeline's.

use std::collections::BTreeMap;

use ferry_core::OAuthError;
use ferry_core::binding::{self, Binding};
use ferry_core::delegation::{upstream_act, upstream_may_act};
use ferry_core::mapping::Principal;
use ferry_verify::Verified;
use serde_json::{Map, Value};
use tracing::Instrument as _;

use super::subject::{Ask, Policy, Subject, Trail};
use crate::accounts::{AssertionError, verify_assertion};
use crate::charge::{Refused, mapped};
use crate::errors::Role;
use crate::state::{AppState, Loaded, TrustedProvider};

/// The provider id under which service accounts appear in policies (`provider`).
pub const SERVICE_ACCOUNT_PROVIDER: &str = "service-account";

/// Verifies a service account's assertion: its registered keys, `aud` Ferry's issuer or
/// token endpoint, bounded lifetime, `jti` single use.
async fn verify_service_account(
    state: &AppState,
    loaded: &Loaded,
    iss: &str,
    token: ferry_verify::Unverified<'_>,
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

/// A credential's binding, `act` and `may_act`.
pub(super) type Carried = (
    Binding,
    Option<ferry_token::Act>,
    Option<ferry_token::MayAct>,
);

/// The binding, `act` and `may_act` of a verified credential from `issuer`, read the same
/// way for every grant: a `cnf` Ferry cannot enforce and a malformed `act` or `may_act`
/// are refused.
pub(super) fn carried(
    claims: &Map<String, Value>,
    issuer: &str,
    role: Role,
) -> Result<Carried, OAuthError> {
    let binding = binding::read(claims).map_err(|e| role.invalid(e.to_string()))?;
    Ok((
        binding,
        upstream_act(claims, issuer)?,
        upstream_may_act(claims)?,
    ))
}

/// A provider's token, or a service account's own assertion where a `service_account`
/// provider is configured.
pub async fn provider_token(
    state: &AppState,
    loaded: &Loaded,
    ask: &Ask,
    now: i64,
    trail: &mut Trail,
) -> Result<Subject, Refused> {
    // The issuer picks the provider: a token from an unknown issuer costs no key lookup.
    // The token is split and decoded once, here; verification reuses it.
    let token = ferry_verify::parse(&ask.credential).map_err(|e| Role::Subject.verify_error(&e))?;
    let iss = token
        .required_issuer()
        .map(str::to_owned)
        .map_err(|e| Role::Subject.verify_error(&e))?;
    let (provider, verified) = match loaded.providers.get(&iss) {
        Some(provider) => {
            trail.provider = Some(provider.config.id.clone());
            trail.original_issuer = Some(iss.clone());
            let verified = token
                .verify(&provider.rules, &provider.keys, now)
                .instrument(tracing::info_span!("verify", provider = %provider.config.id))
                .await
                .map_err(|e| Role::Subject.verify_error(&e))?;
            (provider, verified)
        }
        None => {
            let provider = loaded
                .providers
                .get(ferry_core::config::SERVICE_ACCOUNT_ISSUER)
                .filter(|_| loaded.accounts.service_accounts.contains_key(&iss))
                .ok_or_else(|| Role::Subject.invalid("issuer not configured"))?;
            trail.provider = Some(provider.config.id.clone());
            trail.original_issuer = Some(iss.clone());
            let verified = verify_service_account(state, loaded, &iss, token, now)
                .await
                .map_err(|e| Role::Subject.assertion_error(&e))?;
            (provider, verified)
        }
    };
    trail.original_subject = verified
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .map(crate::audit::bounded);
    subject_of(provider, &verified, &iss, ask)
}

/// The subject of a verified provider token: the provider's condition and mapping.
fn subject_of(
    provider: &TrustedProvider,
    verified: &Verified,
    iss: &str,
    ask: &Ask,
) -> Result<Subject, Refused> {
    let (binding, prior_act, may_act) = carried(&verified.claims, iss, Role::Subject)?;
    let mut principal = {
        let _span = tracing::info_span!("policy").entered();
        mapped(provider, &verified.claims)?
    };
    principal.subject_act = prior_act;
    Ok(Subject {
        binding,
        may_act,
        ..provider_subject(provider, principal, verified.exp, ask)
    })
}

/// The subject a provider's verified credential (JWT, SAML assertion, X.509 chain) maps
/// to: the provider pays, its rules decide, issued tokens end no later than `exp` when
/// the provider caps them; unbound, with no `may_act` (a JWT grant sets those from its
/// claims).
pub(super) fn provider_subject(
    provider: &TrustedProvider,
    principal: Principal,
    exp: i64,
    ask: &Ask,
) -> Subject {
    let id = &provider.config.id;
    Subject {
        principal,
        payer: id.clone(),
        exp: Some(exp),
        cap_at_exp: provider.config.cap_lifetime_at_subject_expiry,
        binding: Binding::Bearer,
        may_act: None,
        policy: Policy::Rules,
        client_id: ask
            .client_id
            .clone()
            .unwrap_or_else(|| format!("ferry-provider:{id}")),
        issued: ask.issued,
    }
}

/// The JWT-bearer grant: a service account trades its own signed assertion. The account
/// itself is the tenant and its own assertion the condition; the assertion proves
/// possession now, so its short `exp` does not cap the issued lifetime.
pub async fn jwt_bearer(
    state: &AppState,
    loaded: &Loaded,
    ask: &Ask,
    now: i64,
    trail: &mut Trail,
) -> Result<Subject, Refused> {
    let token = ferry_verify::parse(&ask.credential)
        .map_err(|e| Role::ServiceAccountAssertion.verify_error(&e))?;
    let iss = token
        .required_issuer()
        .map(str::to_owned)
        .map_err(|e| Role::ServiceAccountAssertion.verify_error(&e))?;
    trail.provider = Some(SERVICE_ACCOUNT_PROVIDER.to_owned());
    let verified = verify_service_account(state, loaded, &iss, token, now)
        .await
        .map_err(|e| Role::ServiceAccountAssertion.assertion_error(&e))?;
    // A registered account's id, not whatever an unverified token claimed.
    trail.original_issuer = Some(iss.clone());
    trail.original_subject = Some(iss.clone());
    let (binding, prior_act, may_act) =
        carried(&verified.claims, &iss, Role::ServiceAccountAssertion)?;
    Ok(Subject {
        principal: Principal {
            provider: SERVICE_ACCOUNT_PROVIDER.to_owned(),
            subject: iss.clone(),
            attributes: BTreeMap::from([("service_account".to_owned(), iss.clone())]),
            original_issuer: iss.clone(),
            original_subject: Some(iss.clone()),
            subject_act: prior_act,
            ..Principal::default()
        },
        payer: SERVICE_ACCOUNT_PROVIDER.to_owned(),
        exp: None,
        cap_at_exp: false,
        binding,
        may_act,
        policy: Policy::Rules,
        client_id: ask
            .client_id
            .clone()
            .unwrap_or_else(|| format!("ferry-service-account:{iss}")),
        issued: ask.issued,
    })
}
