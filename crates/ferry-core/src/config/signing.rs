//! Ferry's own signing keys: algorithm, ring timing, where keys live and how they are
//! protected at rest.

use std::path::{Path, PathBuf};

use super::durations::duration;
use super::errors::ConfigErrors;
use super::raw::{RawHsm, RawPostgres, RawSecretSource, RawSigning};
use ferry_token::SigningAlgorithm;

/// Where a secret (a key-encryption key, an HSM PIN) is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (its content, trimmed).
    File(PathBuf),
}

/// A PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmConfig {
    /// The PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The user PIN.
    pub pin: SecretSource,
}

/// The shared key store of several replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresStore {
    /// The connection string (it may hold a password, so it is read like a secret).
    pub url: SecretSource,
    /// How often each replica reads the ring, milliseconds.
    pub poll_interval_ms: u64,
    /// Bound on every call to the database, connecting included, milliseconds.
    pub timeout_ms: u64,
    /// The CA certificates (PEM) that TLS to the database trusts; else the system's.
    pub ca_file: Option<PathBuf>,
}

/// Signing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// `ES256` (default), `EdDSA` or `RS256`.
    pub algorithm: SigningAlgorithm,
    /// How long a key signs, seconds.
    pub rotation_period: u64,
    /// `Cache-Control: max-age` of `/jwks`, seconds.
    pub jwks_max_age: u64,
    /// Slack added to publication margins, seconds.
    pub leeway: u64,
    /// The local key store's directory.
    pub keys_dir: PathBuf,
    /// Key-encryption keys, the first seals; default `FERRY_KEK` from the environment.
    pub key_encryption_keys: Vec<SecretSource>,
    /// Store private keys in clear (development only).
    pub insecure_plaintext_keys: bool,
    /// Keys in a PKCS#11 token instead.
    pub hsm: Option<HsmConfig>,
    /// The ring in PostgreSQL instead of `keys_dir`.
    pub postgres: Option<PostgresStore>,
}

/// The environment variable read for the key-encryption key by default.
pub const DEFAULT_KEK_ENV: &str = "FERRY_KEK";

pub(super) fn source(
    errs: &mut ConfigErrors,
    path: &str,
    s: &RawSecretSource,
    base: &Path,
) -> Option<SecretSource> {
    match (&s.env, &s.file) {
        (Some(e), None) if !e.is_empty() => Some(SecretSource::Env(e.clone())),
        (None, Some(f)) if !f.is_empty() => Some(SecretSource::File(base.join(f))),
        _ => {
            errs.push(path, "give exactly one of env or file");
            None
        }
    }
}

pub(super) fn signing(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    s: &RawSigning,
    data_dir: &Path,
    base: &Path,
    max_token_ttl: u64,
) -> Signing {
    let name = s.algorithm.as_deref().unwrap_or("ES256");
    let algorithm = SigningAlgorithm::ALL.into_iter().find(|a| a.name() == name);
    match algorithm {
        Some(SigningAlgorithm::ES256 | SigningAlgorithm::EdDSA) => {}
        Some(SigningAlgorithm::RS256) => warnings.push(
            "signing.algorithm: RS256 signatures cost several times ES256 or EdDSA on every exchange".into(),
        ),
        None => errs.push("signing.algorithm", "must be ES256, EdDSA or RS256"),
    }
    let rotation_period = duration(
        errs,
        "signing.rotation_period",
        s.rotation_period.as_ref(),
        7 * 86_400,
    );
    let jwks_max_age = duration(errs, "signing.jwks_max_age", s.jwks_max_age.as_ref(), 300);
    let leeway = duration(errs, "signing.leeway", s.leeway.as_ref(), 60);
    if jwks_max_age == 0 {
        errs.push("signing.jwks_max_age", "must be greater than zero");
    }
    if rotation_period < 2 * (jwks_max_age + leeway) {
        errs.push(
            "signing.rotation_period",
            "must be at least twice jwks_max_age + leeway, so the next key is published well before it signs",
        );
    }
    if rotation_period < max_token_ttl {
        warnings.push(format!(
            "signing.rotation_period is shorter than tokens.max_ttl: several retired keys stay published at once ({} s vs {} s)",
            rotation_period, max_token_ttl
        ));
    }
    let keks = key_encryption_keys(errs, s.key_encryption_keys.as_deref(), base);
    let plaintext = s.insecure_plaintext_keys.unwrap_or(false);
    let hsm = s.hsm.as_ref().and_then(|h| hsm(errs, h, &algorithm, base));
    if plaintext && hsm.is_some() {
        errs.push(
            "signing.insecure_plaintext_keys",
            "cannot be combined with an HSM",
        );
    }
    if plaintext {
        warnings.push("signing.insecure_plaintext_keys: private keys are stored unencrypted: development only".into());
    }
    let postgres = s
        .postgres
        .as_ref()
        .and_then(|p| postgres(errs, p, base, jwks_max_age + leeway));
    Signing {
        // An unknown name is an error above: this value is never used.
        algorithm: algorithm.unwrap_or(SigningAlgorithm::ES256),
        rotation_period,
        jwks_max_age,
        leeway,
        keys_dir: match &s.keys_dir {
            Some(d) => base.join(d),
            None => data_dir.to_owned(),
        },
        key_encryption_keys: keks,
        insecure_plaintext_keys: plaintext,
        hsm,
        postgres,
    }
}

/// `signing.key_encryption_keys`; `FERRY_KEK` when omitted.
fn key_encryption_keys(
    errs: &mut ConfigErrors,
    list: Option<&[RawSecretSource]>,
    base: &Path,
) -> Vec<SecretSource> {
    match list {
        Some(list) => {
            if list.is_empty() {
                errs.push(
                    "signing.key_encryption_keys",
                    "must not be empty (omit it to read FERRY_KEK)",
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, k)| {
                    source(errs, &format!("signing.key_encryption_keys[{i}]"), k, base)
                })
                .collect()
        }
        None => vec![SecretSource::Env(DEFAULT_KEK_ENV.into())],
    }
}

/// `signing.hsm`: a PKCS#11 token holding ES256 keys.
fn hsm(
    errs: &mut ConfigErrors,
    h: &RawHsm,
    algorithm: &Option<SigningAlgorithm>,
    base: &Path,
) -> Option<HsmConfig> {
    let module = h.module.clone().unwrap_or_default();
    let label = h.token_label.clone().unwrap_or_default();
    if module.is_empty() {
        errs.push(
            "signing.hsm.module",
            "is required (the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so)",
        );
    }
    if label.is_empty() {
        errs.push("signing.hsm.token_label", "is required");
    }
    if *algorithm != Some(SigningAlgorithm::ES256) {
        errs.push("signing.algorithm", "keys held in an HSM are ES256");
    }
    let pin = match &h.pin {
        Some(p) => source(errs, "signing.hsm.pin", p, base),
        None => {
            errs.push(
                "signing.hsm.pin",
                "is required ({env: VAR} or {file: path})",
            );
            None
        }
    };
    Some(HsmConfig {
        module: PathBuf::from(module),
        token_label: label,
        pin: pin?,
    })
}

/// `250ms`, or any duration `parse_secs` reads, in milliseconds.
pub(super) fn millis(
    errs: &mut ConfigErrors,
    path: &str,
    value: Option<&String>,
    default: u64,
) -> u64 {
    match value {
        None => default,
        Some(v) => match v.trim().strip_suffix("ms") {
            Some(n) => n.trim().parse().unwrap_or_else(|_| {
                errs.push(path, "expected a number of milliseconds, as in 250ms");
                default
            }),
            None => duration(errs, path, Some(v), default / 1000).saturating_mul(1000),
        },
    }
}

fn postgres(
    errs: &mut ConfigErrors,
    p: &RawPostgres,
    base: &Path,
    publish_ahead: u64,
) -> Option<PostgresStore> {
    // Replicas must see a newly published key well before any of them signs with it.
    let default_poll = (publish_ahead * 100).clamp(100, 10_000);
    let poll_interval_ms = millis(
        errs,
        "signing.postgres.poll_interval",
        p.poll_interval.as_ref(),
        default_poll,
    );
    if poll_interval_ms == 0 || poll_interval_ms * 10 > publish_ahead * 1000 {
        errs.push(
            "signing.postgres.poll_interval",
            format!(
                "must be greater than zero and at most a tenth of jwks_max_age + leeway ({publish_ahead} s), \
                 so every replica sees a new key long before it signs"
            ),
        );
    }
    let timeout_ms = millis(errs, "signing.postgres.timeout", p.timeout.as_ref(), 5_000);
    if timeout_ms == 0 {
        errs.push("signing.postgres.timeout", "must be greater than zero");
    }
    let url = match &p.url {
        Some(u) => source(errs, "signing.postgres.url", u, base),
        None => {
            errs.push(
                "signing.postgres.url",
                "is required ({env: VAR} or {file: path}; the connection string may hold a password)",
            );
            None
        }
    };
    Some(PostgresStore {
        url: url?,
        poll_interval_ms,
        timeout_ms,
        ca_file: p.ca_file.as_ref().map(|f| base.join(f)),
    })
}
