//! Configuration: parse (YAML into raw structs) → validate (every problem collected with
//! its path, such as `providers[1].audiences: must not be empty`) → prepare (expressions
//! compiled once). Nothing here reads files: the caller passes the text and the
//! directory relative paths are resolved against.

mod audience;
mod cert_header;
mod client_auth;
mod clients;
mod durations;
mod errors;
mod fields;
mod github;
mod keys;
mod model;
mod mtls;
mod ops;
mod origin;
mod provider;
mod proxies;
mod raw;
mod redis;
mod revocation;
mod saml;
mod sections;
mod signing;
mod tenant;
mod typing;
mod x509;

use std::path::{Path, PathBuf};

use crate::expr::Cel;
use crate::mint::Lifetimes;
use crate::policy::Policy;
pub use ferry_token::Algorithm;
use raw::RawConfig;

pub use cert_header::{ClientCertHeader, ClientCertHeaderFormat};
pub use clients::{Client, ClientAuth, ServiceAccount};
pub use errors::ConfigErrors;
pub use github::{GITHUB_ISSUER, github_issuer_shape_ok};
pub use model::{
    ALLOWED_ALGORITHMS, ApiServer, CacheConfig, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY,
    DEFAULT_MAX_BODY, DEFAULT_MAX_TOKEN_LIFETIME, KeysConfig, Outbound, ProviderKind,
    SERVICE_ACCOUNT_ISSUER,
};
pub use mtls::{CertificateName, DistinguishedName};
pub use ops::{
    Admin, AuditSinkConfig, ClientCertMode, Dpop, Limits, MetricsListener, PER_CORE_EXCHANGES, Tls,
    available_cores, derived_global_rate, listener_conflicts,
};
pub use origin::origin_of;
pub use provider::Provider;
pub use proxies::is_trusted;
pub use redis::{RedisReplay, RedisUrlError};
pub use revocation::{DEFAULT_REVOCATION_POLL_MS, DEFAULT_REVOCATION_TIMEOUT_MS, RevocationStore};
pub use saml::{SamlSettings, token_endpoints};
pub use signing::{DEFAULT_KEK_ENV, HsmConfig, PostgresStore, SecretSource, Signing};
pub use tenant::TenantClaim;
pub use x509::{X509_DEFAULT_SUBJECT, X509Settings, x509_issuer};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ferry's own issuer identifier (its public base URL).
    pub issuer: String,
    /// Listen address.
    pub listen: String,
    /// Peers whose `Forwarded` / `X-Forwarded-For` (and PROXY protocol header) name the
    /// client; empty: the peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether the public listener expects a PROXY protocol v2 header from trusted peers.
    pub listen_proxy_protocol: bool,
    /// Behind a TLS-terminating proxy: the header carrying the client certificate, read
    /// only from its trusted peers.
    pub client_cert_header: Option<ClientCertHeader>,
    /// Where Ferry keeps its signing key.
    pub data_dir: PathBuf,
    /// Log filter.
    pub log_level: String,
    /// Issued token lifetimes.
    pub lifetimes: Lifetimes,
    /// Largest accepted `/token` body.
    pub max_body_bytes: usize,
    /// Outbound HTTP.
    pub outbound: Outbound,
    /// Trusted issuers.
    pub providers: Vec<Provider>,
    /// The audiences Ferry serves, in configuration order.
    pub audience_names: Vec<String>,
    /// Access policy.
    pub policy: Policy,
    /// Ferry's own signing keys.
    pub signing: Signing,
    /// Request limits.
    pub limits: Limits,
    /// HTTPS for the public listener (plain HTTP behind a proxy otherwise).
    pub tls: Option<Tls>,
    /// The admin listener.
    pub admin: Admin,
    /// The metrics-only listener.
    pub metrics: MetricsListener,
    /// Where audit events go.
    pub audit: AuditSinkConfig,
    /// Service accounts (RFC 7523).
    pub service_accounts: Vec<ServiceAccount>,
    /// Registered clients.
    pub clients: Vec<Client>,
    /// Capacity of the in-process replay cache (assertion `jti`s kept until `exp`).
    pub max_replay_entries: usize,
    /// A shared replay cache (Redis) for several replicas; `None` keeps it in process.
    pub replay_redis: Option<RedisReplay>,
    /// Where revoked tokens, rules and reference handles are kept.
    pub revocation: RevocationStore,
    /// DPoP at `/token`.
    pub dpop: Dpop,
    /// Things that load but deserve a second look (`ferry check` prints them).
    pub warnings: Vec<String>,
}

impl Config {
    /// Live replay-cache entries one registered client or service account may hold:
    /// `limits.max_replay_entries_per_principal`, by default a tenth of the cache (at
    /// least one).
    pub fn replay_share(&self) -> usize {
        self.limits
            .max_replay_entries_per_principal
            .unwrap_or(self.max_replay_entries / 10)
            .max(1)
    }

    /// The provider whose issuer is exactly `iss`.
    pub fn provider_for_issuer(&self, iss: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.issuer == iss)
    }
}

/// Parses and validates a configuration. `base_dir` resolves relative paths.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    // The parser's default budget (250,000 nodes) stops near 8,000 providers; a
    // configuration is the operator's input, so allow 40 times that, still bounded.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 10_000_000,
            max_events: 40_000_000,
        },
    };
    let raw: RawConfig = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let mut errs = ConfigErrors::default();
        errs.push("(file)", e.to_string());
        errs
    })?;
    validate(raw, base_dir)
}

/// The public listener's address when `listen` is not given.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The public listener's TLS, the admin and metrics listeners (on sockets of their own)
/// and the audit sink.
fn listeners(
    errs: &mut ConfigErrors,
    raw: &RawConfig,
    base: &Path,
) -> (Option<Tls>, Admin, MetricsListener, AuditSinkConfig) {
    let tls = raw
        .tls
        .as_ref()
        .and_then(|t| ops::tls(errs, "tls", t, base));
    let admin = ops::admin(errs, &raw.admin, base);
    let metrics = ops::metrics_listener(&raw.metrics);
    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    ops::check_listeners(errs, listen, &admin, &metrics);
    (tls, admin, metrics, ops::audit(&raw.audit, base))
}

/// Features that need a client certificate, where none can arrive (the TLS listener does
/// not ask for one and no proxy header is configured): one warning each.
fn certificate_warnings(
    tls: Option<&Tls>,
    header: bool,
    providers: &[Provider],
    clients: &[Client],
    audiences: &[crate::policy::Audience],
) -> Vec<String> {
    if header || tls.is_some_and(|t| t.client_auth != ClientCertMode::Off) {
        return Vec::new();
    }
    providers
        .iter()
        .filter(|p| p.kind == ProviderKind::X509)
        .map(|p| format!("provider {} (kind x509)", p.id))
        .chain(
            clients
                .iter()
                .filter(|c| c.auth.is_certificate())
                .map(|c| format!("client {} ({})", c.id, c.auth.as_str())),
        )
        .chain(
            audiences
                .iter()
                .filter(|a| a.require_mtls)
                .map(|a| format!("audience {} (require_mtls)", a.name)),
        )
        .map(|what| {
            format!(
                "{what} needs a client certificate, and none can arrive: set tls.client_auth (optional or required) or client_cert_header"
            )
        })
        .collect()
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut warnings = Vec::new();
    let cel = Cel::new();
    let expose = raw.expose_denial_messages.unwrap_or(false);

    let issuer = sections::issuer(&mut errs, raw.issuer.as_deref());

    let lifetimes = sections::lifetimes(&mut errs, &raw.tokens);
    let limits = ops::limits(&mut errs, &raw.limits);
    if let Some(w) = ops::global_rate_warning(limits.rate_global, ops::available_cores()) {
        warnings.push(w);
    }
    let (trusted_proxies, listen_proxy_protocol) = proxies::proxies(&mut errs, &raw);
    let client_cert_header =
        cert_header::client_cert_header(&mut errs, raw.client_cert_header.as_ref());
    let (tls, admin, metrics, audit) = listeners(&mut errs, &raw, base);

    let outbound = sections::outbound(&mut errs, &mut warnings, &raw.outbound);
    let mut providers = sections::providers(
        &mut errs,
        &mut warnings,
        &cel,
        &raw.providers,
        base,
        &outbound,
        &issuer,
    );
    for p in &mut providers {
        p.mapping.expose_messages = expose;
    }
    let audiences = audience::audiences(&mut errs, &cel, &raw.audiences, lifetimes.max_ttl);

    let service_accounts =
        clients::service_accounts(&mut errs, &raw.service_accounts, base, &outbound);
    let default_ca = tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
    let clients = clients::clients(&mut errs, &raw.clients, base, &outbound, default_ca);
    audience::check_client_ids(&mut errs, &audiences, &raw.clients);
    sections::check_service_accounts(&mut errs, &service_accounts, &clients, &providers);
    let max_replay_entries = raw.max_replay_entries.unwrap_or(100_000);
    let replay_redis = raw
        .replay
        .as_ref()
        .and_then(|r| redis::replay(&mut errs, r));
    let dpop = ops::dpop(&mut errs, &raw.dpop, &issuer);
    let (data_dir, signing, revocation) =
        sections::storage(&mut errs, &mut warnings, &raw, base, lifetimes.max_ttl);

    warnings.extend(certificate_warnings(
        tls.as_ref(),
        client_cert_header.is_some(),
        &providers,
        &clients,
        &audiences,
    ));

    if !errs.0.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        issuer,
        listen: raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        trusted_proxies,
        listen_proxy_protocol,
        client_cert_header,
        data_dir,
        log_level: raw.log_level.unwrap_or_else(|| "info".to_owned()),
        lifetimes,
        max_body_bytes: limits.max_body_bytes,
        outbound,
        providers,
        audience_names: audiences.iter().map(|a| a.name.clone()).collect(),
        policy: Policy::new(cel, audiences, expose),
        signing,
        limits,
        tls,
        admin,
        metrics,
        audit,
        service_accounts,
        clients,
        max_replay_entries,
        replay_redis,
        revocation,
        dpop,
        warnings,
    })
}

#[cfg(test)]
mod cert_tests;
#[cfg(test)]
mod claims_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trap_tests;
