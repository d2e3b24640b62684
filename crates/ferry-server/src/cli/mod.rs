//! Offline commands for operators: `ferry explain` (why a token is allowed or denied)
//! and `ferry test` (table-driven policy tests for CI), which run the same decision
//! function as `/token`; `ferry cred-config` (a credential file for Google's client
//! libraries).

pub mod check;
pub mod check_keys;
pub mod cred_config;
pub mod explain;
mod explain_saml;
pub mod keys;
pub mod policy_test;
pub mod sa;

use ferry_core::config::{Config, Provider};
use serde_json::{Map, Value};

/// The provider for these claims: by id when given, else by the exact `iss`.
pub fn provider_for<'a>(
    config: &'a Config,
    id: Option<&str>,
    claims: &Map<String, Value>,
) -> Result<&'a Provider, String> {
    match id {
        Some(id) => config
            .providers
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| format!("no provider with id {id:?}")),
        None => {
            // A SAML provider's claims name their IdP as `issuer`.
            let iss = claims
                .get("iss")
                .or_else(|| claims.get("issuer"))
                .and_then(Value::as_str)
                .ok_or("the claims have no string iss (or issuer, for a SAML provider)")?;
            config
                .provider_for_issuer(iss)
                .ok_or_else(|| format!("no provider for issuer {iss:?}"))
        }
    }
}

/// A JSON number claim as seconds.
pub fn numeric(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    claims
        .get(name)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}
