//! One factory for the keys of every issuer Ferry trusts: providers, service accounts
//! and clients (`private_key_jwt`). Static keys (inline, or a file watched for changes)
//! are parsed now, and a file named twice with the same algorithms is read once and
//! shared; remote keys get a hardened client under the outbound policy and start cold.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_core::config::{ApiServer, Config, KeysConfig, origin_of};
use ferry_verify::net::{ClientSettings, Http, HttpError, NetError, OutboundPolicy};
use ferry_verify::time::MonoTime;
use ferry_verify::{
    Algorithm, Bearer, BearerToken, CacheSettings, Endpoint, KeyFileError, KeySource, RemoteKeys,
    StaticKeys,
};

/// Why an issuer's key source cannot be built. [`KeySourceError::at`] names the
/// configuration member at fault, relative to the issuer's entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// The outbound policy (insecure origins, the API server's origin) is not valid.
    #[error("{0}")]
    Policy(#[source] NetError),
    /// The API server's CA bundle cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    CaFile {
        /// The bundle.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client cannot be built (a CA bundle that is not PEM, say).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Inline keys do not load.
    #[error(transparent)]
    Inline(KeyFileError),
    /// A key file does not load.
    #[error(transparent)]
    File(KeyFileError),
}

impl KeySourceError {
    /// The member at fault, relative to the issuer's entry (`keys`, `api_server`,
    /// `jwks.file`, …).
    pub fn at(&self) -> &'static str {
        match self {
            Self::Policy(_) => "keys",
            Self::CaFile { .. } => "api_server.ca_file",
            Self::Http(_) => "api_server",
            Self::Inline(_) => "jwks.inline",
            Self::File(_) => "jwks.file",
        }
    }
}

/// What one issuer's keys are.
#[derive(Debug, Clone)]
pub struct KeySpec<'a> {
    /// A name for logs and metrics (the provider or account id).
    pub name: &'a str,
    /// Where the keys come from.
    pub keys: &'a KeysConfig,
    /// The algorithms the keys are parsed for.
    pub algorithms: &'a [Algorithm],
    /// The exact issuer a discovery document must name.
    pub issuer: &'a str,
    /// A Kubernetes API server: its origin trusted, its CA bundle and bearer token used.
    pub api_server: Option<&'a ApiServer>,
    /// Cache timing of remote keys.
    pub cache: CacheSettings,
}

/// A static key source and the warnings about keys it skipped.
type Loaded = (KeySource, Vec<String>);

/// Builds key sources for one configuration.
pub struct KeySources<'a> {
    config: &'a Config,
    time: Arc<dyn MonoTime>,
    /// Files already loaded, by path and algorithms: one parsed, watched set each.
    files: HashMap<(PathBuf, Vec<Algorithm>), Loaded>,
}

impl std::fmt::Debug for KeySources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySources")
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// The connection settings of the outbound section, with extra CA certificates.
fn client_settings(config: &Config, extra_roots_pem: Option<Vec<u8>>) -> ClientSettings {
    ClientSettings {
        connect_timeout: config.outbound.connect_timeout,
        timeout: config.outbound.timeout,
        max_response_bytes: config.outbound.max_response_bytes,
        extra_roots_pem,
    }
}

impl<'a> KeySources<'a> {
    /// A factory for `config`'s issuers.
    pub fn new(config: &'a Config, time: Arc<dyn MonoTime>) -> Self {
        Self {
            config,
            time,
            files: HashMap::new(),
        }
    }

    /// The key source of one issuer, with warnings about skipped keys.
    pub fn build(&mut self, spec: &KeySpec<'_>) -> Result<Loaded, KeySourceError> {
        let algorithms = spec.algorithms;
        match spec.keys {
            KeysConfig::Inline(text) => StaticKeys::from_bytes(text.as_bytes(), algorithms)
                .map(|(k, w)| (KeySource::Static(Arc::new(k)), w))
                .map_err(KeySourceError::Inline),
            KeysConfig::File(f) => {
                let key = (f.clone(), algorithms.to_vec());
                if let Some(loaded) = self.files.get(&key) {
                    return Ok(loaded.clone());
                }
                let (k, w) =
                    StaticKeys::from_file(f.clone(), algorithms).map_err(KeySourceError::File)?;
                let loaded = (KeySource::Static(Arc::new(k)), w);
                self.files.insert(key, loaded.clone());
                Ok(loaded)
            }
            KeysConfig::Uri(u) => {
                let endpoint = Endpoint::Jwks(u.clone());
                Ok((KeySource::Remote(self.remote(spec, endpoint)?), Vec::new()))
            }
            KeysConfig::Discovery(u) => {
                let endpoint = Endpoint::Discovery {
                    issuer: spec.issuer.to_owned(),
                    url: u.clone(),
                };
                Ok((KeySource::Remote(self.remote(spec, endpoint)?), Vec::new()))
            }
        }
    }

    /// A remote key cache: a hardened client whose policy opts in the configured
    /// insecure origins and, for Kubernetes, the API server's origin (with its CA
    /// bundle and bearer token, which go to that origin only).
    fn remote(
        &self,
        spec: &KeySpec<'_>,
        endpoint: Endpoint,
    ) -> Result<Arc<RemoteKeys>, KeySourceError> {
        let api_origin = spec.api_server.and_then(|a| origin_of(a.url.as_str()));
        let trusted: Vec<String> = api_origin.iter().cloned().collect();
        let policy = OutboundPolicy::new(&self.config.outbound.allow_insecure_origins, &trusted)
            .map_err(KeySourceError::Policy)?;
        let extra_roots_pem = match spec.api_server.and_then(|a| a.ca_file.as_ref()) {
            Some(f) => Some(std::fs::read(f).map_err(|source| KeySourceError::CaFile {
                path: f.clone(),
                source,
            })?),
            None => None,
        };
        let http = Http::new(policy, &client_settings(self.config, extra_roots_pem))?;
        let bearer = match (spec.api_server, api_origin) {
            (Some(a), Some(origin)) => a.token_file.clone().map(|f| Bearer {
                origin,
                token: BearerToken::File(f),
            }),
            _ => None,
        };
        Ok(RemoteKeys::new(
            spec.name,
            endpoint,
            spec.algorithms.to_vec(),
            http,
            bearer,
            spec.cache.clone(),
            self.time.clone(),
        ))
    }
}
