//! Service accounts (RFC 7523 self-signed assertions) and registered clients.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

pub use super::client_auth::ClientAuth;
use super::durations::duration;
use super::errors::ConfigErrors;
use super::fields::valid_id;
use super::model::{KeysConfig, Outbound};
use super::mtls::{CertificateName, client_certificate};
use super::raw::{RawClient, RawJwks, RawServiceAccount};
use ferry_token::Algorithm;

/// A workload that signs its own JWT assertions with a key it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The id: the assertion's `iss` and `sub`.
    pub id: String,
    /// A description for operators.
    pub description: Option<String>,
    /// Its public keys.
    pub keys: KeysConfig,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Longest accepted `exp - iat` (or `exp - now`), seconds (1 h).
    pub max_assertion_lifetime: Duration,
    /// Also accept the token endpoint URL as the assertion's `aud` (still one string);
    /// by default only Ferry's issuer identifier, as for client assertions.
    pub accept_token_endpoint_audience: bool,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Its authentication method.
    pub auth: ClientAuth,
    /// SHA-256 (hex) of its server-generated secret.
    pub secret_sha256: Option<String>,
    /// Its public keys, for private_key_jwt and self_signed_tls_client_auth (file or
    /// inline only for the latter).
    pub keys: Option<KeysConfig>,
    /// For tls_client_auth: the name its certificate must carry (RFC 8705 §2.1.2).
    pub certificate: Option<CertificateName>,
    /// For tls_client_auth: its own CA bundle (PEM) instead of `tls.client_ca_file`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Also accept the token endpoint URL as a client assertion's `aud` (legacy clients;
    /// the issuer identifier alone is the default, per draft-ietf-oauth-rfc7523bis).
    pub accept_token_endpoint_audience: bool,
    /// May call `/introspect` (a resource server or gateway).
    pub introspect: bool,
    /// May fetch `GET /revocations` (a relying service that verifies offline). The list
    /// names revoked subjects, clients and providers, so it is not public.
    pub revocations: bool,
}

fn static_keys(
    errs: &mut ConfigErrors,
    path: &str,
    j: Option<&RawJwks>,
    base: &Path,
    outbound: &Outbound,
) -> Option<KeysConfig> {
    let Some(j) = j else {
        errs.push(format!("{path}.jwks"), "is required");
        return None;
    };
    match (&j.file, &j.inline, &j.uri) {
        (Some(f), None, None) => Some(KeysConfig::File(base.join(f))),
        (None, Some(v), None) => Some(KeysConfig::Inline(v.to_string())),
        (None, None, Some(u)) => {
            let Some(u) = super::keys::fetchable(u, outbound) else {
                errs.push(
                    format!("{path}.jwks.uri"),
                    "must be an https URL (or an origin listed in outbound.allow_insecure_origins)",
                );
                return None;
            };
            Some(KeysConfig::Uri(u))
        }
        _ => {
            errs.push(
                format!("{path}.jwks"),
                "give exactly one of file, inline or uri",
            );
            None
        }
    }
}

pub(super) fn service_accounts(
    errs: &mut ConfigErrors,
    list: &[RawServiceAccount],
    base: &Path,
    outbound: &Outbound,
) -> Vec<ServiceAccount> {
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let path = format!("service_accounts[{i}]");
        let before = errs.0.len();
        let id = s.id.clone().unwrap_or_default();
        if !valid_id(&id) {
            errs.push(
                format!("{path}.id"),
                "is required: 1-64 characters of a-z, 0-9, '-' or '_'",
            );
        } else if !ids.insert(id.clone()) {
            errs.push(format!("{path}.id"), "duplicate service account");
        }
        let keys = static_keys(errs, &path, s.jwks.as_ref(), base, outbound);
        let algorithms = match &s.algorithms {
            None => vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
            Some(list) => list
                .iter()
                .filter_map(|a| {
                    let alg = Algorithm::from_name(a);
                    if alg.is_none() {
                        errs.push(
                            format!("{path}.algorithms"),
                            format!("'{a}' is not allowed"),
                        );
                    }
                    alg
                })
                .collect(),
        };
        let max = duration(
            errs,
            &format!("{path}.max_assertion_lifetime"),
            s.max_assertion_lifetime.as_ref(),
            3_600,
        );
        if errs.0.len() == before
            && let Some(keys) = keys
        {
            out.push(ServiceAccount {
                id,
                description: s.description.clone(),
                keys,
                algorithms,
                max_assertion_lifetime: Duration::from_secs(max),
                accept_token_endpoint_audience: s.accept_token_endpoint_audience.unwrap_or(false),
            });
        }
    }
    out
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 of the empty string: registered as a secret's hash, it would let any client
/// that sends an empty secret (or none at all, by some libraries) authenticate.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn auth_of(errs: &mut ConfigErrors, path: &str, auth: Option<&str>) -> ClientAuth {
    match auth {
        Some("none") => ClientAuth::None,
        Some("client_secret_basic") => ClientAuth::SecretBasic,
        Some("client_secret_post") => ClientAuth::SecretPost,
        Some("private_key_jwt") => ClientAuth::PrivateKeyJwt,
        Some("tls_client_auth") => ClientAuth::TlsClientAuth,
        Some("self_signed_tls_client_auth") => ClientAuth::SelfSignedTlsClientAuth,
        _ => {
            errs.push(
                format!("{path}.auth"),
                "is required: none, client_secret_basic, client_secret_post, \
                 private_key_jwt, tls_client_auth or self_signed_tls_client_auth",
            );
            ClientAuth::None
        }
    }
}

/// A client's keys: a JWKS for private_key_jwt, file or inline for
/// self_signed_tls_client_auth (compared with certificates, read at load).
fn client_keys(
    errs: &mut ConfigErrors,
    path: &str,
    c: &RawClient,
    auth: ClientAuth,
    base: &Path,
    outbound: &Outbound,
) -> Option<KeysConfig> {
    match auth {
        ClientAuth::PrivateKeyJwt => static_keys(errs, path, c.jwks.as_ref(), base, outbound),
        ClientAuth::SelfSignedTlsClientAuth => {
            let keys = static_keys(errs, path, c.jwks.as_ref(), base, outbound);
            if matches!(keys, Some(KeysConfig::Uri(_))) {
                // Certificates are compared with keys read at load, never fetched per request.
                errs.push(
                    format!("{path}.jwks.uri"),
                    "self_signed_tls_client_auth takes a jwks file or inline set",
                );
            }
            keys
        }
        _ => {
            if c.jwks.is_some() {
                errs.push(
                    format!("{path}.jwks"),
                    "only for private_key_jwt or self_signed_tls_client_auth",
                );
            }
            None
        }
    }
}

pub(super) fn clients(
    errs: &mut ConfigErrors,
    list: &[RawClient],
    base: &Path,
    outbound: &Outbound,
    default_ca: bool,
) -> Vec<Client> {
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let path = format!("clients[{i}]");
        let before = errs.0.len();
        let id = c.id.clone().unwrap_or_default();
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            errs.push(
                format!("{path}.id"),
                "is required: printable ASCII without spaces, at most 128 bytes",
            );
        } else if !ids.insert(id.clone()) {
            errs.push(format!("{path}.id"), "duplicate client");
        }
        let auth = auth_of(errs, &path, c.auth.as_deref());
        let secret = c.secret_sha256.clone().map(|s| s.to_ascii_lowercase());
        match (auth, &secret) {
            (ClientAuth::SecretBasic | ClientAuth::SecretPost, Some(s)) if s == EMPTY_SHA256 => {
                errs.push(
                    format!("{path}.secret_sha256"),
                    "is the SHA-256 of the empty string: anyone could authenticate with an empty \
                     secret; use `ferry clients new-secret`",
                )
            }
            (ClientAuth::SecretBasic | ClientAuth::SecretPost, Some(s)) if is_hex64(s) => {}
            (ClientAuth::SecretBasic | ClientAuth::SecretPost, _) => errs.push(
                format!("{path}.secret_sha256"),
                "is required: the SHA-256 (hex) of a secret from `ferry clients new-secret`",
            ),
            (_, Some(_)) => errs.push(
                format!("{path}.secret_sha256"),
                "only for client_secret_basic or client_secret_post",
            ),
            _ => {}
        }
        let keys = client_keys(errs, &path, c, auth, base, outbound);
        let (certificate, ca_file) = client_certificate(errs, &path, c, auth, base, default_ca);
        let revocations = c.revocations.unwrap_or(false);
        if revocations && auth != ClientAuth::SecretBasic {
            // A GET carries no form: HTTP Basic is the one method it can use.
            errs.push(
                format!("{path}.revocations"),
                "requires auth: client_secret_basic (GET /revocations authenticates with HTTP Basic)",
            );
        }
        if errs.0.len() == before {
            out.push(Client {
                id,
                auth,
                secret_sha256: secret,
                keys,
                certificate,
                ca_file,
                accept_token_endpoint_audience: c.accept_token_endpoint_audience.unwrap_or(false),
                introspect: c.introspect.unwrap_or(false),
                revocations,
            });
        }
    }
    out
}
