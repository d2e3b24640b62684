//! Service accounts and registered clients: their keys, loaded like providers' keys, and
//! the verification of the JWTs they sign (RFC 7523). Service-account keys and client
//! keys are kept apart: a client assertion is never accepted as a service-account
//! assertion or as a subject token, and the other way round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::config::{Client, ClientAuth, Config, ConfigErrors, KeysConfig, ServiceAccount};
use ferry_verify::time::MonoTime;
use ferry_verify::{Algorithm, CacheSettings, KeySource, Rules, Verified};

use crate::keysource::{KeySourceError, KeySources, KeySpec};

/// The `typ` of a client assertion in draft-ietf-oauth-rfc7523bis; accepted besides
/// `JWT` for client assertions only, never for a subject token.
const CLIENT_ASSERTION_TYPE: &str = "client-authentication+jwt";
/// The algorithms of client assertions (as the metadata advertises).
const CLIENT_ASSERTION_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];
pub use crate::errors::AssertionError;
use crate::replay::{ReplayCache, Spend, issued_at};

/// A service account ready to verify its assertions.
#[derive(Debug)]
pub struct SaEntry {
    /// Its configuration.
    pub account: ServiceAccount,
    /// Its keys.
    pub keys: KeySource,
    /// Verification rules: `iss` is the account, `aud` Ferry's issuer (or, where the
    /// account opts in, its token endpoint).
    pub rules: Rules,
}

/// A registered client.
#[derive(Debug)]
pub struct ClientEntry {
    /// Its configuration.
    pub client: Client,
    /// For private_key_jwt: its keys and the rules its assertions follow.
    pub keys: Option<(KeySource, Rules)>,
    /// For tls_client_auth and self_signed_tls_client_auth: what its certificate is
    /// checked against.
    pub certificate: Option<crate::client_mtls::CertificateCheck>,
}

/// The registries.
#[derive(Debug, Default)]
pub struct Accounts {
    /// Service accounts by id.
    pub service_accounts: HashMap<String, SaEntry>,
    /// Clients by id.
    pub clients: HashMap<String, ClientEntry>,
}

/// The token endpoint URL.
pub fn token_endpoint(config: &Config) -> String {
    format!("{}/token", config.issuer)
}

/// Loads the registries; problems are collected with their paths.
pub fn load_accounts(config: &Config, time: Arc<dyn MonoTime>) -> Result<Accounts, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut out = Accounts::default();
    let mut sources = KeySources::new(config, time);
    // An account's keys: the algorithms the rules allow, default remote cache timing;
    // warnings about skipped keys are not kept (`ferry check` reports providers').
    let mut keys_of =
        |id: &str, keys: &KeysConfig, rules: &Rules| -> Result<KeySource, KeySourceError> {
            let spec = KeySpec {
                name: id,
                keys,
                algorithms: rules.algorithms(),
                issuer: id,
                api_server: None,
                ca_file: None,
                private_network: false,
                cache: CacheSettings::default(),
            };
            sources.build(&spec).map(|(k, _)| k)
        };
    for (i, sa) in config.service_accounts.iter().enumerate() {
        // `aud`: Ferry's issuer identifier; the token endpoint URL only for accounts
        // configured for it (draft-ietf-oauth-rfc7523bis, as for client assertions).
        let mut audiences = vec![config.issuer.clone()];
        if sa.accept_token_endpoint_audience {
            audiences.push(token_endpoint(config));
        }
        let rules = Rules::new(sa.id.clone(), audiences)
            .set_allowed_algorithms(sa.algorithms.iter().copied())
            .allow_lifetime_up_to(sa.max_assertion_lifetime);
        match keys_of(&sa.id, &sa.keys, &rules) {
            Ok(keys) => {
                out.service_accounts.insert(
                    sa.id.clone(),
                    SaEntry {
                        account: sa.clone(),
                        keys,
                        rules,
                    },
                );
            }
            Err(e) => errs.push(format!("service_accounts[{i}].jwks"), e.to_string()),
        }
    }
    let checks = certificate_checks(config, &mut errs);
    for ((i, c), certificate) in config.clients.iter().enumerate().zip(checks) {
        let Ok(certificate) = certificate else {
            continue;
        };
        let keys = match &c.keys {
            Some(k) if c.auth == ClientAuth::PrivateKeyJwt => {
                let mut audiences = vec![config.issuer.clone()];
                if c.accept_token_endpoint_audience {
                    audiences.push(token_endpoint(config));
                }
                // The explicit type of draft-ietf-oauth-rfc7523bis, besides JWT.
                let rules = Rules::new(c.id.clone(), audiences)
                    .accept_types([CLIENT_ASSERTION_TYPE])
                    .set_allowed_algorithms(CLIENT_ASSERTION_ALGORITHMS)
                    .allow_lifetime_up_to(Duration::from_secs(3_600));
                match keys_of(&c.id, k, &rules) {
                    Ok(ks) => Some((ks, rules)),
                    Err(e) => {
                        errs.push(format!("clients[{i}].jwks"), e.to_string());
                        continue;
                    }
                }
            }
            _ => None,
        };
        out.clients.insert(
            c.id.clone(),
            ClientEntry {
                client: c.clone(),
                keys,
                certificate,
            },
        );
    }
    if errs.0.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// Each client's certificate check (RFC 8705 §2), in order; `Err` (its problem
/// recorded) for a client whose CA bundle or keys do not load.
#[allow(clippy::type_complexity, reason = "one result per client")]
fn certificate_checks(
    config: &Config,
    errs: &mut ConfigErrors,
) -> Vec<Result<Option<crate::client_mtls::CertificateCheck>, ()>> {
    // `tls.client_ca_file`: read once, shared by the tls_client_auth clients without their own.
    let uses_default = config
        .clients
        .iter()
        .any(|c| c.auth == ClientAuth::TlsClientAuth);
    let default_anchors = match config.tls.as_ref().and_then(|t| t.client_ca_file.as_ref()) {
        Some(f) if uses_default => crate::client_mtls::load_anchors(f)
            .map_err(|e| errs.push("tls.client_ca_file", e))
            .ok(),
        _ => None,
    };
    config
        .clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            crate::client_mtls::check_for(c, default_anchors.as_ref())
                .map_err(|e| errs.push(format!("clients[{i}]"), e))
        })
        .collect()
}

/// Verifies a JWT signed by an account (RFC 7523 §3): signature and claims by `rules`,
/// `sub` equal to `iss`, `aud` one string (draft-ietf-oauth-rfc7523bis: an array could
/// name another server beside Ferry, which would then accept the same assertion), a
/// `jti` consumed once and remembered for as long as any replica could accept the
/// assertion: `exp` plus the verifier's leeway plus `skew`, the allowed clock
/// difference between replicas. An assertion issued (`iat`, or without it `exp` minus
/// the longest lifetime allowed) before the replay state was last lost, plus the
/// leeway, is refused: it may have been used before. For client assertions, jwt-bearer
/// grants and service-account subject tokens alike.
pub async fn verify_assertion(
    token: ferry_verify::Unverified<'_>,
    keys: &KeySource,
    rules: &Rules,
    replay: &dyn ReplayCache,
    now: i64,
    skew: i64,
) -> Result<Verified, AssertionError> {
    let v = token.verify(rules, keys, now).await?;
    let jti = ferry_verify::self_signed_shape(&v.claims, rules.issuer()).map_err(|e| match e {
        ferry_verify::ShapeError::Subject => AssertionError::Subject,
        ferry_verify::ShapeError::Audience => AssertionError::Audience,
        ferry_verify::ShapeError::Jti => AssertionError::Jti,
    })?;
    let until = v
        .exp
        .saturating_add(rules.leeway().max(0))
        .saturating_add(skew);
    let iat = v.claims.get("iat").and_then(|i| {
        i.as_i64()
            .or_else(|| i.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
    });
    let spend = Spend {
        principal: rules.issuer(),
        jti,
        issued: issued_at(iat, v.exp, rules.max_lifetime()),
        leeway: rules.leeway().max(0),
        skew,
        until,
        now,
    };
    replay.consume(spend).await?;
    Ok(v)
}
