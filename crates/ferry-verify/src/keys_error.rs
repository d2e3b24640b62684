//! Why an issuer's keys could not be had: fetching, discovery, or the key set itself.

use reqwest::Url;

use crate::fetch::FetchError;

/// A key set that could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or no `keys` array.
    #[error("not a JWK Set: {0}")]
    Malformed(&'static str),
}

/// Why fetching an issuer's keys failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The discovery document or the key set could not be fetched from `at` (origin and
    /// path only: never a query string or credentials).
    #[error("{at}: {error}")]
    Fetch {
        /// Where.
        at: String,
        /// What went wrong.
        error: FetchError,
    },
    /// The discovery document is not JSON.
    #[error("discovery document is not JSON")]
    DiscoveryNotJson,
    /// The discovery document names another issuer (OpenID Connect Discovery §4.3).
    #[error("discovery document names another issuer")]
    DiscoveryIssuer,
    /// The discovery document has no `jwks_uri`.
    #[error("discovery document has no jwks_uri")]
    NoJwksUri,
    /// The `jwks_uri` is not a URL.
    #[error("jwks_uri is not a URL")]
    JwksUriNotUrl,
    /// The `jwks_uri` is refused by the outbound policy.
    #[error("jwks_uri {0}")]
    JwksUriRefused(crate::net::NetError),
    /// The key set does not parse.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// The key set has no key usable with the allowed algorithms.
    #[error("the key set has no usable key")]
    NoUsableKey,
    /// No keys are held and no fetch result is known.
    #[error("no keys")]
    NoKeys,
    /// SAML metadata that is unusable (its reason, a fixed text).
    #[error("SAML metadata: {0}")]
    Metadata(String),
    /// The fetch task ended abnormally.
    #[error("fetch task failed: {0}")]
    Task(String),
}

impl KeysError {
    /// A fetch of `url` that failed with `error`.
    pub fn fetch(url: &Url, error: FetchError) -> Self {
        Self::Fetch {
            at: located(url),
            error,
        }
    }
}

/// A URL as logs may show it: scheme, host, port and path; no user, password, query or
/// fragment (a key URL may carry a token in its query).
pub fn located(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{}://{host}:{p}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}
