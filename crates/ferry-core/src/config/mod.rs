//! Configuration: parse (YAML into raw structs) → validate (every problem collected with
//! its path, such as `providers[1].audiences: must not be empty`) → prepare (expressions
//! compiled once). Nothing here reads files: the caller passes the text and the
//! directory relative paths are resolved against.

mod audience;
mod clients;
mod durations;
mod errors;
mod github;
mod keys;
mod ops;
mod origin;
mod provider;
mod raw;
mod redis;
mod revocation;
mod sections;
mod signing;
mod tenant;
mod typing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::expr::{Cel, Expr};
use crate::mapping::Mapping;
use crate::mint::Lifetimes;
use crate::policy::Policy;
use durations::{duration, opt_duration};
pub use ferry_token::Algorithm;
use raw::RawConfig;

pub use clients::{Client, ClientAuth, ServiceAccount};
pub use errors::ConfigErrors;
pub use github::{GITHUB_ISSUER, github_issuer_shape_ok};
pub use ops::{Admin, AuditSinkConfig, Dpop, Limits, Tls};
pub use origin::origin_of;
pub use redis::{RedisReplay, RedisUrlError};
pub use revocation::{DEFAULT_REVOCATION_POLL_MS, DEFAULT_REVOCATION_TIMEOUT_MS, RevocationStore};
pub use signing::{DEFAULT_KEK_ENV, HsmConfig, PostgresStore, SecretSource, Signing};
pub use tenant::TenantClaim;

/// Signature algorithms a provider may allow. HMAC and `none` are never among them
/// (RFC 8725 §3.1–3.2): a remote issuer's keys are public.
pub const ALLOWED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
/// The default algorithm allowlist of a provider.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];
/// Default clock leeway for subject tokens, seconds.
pub const DEFAULT_LEEWAY: u64 = 60;
/// Default maximum subject-token lifetime (`exp - iat`), seconds.
pub const DEFAULT_MAX_TOKEN_LIFETIME: u64 = 86_400;
/// Default body limit of `/token`.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysConfig {
    /// A JWKS given inline, as JSON text.
    Inline(String),
    /// A JWKS file (reloaded when it changes), resolved against the config's directory.
    File(PathBuf),
    /// A JWKS URL (https, or an opted-in insecure origin).
    Uri(Url),
    /// OIDC discovery at this document URL; its `issuer` must equal the provider's.
    Discovery(Url),
}

/// The kinds of provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// Keys from a JWKS given in configuration.
    Static,
    /// Any OIDC issuer: discovery or an explicit `jwks_uri`.
    Oidc,
    /// GitHub Actions, with its pinning rules.
    Github,
    /// Kubernetes service-account tokens.
    Kubernetes,
    /// Assertions signed by Ferry's own service accounts (RFC 7523), accepted as
    /// token-exchange subject tokens.
    ServiceAccount,
}

/// The internal issuer of the `service_account` provider (it matches any registered
/// service account's `iss`).
pub const SERVICE_ACCOUNT_ISSUER: &str = "urn:ferry:service-accounts";

impl ProviderKind {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Oidc => "oidc",
            Self::Github => "github",
            Self::Kubernetes => "kubernetes",
            Self::ServiceAccount => "service_account",
        }
    }
}

/// Cache timing for remote keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Shortest cache lifetime, whatever the issuer's `Cache-Control` says.
    pub min_ttl: Duration,
    /// Longest cache lifetime.
    pub max_ttl: Duration,
    /// Lifetime without `Cache-Control: max-age`.
    pub default_ttl: Duration,
    /// At most one forced refetch for an unknown `kid` per this interval.
    pub refetch_interval: Duration,
    /// How long expired keys keep verifying while the issuer is unreachable.
    pub max_staleness: Duration,
    /// How long a failed fetch is remembered.
    pub error_ttl: Duration,
}

/// A Kubernetes API server used for discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    /// Its base URL; its origin is trusted (it may resolve to a private address).
    pub url: Url,
    /// A CA bundle (PEM) for its certificate.
    pub ca_file: Option<PathBuf>,
    /// A bearer-token file, sent only to this origin, re-read on every fetch.
    pub token_file: Option<PathBuf>,
}

/// A trusted external issuer.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Unique id, used in policies and audit events.
    pub id: String,
    /// Kind.
    pub kind: ProviderKind,
    /// The exact `iss` it matches.
    pub issuer: String,
    /// `aud` values a subject token must carry one of.
    pub audiences: Vec<String>,
    /// Allowed signature algorithms.
    pub algorithms: Vec<Algorithm>,
    /// `typ` values accepted besides `JWT` (or none), RFC 8725 §3.11.
    pub accepted_types: Vec<String>,
    /// Where the keys come from.
    pub keys: KeysConfig,
    /// Cache timing for remote keys.
    pub cache: CacheConfig,
    /// The Kubernetes API server, for `kubernetes` discovery.
    pub api_server: Option<ApiServer>,
    /// Clock leeway.
    pub leeway: Duration,
    /// Longest accepted `exp - iat`.
    pub max_token_lifetime: Duration,
    /// Oldest accepted `iat`; `None` for no limit.
    pub max_token_age: Option<Duration>,
    /// Whether issued tokens end no later than the subject token.
    pub cap_lifetime_at_subject_expiry: bool,
    /// Condition and mapping.
    pub mapping: Mapping,
    /// Whose a token is, for the bucket of tokens the condition refuses.
    pub tenant_claim: TenantClaim,
}

/// Outbound HTTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Exact origins that may be fetched over plain http (development and tests).
    pub allow_insecure_origins: Vec<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Total timeout per request.
    pub timeout: Duration,
    /// Largest accepted response.
    pub max_response_bytes: usize,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ferry's own issuer identifier (its public base URL).
    pub issuer: String,
    /// Listen address.
    pub listen: String,
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
    /// The provider whose issuer is exactly `iss`.
    pub fn provider_for_issuer(&self, iss: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.issuer == iss)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn compile(
    errs: &mut ConfigErrors,
    cel: &Cel,
    path: &str,
    src: &str,
    vars: &[&str],
) -> Option<Expr> {
    cel.compile_shared(src, vars)
        .map_err(|e| errs.push(path, e))
        .ok()
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

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut warnings = Vec::new();
    let cel = Cel::new();
    let expose = raw.expose_denial_messages.unwrap_or(false);

    let issuer = sections::issuer(&mut errs, raw.issuer.as_deref());

    let lifetimes = sections::lifetimes(&mut errs, &raw.tokens);
    let limits = ops::limits(&mut errs, &raw.limits);
    let max_body_bytes = limits.max_body_bytes;
    let tls = raw
        .tls
        .as_ref()
        .and_then(|t| ops::tls(&mut errs, "tls", t, base));
    let admin = ops::admin(&mut errs, &raw.admin, base);
    let audit = ops::audit(&raw.audit, base);

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
    let clients = clients::clients(&mut errs, &raw.clients, base, &outbound);
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

    if !errs.0.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        issuer,
        listen: raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        data_dir,
        log_level: raw.log_level.unwrap_or_else(|| "info".to_owned()),
        lifetimes,
        max_body_bytes,
        outbound,
        providers,
        audience_names: audiences.iter().map(|a| a.name.clone()).collect(),
        policy: Policy::new(cel, audiences, expose),
        signing,
        limits,
        tls,
        admin,
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
mod tests;
#[cfg(test)]
mod trap_tests;
