//! From a configuration file to a running state: read → parse and validate (core) →
//! load each provider's keys → assemble. `ferry check` runs the same steps without
//! touching the signing key, so what it accepts is exactly what `serve` accepts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::Clock;
use std::time::Duration;

use ferry_core::config::Signing;
use ferry_core::config::{CacheConfig, Config, ConfigErrors, KeysConfig, Provider, ProviderKind};
use ferry_core::keyring::RingPolicy;
use ferry_keys::{
    Backend, Keks, KeyManager, KeyStore, LocalStore, ManagerConfig, PgStore, SigningAlg,
};
use ferry_verify::time::MonoTime;
use ferry_verify::{CacheSettings, KeySource, Rules, StaticKeys};
use serde_json::json;

pub use crate::secrets::{SecretError, read_kek_list, read_secret};

use crate::accounts::Accounts;
use crate::audit::AuditSink;
use crate::keysource::{KeySources, KeySpec};
use crate::state::{AppState, Loaded, Providers, TrustedProvider};

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

/// Command-line overrides of the file (`--listen`, `--admin-listen`). They are applied at
/// start and again at every reload, so a reload compares like with like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`: the public listener's address.
    pub listen: Option<String>,
    /// `--admin-listen`: the admin listener's address, or `off`.
    pub admin_listen: Option<String>,
}

impl Overrides {
    /// Applies the overrides to a configuration read from the file.
    pub fn apply(&self, config: &mut Config) {
        if let Some(l) = &self.listen {
            config.listen.clone_from(l);
        }
        match self.admin_listen.as_deref() {
            Some("off") => config.admin.listen = None,
            Some(l) => config.admin.listen = Some(l.to_owned()),
            None => {}
        }
    }
}

/// Where the running configuration comes from: a file and the command line's overrides.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The configuration file.
    pub path: PathBuf,
    /// The command line's overrides of it.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// The file at `path` with the `--listen` and `--admin-listen` overrides.
    pub fn new(path: PathBuf, listen: Option<String>, admin_listen: Option<String>) -> Self {
        Self {
            path,
            overrides: Overrides {
                listen,
                admin_listen,
            },
        }
    }

    /// Reads and validates the file, then applies the overrides: the effective
    /// configuration.
    pub fn read(&self) -> Result<Config, ConfigErrors> {
        let mut config = read_config(&self.path)?;
        self.overrides.apply(&mut config);
        // The overrides may move a listener onto another's socket: checked again.
        let mut errs = ConfigErrors::default();
        for (path, msg) in
            ferry_core::config::listener_conflicts(&config.listen, &config.admin, &config.metrics)
        {
            errs.push(path, msg);
        }
        if errs.0.is_empty() {
            Ok(config)
        } else {
            Err(errs)
        }
    }
}

/// The verification rules of a provider.
pub fn rules_for(p: &Provider) -> Rules {
    let rules = Rules::new(p.issuer.clone(), p.audiences.clone())
        // Explicit typing (RFC 8725 §3.11): `JWT` or none, plus what the provider lists.
        .accept_types(&p.accepted_types)
        .set_allowed_algorithms(p.algorithms.iter().copied())
        // A provider's token may name other audiences besides one of Ferry's (a
        // Kubernetes token also naming the API server, say): RFC 7519 §4.1.3 allows it.
        .accept_other_audiences()
        .allow_clock_skew(p.leeway)
        .allow_lifetime_up_to(p.max_token_lifetime);
    match p.max_token_age {
        Some(age) => rules.require_max_age(age),
        None => rules,
    }
}

fn cache_settings(c: &CacheConfig) -> CacheSettings {
    CacheSettings {
        min_ttl: c.min_ttl,
        max_ttl: c.max_ttl,
        default_ttl: c.default_ttl,
        refetch_interval: c.refetch_interval,
        max_staleness: c.max_staleness,
        error_ttl: c.error_ttl,
    }
}

/// Prepares every provider's key source; problems are collected with their paths.
/// Static keys are read and parsed now; remote keys start cold (nothing is fetched
/// here). Returns the providers and warnings about skipped keys.
pub fn load_providers(
    config: &Config,
    time: Arc<dyn MonoTime>,
) -> Result<(Vec<TrustedProvider>, Vec<String>), ConfigErrors> {
    load_providers_reusing(config, time, &Providers::default())
}

/// As [`load_providers`], keeping the remote key cache of every provider whose issuer,
/// key source, algorithms and cache settings did not change (a reload keeps caches warm).
/// Pass empty `previous` providers when the outbound settings changed.
pub fn load_providers_reusing(
    config: &Config,
    time: Arc<dyn MonoTime>,
    previous: &Providers,
) -> Result<(Vec<TrustedProvider>, Vec<String>), ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    // Providers naming the same JWKS file (with the same algorithms) share one parsed,
    // watched key set: read and parsed once, stat'ed once per poll.
    let mut sources = KeySources::new(config, time);
    for (i, p) in config.providers.iter().enumerate() {
        let rules = rules_for(p);
        let path = format!("providers[{i}]");
        let spec = KeySpec {
            name: &p.id,
            keys: &p.keys,
            algorithms: rules.algorithms(),
            issuer: &p.issuer,
            api_server: p.api_server.as_ref(),
            ca_file: p.ca_file.as_deref(),
            private_network: p.allow_private_network,
            cache: cache_settings(&p.cache),
        };
        let source = match &p.keys {
            // Service-account assertions are verified with the registry's keys; x509
            // chains with the trust store read below.
            _ if matches!(p.kind, ProviderKind::ServiceAccount | ProviderKind::X509) => {
                Ok((KeySource::Static(Arc::new(StaticKeys::empty())), Vec::new()))
            }
            KeysConfig::Uri(_) | KeysConfig::Discovery(_) | KeysConfig::SamlMetadataUrl(_) => {
                match previous.get(&p.issuer) {
                    Some(prev)
                        if matches!(prev.keys, KeySource::Remote(_))
                            && prev.config.keys == p.keys
                            && prev.config.algorithms == p.algorithms
                            && prev.config.cache == p.cache
                            && prev.config.api_server == p.api_server
                            && prev.config.ca_file == p.ca_file
                            && prev.config.allow_private_network == p.allow_private_network =>
                    {
                        Ok((prev.keys.clone(), Vec::new()))
                    }
                    _ => sources.build(&spec),
                }
            }
            KeysConfig::Inline(_)
            | KeysConfig::File(_)
            | KeysConfig::SamlMetadataFile(_)
            | KeysConfig::SamlCertificates(_)
            | KeysConfig::X509 { .. } => sources.build(&spec),
        };
        let x509 = match crate::x509_trust::load(&p.keys) {
            Ok(store) => store,
            Err((at, e)) => {
                errs.push(format!("{path}.{at}"), e);
                continue;
            }
        };
        match source {
            Ok((keys, w)) => {
                warnings.extend(w.into_iter().map(|w| format!("{path}: {w}")));
                out.push(TrustedProvider {
                    config: p.clone(),
                    rules,
                    keys,
                    x509,
                });
            }
            Err(e) => errs.push(format!("{path}.{}", e.at()), e.to_string()),
        }
    }
    if errs.0.is_empty() {
        Ok((out, warnings))
    } else {
        Err(errs)
    }
}

/// The ring timing of a configuration.
pub fn ring_policy(config: &Config) -> RingPolicy {
    let s: &Signing = &config.signing;
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    RingPolicy {
        rotation_period: i(s.rotation_period),
        jwks_max_age: i(s.jwks_max_age),
        leeway: i(s.leeway),
        max_token_ttl: i(config.lifetimes.max_ttl),
    }
}

fn writer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "ferry".into());
    format!("{host}:{}", std::process::id())
}

/// Why the signing key ring could not be opened (or its facts recorded).
#[derive(Debug, thiserror::Error)]
pub enum KeySetupError {
    /// A configured secret (a key-encryption key, the PIN, a connection string) could not
    /// be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// No key-encryption key, and plaintext keys were not allowed.
    #[error(
        "no key-encryption key: set {} (create one with `ferry keys new-kek`), configure \
         signing.key_encryption_keys, or set signing.insecure_plaintext_keys: true for development",
        ferry_core::config::DEFAULT_KEK_ENV
    )]
    NoKek,
    /// A secret's environment variable is not set; the message names the field.
    #[error("{0}")]
    Unset(&'static str),
    /// The HSM could not be opened.
    #[error("{0}")]
    Hsm(#[source] ferry_keys::KeyError),
    /// The PostgreSQL key store could not be opened.
    #[error("key store: {0}")]
    PgStore(#[source] ferry_keys::KeyError),
    /// The key directory could not be opened.
    #[error("key store {}: {source}", dir.display())]
    LocalStore {
        /// `signing.keys_dir`.
        dir: PathBuf,
        /// Why.
        #[source]
        source: ferry_keys::KeyError,
    },
    /// The ring could not be read or initialised.
    #[error("{0}")]
    Ring(#[source] ferry_keys::KeyError),
    /// `tokens.max_ttl` could not be recorded beside the ring.
    #[error("recording tokens.max_ttl beside the key ring: {0}")]
    RecordTtl(#[source] ferry_keys::KeyError),
}

/// Reads the configured key-encryption keys, in order (the first seals new keys).
pub fn read_keks(config: &Config) -> Result<Keks, KeySetupError> {
    let s = &config.signing;
    let keks = read_kek_list(s)?;
    if keks.is_empty() && !s.insecure_plaintext_keys {
        return Err(KeySetupError::NoKek);
    }
    Ok(Keks::new(keks))
}

/// How long a replica's heartbeat (its key-encryption key fingerprints) counts as live:
/// five ring polls, and never less than five seconds.
pub fn replica_max_age(config: &Config) -> Duration {
    let poll = config
        .signing
        .postgres
        .as_ref()
        .map_or(0, |pg| pg.poll_interval_ms);
    Duration::from_millis(poll.saturating_mul(5).max(5_000))
}

/// Logs the unsafe findings of the key-encryption key report (see `KekReport`).
pub fn warn_kek_order(keys: &KeyManager, config: &Config) {
    match keys.kek_report(replica_max_age(config)) {
        Ok(report) => {
            for w in report.warnings() {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "the key-encryption keys of the other replicas could not be read")
        }
    }
}

/// Opens the signing key ring: reads the key-encryption keys (or opens the HSM), opens
/// the store, and initialises the ring at `now` if it is empty.
pub fn open_keys(config: &Config, now: i64) -> Result<KeyManager, KeySetupError> {
    let s = &config.signing;
    let alg = SigningAlg::from(s.algorithm);
    let backend = match &s.hsm {
        Some(h) => {
            let pin = read_secret(&h.pin)?.ok_or(KeySetupError::Unset(
                "signing.hsm.pin: the PIN's environment variable is not set",
            ))?;
            Backend::Pkcs11(
                ferry_keys::pkcs11::Hsm::open(&h.module, &h.token_label, pin)
                    .map_err(KeySetupError::Hsm)?,
            )
        }
        None => Backend::Software {
            keks: Arc::new(read_keks(config)?),
            plaintext: s.insecure_plaintext_keys,
        },
    };
    let store: Arc<dyn KeyStore> =
        match &s.postgres {
            Some(pg) => {
                let url = read_secret(&pg.url)?.ok_or(KeySetupError::Unset(
                    "signing.postgres.url: the connection string's environment variable is not set",
                ))?;
                Arc::new(
                    PgStore::open(
                        &url,
                        Duration::from_millis(pg.timeout_ms),
                        pg.ca_file.as_deref(),
                    )
                    .map_err(KeySetupError::PgStore)?,
                )
            }
            None => Arc::new(LocalStore::open(&s.keys_dir).map_err(|source| {
                KeySetupError::LocalStore {
                    dir: s.keys_dir.clone(),
                    source,
                }
            })?),
        };
    let cfg = ManagerConfig {
        alg,
        policy: ring_policy(config),
        backend,
        writer: writer_name(),
    };
    let keys = KeyManager::open(store, cfg, now).map_err(KeySetupError::Ring)?;
    record_max_ttl(&keys, config)?;
    Ok(keys)
}

/// Records `tokens.max_ttl` beside the key ring before any token is issued under it
/// (see `StoredRing::max_issued_ttl`): lowering the limit later never makes a token
/// issued under the longer one unrevocable.
pub fn record_max_ttl(keys: &KeyManager, config: &Config) -> Result<(), KeySetupError> {
    let ttl = i64::try_from(config.lifetimes.max_ttl).unwrap_or(i64::MAX);
    keys.record_issued_ttl(ttl)
        .map_err(KeySetupError::RecordTtl)
}

/// The client authentication methods `/token`, `/revoke` and `/introspect` accept: the
/// RFC 8705 §2 certificate methods only when a registered client uses them (they need a
/// client certificate, which only a deployment set up for it receives).
fn auth_methods(config: &Config, base: &[&'static str]) -> Vec<&'static str> {
    use ferry_core::config::ClientAuth;
    let mut methods = base.to_vec();
    for m in [
        ClientAuth::TlsClientAuth,
        ClientAuth::SelfSignedTlsClientAuth,
    ] {
        if config.clients.iter().any(|c| c.auth == m) {
            methods.push(m.as_str());
        }
    }
    methods
}

/// RFC 8414 §2 metadata. Ferry is not an OpenID Provider: the OpenID path serves the
/// same document so that JWKS discovery by OIDC libraries works.
pub fn metadata(config: &Config) -> serde_json::Value {
    let mut doc = metadata_base(config);
    // RFC 8705 §3.3: tokens are bound to the client certificate when one is presented;
    // one listener serves both, so there are no mtls_endpoint_aliases.
    if client_certificates(config)
        && let Some(m) = doc.as_object_mut()
    {
        m.insert(
            "tls_client_certificate_bound_access_tokens".into(),
            json!(true),
        );
    }
    doc
}

/// Whether requests can come with a client certificate (the TLS listener asks for one,
/// or a trusted proxy forwards it in `client_cert_header`).
pub fn client_certificates(config: &Config) -> bool {
    config.client_cert_header.is_some()
        || config
            .tls
            .as_ref()
            .is_some_and(|t| t.client_auth != ferry_core::config::ClientCertMode::Off)
}

fn metadata_base(config: &Config) -> serde_json::Value {
    let confidential = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{}/jwks", config.issuer),
        "token_endpoint": format!("{}/token", config.issuer),
        "grant_types_supported": [ferry_core::request::GRANT_TOKEN_EXCHANGE, ferry_core::request::GRANT_JWT_BEARER],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods(config, &["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]),
        "scopes_supported": [],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
        "access_token_signing_alg_values_supported": [config.signing.algorithm],
        "revocation_endpoint": format!("{}/revoke", config.issuer),
        "revocation_endpoint_auth_methods_supported": auth_methods(config, &confidential),
        "introspection_endpoint": format!("{}/introspect", config.issuer),
        "introspection_endpoint_auth_methods_supported": auth_methods(config, &confidential),
        "introspection_signing_alg_values_supported": [config.signing.algorithm],
        "ferry_revocation_list_uri": format!("{}/revocations", config.issuer),
    })
}

/// Assembles what a configuration becomes.
pub fn loaded(config: Config, providers: Vec<TrustedProvider>, accounts: Accounts) -> Loaded {
    let metadata_body = metadata(&config).to_string();
    Loaded {
        config,
        providers: Providers::new(providers),
        accounts,
        metadata_body,
    }
}

/// Assembles the running state.
pub fn build_state(
    config: Config,
    providers: Vec<TrustedProvider>,
    accounts: Accounts,
    keys: Arc<KeyManager>,
    clock: Arc<dyn Clock>,
    audit: Arc<AuditSink>,
) -> AppState {
    AppState::new(loaded(config, providers, accounts), keys, clock, audit)
}
