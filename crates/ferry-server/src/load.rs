//! From a configuration file to a running state: read → parse and validate (core) →
//! load each provider's keys → assemble. `ferry check` runs the same steps without
//! touching the signing key, so what it accepts is exactly what `serve` accepts.

use std::path::Path;
use std::sync::Arc;

use ferry_core::Clock;
use ferry_core::config::{Config, ConfigErrors, JwksSource, Provider};
use ferry_keys::Signer;
use ferry_verify::{Algorithm, KeySet, Rules};
use serde_json::json;

use crate::audit::AuditSink;
use crate::state::{AppState, Providers, TrustedProvider};

/// Reads and validates a configuration file.
pub fn read_config(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut errs = ConfigErrors::default();
        errs.push(path.display().to_string(), format!("cannot read: {e}"));
        errs
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    ferry_core::config::parse(&text, base)
}

/// The verification rules of a provider.
pub fn rules_for(p: &Provider) -> Rules {
    let mut rules = Rules::new(p.issuer.clone(), p.audiences.clone());
    // Names were validated against the same list at load.
    rules.algorithms = p
        .algorithms
        .iter()
        .filter_map(|a| Algorithm::from_name(a))
        .collect();
    rules.leeway = i64::try_from(p.leeway).unwrap_or(i64::MAX);
    rules.max_lifetime = i64::try_from(p.max_token_lifetime).unwrap_or(i64::MAX);
    rules
}

/// Loads every provider's keys; problems are collected with their paths. Returns the
/// providers and warnings about skipped keys.
pub fn load_providers(
    config: &Config,
) -> Result<(Vec<TrustedProvider>, Vec<String>), ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for (i, p) in config.providers.iter().enumerate() {
        let rules = rules_for(p);
        let (path, bytes) = match &p.jwks {
            JwksSource::File(f) => {
                let path = format!("providers[{i}].jwks.file");
                match std::fs::read(f) {
                    Ok(b) => (path, b),
                    Err(e) => {
                        errs.push(path, format!("cannot read {}: {e}", f.display()));
                        continue;
                    }
                }
            }
            JwksSource::Inline(text) => (
                format!("providers[{i}].jwks.inline"),
                text.clone().into_bytes(),
            ),
        };
        match KeySet::from_jwks(&bytes, &rules.algorithms) {
            Ok((keys, w)) => {
                warnings.extend(w.into_iter().map(|w| format!("{path}: {w}")));
                if keys.is_empty() {
                    errs.push(path, "no usable key for the allowed algorithms");
                    continue;
                }
                out.push(TrustedProvider {
                    config: p.clone(),
                    rules,
                    keys,
                });
            }
            Err(e) => errs.push(path, e.to_string()),
        }
    }
    if errs.0.is_empty() {
        Ok((out, warnings))
    } else {
        Err(errs)
    }
}

/// RFC 8414 §2 metadata. Ferry is not an OpenID Provider: the OpenID path serves the
/// same document so that JWKS discovery by OIDC libraries works.
pub fn metadata(config: &Config, signer: &dyn Signer) -> serde_json::Value {
    json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{}/jwks", config.issuer),
        "token_endpoint": format!("{}/token", config.issuer),
        "grant_types_supported": [ferry_core::request::GRANT_TOKEN_EXCHANGE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "ferry_signing_alg_values_supported": [signer.alg()],
    })
}

/// Assembles the running state.
pub fn build_state(
    config: Config,
    providers: Vec<TrustedProvider>,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    audit: Arc<AuditSink>,
) -> AppState {
    let jwks_body = json!({"keys": [signer.public_jwk()]}).to_string();
    let metadata_body = metadata(&config, signer.as_ref()).to_string();
    AppState {
        config: Arc::new(config),
        providers: Arc::new(Providers::new(providers)),
        signer,
        clock,
        audit,
        jwks_body: Arc::new(jwks_body),
        metadata_body: Arc::new(metadata_body),
    }
}
