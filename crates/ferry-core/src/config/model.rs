//! The configuration's leaf types, shared by the sections that build them: where keys
//! come from, the kinds of provider, remote-key cache timing, a Kubernetes API server,
//! outbound HTTP, and the defaults and allowlists they are checked against.

use std::path::PathBuf;
use std::time::Duration;

use ferry_token::Algorithm;
use url::Url;

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
    /// A SAML identity provider's metadata file (reloaded when it changes).
    SamlMetadataFile(PathBuf),
    /// A SAML identity provider's metadata URL (fetched and cached like a JWKS).
    SamlMetadataUrl(Url),
    /// A SAML identity provider's signing certificates, PEM.
    SamlCertificates(String),
    /// An x509 provider's trust anchors and intermediates: PEM files.
    X509 {
        /// The CA certificates chains must end at.
        trust_anchors: Vec<PathBuf>,
        /// Intermediate CA certificates to build paths with.
        intermediates: Vec<PathBuf>,
    },
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
    /// A SAML 2.0 identity provider: assertions as `…:saml2` subject tokens.
    Saml,
    /// X.509 certificate chains (a client's certificate) as `…:mtls` subject tokens.
    X509,
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
            Self::Saml => "saml",
            Self::X509 => "x509",
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
    /// A bearer-token file, sent only to this origin (and `jwks_origins`), re-read on
    /// every fetch.
    pub token_file: Option<PathBuf>,
    /// Other origins of the same API server (its advertise address, which a discovery
    /// document may name as `jwks_uri`): trusted like `url`'s, with its CA and token.
    pub jwks_origins: Vec<String>,
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
    /// An HTTP proxy every key fetch goes through (CONNECT for https), set explicitly:
    /// never taken from the environment.
    pub proxy: Option<Url>,
}
