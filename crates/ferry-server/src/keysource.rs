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
    Algorithm, Bearer, BearerToken, CacheSettings, Endpoint, KeyFileError, KeyFormat, KeySource,
    RemoteKeys, StaticKeys,
};

/// Why an issuer's key source cannot be built. [`KeySourceError::at`] names the
/// configuration member at fault, relative to the issuer's entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// The outbound policy (insecure origins, the API server's origin) is not valid.
    #[error("{0}")]
    Policy(#[source] NetError),
    /// The provider's own CA bundle (`ca_file`) cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ProviderCaFile {
        /// The bundle.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
            Self::ProviderCaFile { .. } => "ca_file",
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
    /// A CA bundle trusted for this issuer's fetches only.
    pub ca_file: Option<&'a std::path::Path>,
    /// Whether the issuer's exact key origin may resolve to private addresses.
    pub private_network: bool,
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

/// The CA certificates an issuer's fetches trust besides the system's: the provider's
/// own bundle and the API server's, each read now.
fn extra_roots(spec: &KeySpec<'_>) -> Result<Option<Vec<u8>>, KeySourceError> {
    let mut pem = Vec::new();
    if let Some(f) = spec.ca_file {
        let bytes = std::fs::read(f).map_err(|source| KeySourceError::ProviderCaFile {
            path: f.to_owned(),
            source,
        })?;
        pem.extend_from_slice(&bytes);
        pem.push(b'\n');
    }
    if let Some(f) = spec.api_server.and_then(|a| a.ca_file.as_ref()) {
        let bytes = std::fs::read(f).map_err(|source| KeySourceError::CaFile {
            path: f.clone(),
            source,
        })?;
        pem.extend_from_slice(&bytes);
    }
    Ok((!pem.is_empty()).then_some(pem))
}

/// The connection settings of the outbound section, with extra CA certificates.
fn client_settings(config: &Config, extra_roots_pem: Option<Vec<u8>>) -> ClientSettings {
    ClientSettings {
        connect_timeout: config.outbound.connect_timeout,
        timeout: config.outbound.timeout,
        max_response_bytes: config.outbound.max_response_bytes,
        extra_roots_pem,
        proxy: config.outbound.proxy.clone(),
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
            // A SAML provider's issuer is its entity id.
            KeysConfig::SamlMetadataFile(f) => {
                StaticKeys::from_file_as(f.clone(), KeyFormat::SamlMetadata(spec.issuer.to_owned()))
                    .map(|(k, w)| (KeySource::Static(Arc::new(k)), w))
                    .map_err(KeySourceError::File)
            }
            KeysConfig::SamlCertificates(pem) => {
                StaticKeys::from_bytes_as(pem.as_bytes(), KeyFormat::Pem)
                    .map(|(k, w)| (KeySource::Static(Arc::new(k)), w))
                    .map_err(KeySourceError::Inline)
            }
            // An x509 provider verifies chains with its trust store, not keys.
            KeysConfig::X509 { .. } => {
                Ok((KeySource::Static(Arc::new(StaticKeys::empty())), Vec::new()))
            }
            KeysConfig::SamlMetadataUrl(u) => {
                let endpoint = Endpoint::SamlMetadata {
                    entity_id: spec.issuer.to_owned(),
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
        // The API server's origins: its URL's and the other addresses it is known by.
        let trusted: Vec<String> = api_origin
            .iter()
            .cloned()
            .chain(
                spec.api_server
                    .iter()
                    .flat_map(|a| a.jwks_origins.iter().cloned()),
            )
            .collect();
        let private: Vec<String> = match (&endpoint, spec.private_network) {
            (
                Endpoint::Jwks(u)
                | Endpoint::Discovery { url: u, .. }
                | Endpoint::SamlMetadata { url: u, .. },
                true,
            ) => origin_of(u.as_str()).into_iter().collect(),
            _ => Vec::new(),
        };
        let policy = OutboundPolicy::new(&self.config.outbound.allow_insecure_origins, &trusted)
            .and_then(|p| p.allow_private(&private))
            .map_err(KeySourceError::Policy)?;
        let extra_roots_pem = extra_roots(spec)?;
        let http = Http::new(policy, &client_settings(self.config, extra_roots_pem))?;
        let bearer = match (spec.api_server, api_origin) {
            (Some(a), Some(_)) => a.token_file.clone().map(|f| Bearer {
                origins: trusted.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_testkit::TestKey;
    use ferry_testkit::keys::jwks;
    use ferry_verify::time::ManualMono;

    fn config(dir: &std::path::Path) -> Config {
        let yaml = "issuer: https://ferry.test\n\
            providers:\n  - { id: a, issuer: https://a.test, audiences: [https://ferry.test], jwks: { file: keys.json } }\n\
            audiences:\n  - { audience: https://api.test, rules: [ { allow: 'true' } ] }\n";
        ferry_core::config::parse(yaml, dir).unwrap()
    }

    fn spec<'a>(keys: &'a KeysConfig, algorithms: &'a [Algorithm]) -> KeySpec<'a> {
        KeySpec {
            name: "a",
            keys,
            algorithms,
            issuer: "https://a.test",
            api_server: None,
            ca_file: None,
            private_network: false,
            cache: CacheSettings::default(),
        }
    }

    fn same(a: &KeySource, b: &KeySource) -> bool {
        matches!((a, b), (KeySource::Static(x), KeySource::Static(y)) if Arc::ptr_eq(x, y))
    }

    /// A file named twice with the same algorithms is read once and shared; with other
    /// algorithms it is a key set of its own.
    #[test]
    fn a_key_file_is_loaded_once_per_algorithm_list() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        std::fs::write(&file, jwks(&[&TestKey::ec("e")]).to_string()).unwrap();
        let config = config(dir.path());
        let mut sources = KeySources::new(&config, Arc::new(ManualMono::default()));
        let keys = KeysConfig::File(file);
        let es = [Algorithm::ES256];
        let (first, _) = sources.build(&spec(&keys, &es)).unwrap();
        let (second, _) = sources.build(&spec(&keys, &es)).unwrap();
        assert!(same(&first, &second));
        let (other, _) = sources
            .build(&spec(&keys, &[Algorithm::ES256, Algorithm::RS256]))
            .unwrap();
        assert!(!same(&first, &other));
    }

    /// Each failure names the member at fault, with the message `ferry check` prints.
    #[test]
    fn errors_name_their_member() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("keys.json"),
            jwks(&[&TestKey::ec("e")]).to_string(),
        )
        .unwrap();
        let config = config(dir.path());
        let mut sources = KeySources::new(&config, Arc::new(ManualMono::default()));
        let es = [Algorithm::ES256];
        let cases = [
            (
                KeysConfig::Inline("{}".into()),
                "jwks.inline",
                "not a JWK Set: no keys array",
            ),
            (
                KeysConfig::File(dir.path().join("missing.json")),
                "jwks.file",
                "cannot read",
            ),
            // The twin: a key set with no key for the algorithms.
            (
                KeysConfig::Inline(jwks(&[&TestKey::ec("e")]).to_string()),
                "jwks.inline",
                "no usable key",
            ),
        ];
        for (keys, at, message) in cases {
            let err = sources
                .build(&spec(&keys, &[Algorithm::RS256]))
                .unwrap_err();
            assert_eq!(err.at(), at, "{keys:?}");
            assert!(err.to_string().contains(message), "{err}");
        }
        let good = KeysConfig::Inline(jwks(&[&TestKey::ec("e")]).to_string());
        assert!(sources.build(&spec(&good, &es)).is_ok());
        let ca = ApiServer {
            url: "https://k8s.test".parse().unwrap(),
            ca_file: Some(dir.path().join("missing-ca.pem")),
            token_file: None,
            jwks_origins: Vec::new(),
        };
        let remote = KeysConfig::Discovery(
            "https://k8s.test/.well-known/openid-configuration"
                .parse()
                .unwrap(),
        );
        let mut with_ca = spec(&remote, &es);
        with_ca.api_server = Some(&ca);
        let err = sources.build(&with_ca).unwrap_err();
        assert_eq!(err.at(), "api_server.ca_file");
        assert!(sources.build(&spec(&remote, &es)).is_ok());
    }
}
