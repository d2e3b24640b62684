//! Delegation, for every grant (RFC 8693 §1.1, §4.1, §4.4): the actor token is verified
//! like a subject token (a trusted issuer, its condition and mapping, its provider
//! charged), checked against the subject's `may_act`, its binding read; the `act` of the
//! issued token nests the actor over the subject's chain. Without an actor token
//! (impersonation) the subject's chain is kept.

use ferry_core::OAuthError;
use ferry_core::binding::Binding;
use ferry_core::delegation::{check_may_act, nest};
use ferry_core::error::desc;
use ferry_core::mapping::Principal;
use ferry_token::Act;
use serde_json::Value;
use tracing::Instrument as _;

use super::provider::carried;
use super::subject::Subject;
use crate::errors::Role;
use crate::state::{AppState, Loaded};

/// The outcome of the delegation step.
#[derive(Debug)]
pub struct Delegation {
    /// The verified actor, visible to the audiences' rules as `actor`.
    pub actor: Option<Principal>,
    /// The issued token's `act`.
    pub act: Option<Act>,
    /// The key the actor token is bound to.
    pub binding: Binding,
}

/// A refusal by the actor's provider names the actor token, not the subject's.
fn as_actor(mut e: OAuthError) -> OAuthError {
    if e.description == desc::CONDITION_DENIED {
        e.description = desc::ACTOR_CONDITION_DENIED.into();
    } else if e.description == desc::MAPPING_FAILED {
        e.description = desc::ACTOR_MAPPING_FAILED.into();
    }
    e
}

/// Runs the delegation step.
pub async fn delegate(
    state: &AppState,
    loaded: &Loaded,
    actor_token: Option<&str>,
    subject: &Subject,
    now: i64,
) -> Result<Delegation, OAuthError> {
    let Some(token) = actor_token else {
        return Ok(Delegation {
            actor: None,
            act: subject.principal.subject_act.clone(),
            binding: Binding::Bearer,
        });
    };
    let token = ferry_verify::parse(token).map_err(|e| Role::Actor.verify_error(&e))?;
    let iss = token
        .required_issuer()
        .map(str::to_owned)
        .map_err(|e| Role::Actor.verify_error(&e))?;
    let provider = loaded
        .providers
        .get(&iss)
        .ok_or_else(|| Role::Actor.invalid("actor issuer not configured"))?;
    let verified = token
        .verify(&provider.rules, &provider.keys, now)
        .instrument(tracing::info_span!("verify_actor", provider = %provider.config.id))
        .await
        .map_err(|e| Role::Actor.verify_error(&e))?;
    let sub = verified.claims.get("sub").and_then(Value::as_str);
    check_may_act(subject.may_act.as_ref(), sub, &iss)?;
    let (binding, _, _) = carried(&verified.claims, &iss, Role::Actor)?;
    // The actor's provider is charged like a subject's: after its condition passed.
    let actor = crate::charge::settle(
        state,
        |_| provider.config.id.clone(),
        crate::charge::mapped(provider, &verified.claims),
    )
    .map_err(as_actor)?;
    Ok(Delegation {
        act: nest(Some(&actor), subject.principal.subject_act.clone()),
        actor: Some(actor),
        binding,
    })
}
