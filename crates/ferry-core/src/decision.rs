//! The decision for one verified subject token: the provider's condition and mapping,
//! then the audiences' rules, then the lifetime. The server, `ferry explain` and
//! `ferry test` all call this one function, so what they report is what `/token` does.

use serde_json::{Map, Value};

use crate::config::{Config, Provider};
use crate::error::OAuthError;
use crate::mapping::Principal;
use crate::mint::issued_lifetime;
use crate::policy::{Grant, Situation};

/// A request, as far as the decision is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Requested audiences and resources.
    pub targets: &'a [String],
    /// Requested scopes.
    pub scopes: &'a [String],
    /// The client, when known.
    pub client_id: Option<&'a str>,
    /// The actor of a delegation, when there is one.
    pub actor: Option<&'a Principal>,
    /// What rules may know of the request besides (`request.*`).
    pub situation: Situation,
}

/// What was decided.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The mapped principal.
    pub principal: Principal,
    /// Audiences, scopes and the rules that allowed them.
    pub grant: Grant,
    /// The issued lifetime, seconds.
    pub ttl: u64,
}

/// Decides. `exp` is the subject token's expiry; `None` (policy tests over bare claims)
/// skips the checks that depend on it.
pub fn decide(
    config: &Config,
    provider: &Provider,
    claims: &Map<String, Value>,
    exp: Option<i64>,
    now: i64,
    ask: Ask<'_>,
    mut trace: Option<&mut Vec<String>>,
) -> Result<Outcome, OAuthError> {
    let principal = provider
        .mapping
        .apply(&provider.id, claims, trace.as_deref_mut())?;
    decide_for(
        config,
        provider.cap_lifetime_at_subject_expiry,
        principal,
        exp,
        now,
        ask,
        trace,
    )
}

/// Decides for an already mapped principal (the server records the principal in its
/// audit event before the policy runs).
pub fn decide_for(
    config: &Config,
    cap_at_subject_exp: bool,
    principal: Principal,
    exp: Option<i64>,
    now: i64,
    ask: Ask<'_>,
    mut trace: Option<&mut Vec<String>>,
) -> Result<Outcome, OAuthError> {
    let grant = config.policy.decide_with_claims(
        &ask.situation,
        &principal,
        ask.client_id,
        ask.targets,
        ask.scopes,
        ask.actor,
        trace.as_deref_mut(),
    )?;
    let ttl = issued_lifetime(&config.lifetimes, &grant, now, exp, cap_at_subject_exp)?;
    if let Some(t) = trace {
        t.push(format!(
            "lifetime {ttl}s (rule/audience cap {}, global cap {}s, subject token {})",
            grant
                .ttl_cap
                .map(|c| format!("{c}s"))
                .unwrap_or_else(|| "none".into()),
            config.lifetimes.max_ttl,
            match (exp, cap_at_subject_exp) {
                (Some(e), true) => format!("expires in {}s, caps", e - now),
                (Some(e), false) =>
                    format!("expires in {}s, does not cap (provider setting)", e - now),
                (None, _) => "not given".into(),
            }
        ));
    }
    Ok(Outcome {
        principal,
        grant,
        ttl,
    })
}
