//! Where an issuer's keys come from — a static set (inline, or a file reloaded when it
//! changes) or a remote cache — and verification that asks the source again, once, when
//! a token names a `kid` the current set lacks.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use crate::alg::Algorithm;
use crate::error::VerifyError;
use crate::jwks::{JwksError, KeySet};
use crate::remote::{CacheStats, RemoteKeys, Unavailable};

/// A key set given in configuration, optionally backed by a file that is reloaded when
/// its modification time or size changes. A file that stops parsing keeps the old keys.
#[derive(Debug)]
pub struct StaticKeys {
    keys: RwLock<Arc<KeySet>>,
    file: Option<PathBuf>,
    format: KeyFormat,
    seen: Mutex<Option<(SystemTime, u64)>>,
}

/// What a configured key set is written as.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormat {
    /// A JWK Set; keys kept for these algorithms.
    Jwks(Vec<Algorithm>),
    /// SAML 2.0 metadata; the signing certificates of this entity.
    #[cfg(feature = "saml")]
    SamlMetadata(String),
    /// PEM certificates (a SAML identity provider's signing certificates).
    #[cfg(feature = "saml")]
    Pem,
}

fn file_stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Why a configured key set (inline or a file) cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a JWK Set.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// No key is usable with the allowed algorithms.
    #[error("no usable key for the allowed algorithms")]
    NoUsableKey,
    /// SAML metadata or certificates that cannot be used.
    #[cfg(feature = "saml")]
    #[error(transparent)]
    Saml(#[from] crate::saml::SamlError),
}

fn read(path: &PathBuf) -> Result<Vec<u8>, KeyFileError> {
    std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.clone(),
        source,
    })
}

fn parse(bytes: &[u8], format: &KeyFormat) -> Result<(KeySet, Vec<String>), KeyFileError> {
    let (set, warnings) = match format {
        KeyFormat::Jwks(algorithms) => KeySet::from_jwks(bytes, algorithms)?,
        #[cfg(feature = "saml")]
        KeyFormat::SamlMetadata(entity_id) => (
            KeySet::from_certificates(crate::saml::from_metadata(bytes, entity_id)?),
            Vec::new(),
        ),
        #[cfg(feature = "saml")]
        KeyFormat::Pem => (
            KeySet::from_certificates(crate::saml::from_pem(bytes)?),
            Vec::new(),
        ),
    };
    if set.is_empty() {
        return Err(KeyFileError::NoUsableKey);
    }
    Ok((set, warnings))
}

impl StaticKeys {
    /// Keys from JWKS bytes.
    pub fn from_bytes(
        bytes: &[u8],
        algorithms: &[Algorithm],
    ) -> Result<(Self, Vec<String>), KeyFileError> {
        Self::from_bytes_as(bytes, KeyFormat::Jwks(algorithms.to_vec()))
    }

    /// Keys from bytes in `format`.
    pub fn from_bytes_as(
        bytes: &[u8],
        format: KeyFormat,
    ) -> Result<(Self, Vec<String>), KeyFileError> {
        let (set, warnings) = parse(bytes, &format)?;
        Ok((
            Self {
                keys: RwLock::new(Arc::new(set)),
                file: None,
                format,
                seen: Mutex::new(None),
            },
            warnings,
        ))
    }

    /// No keys at all (a placeholder for sources that verify elsewhere).
    pub fn empty() -> Self {
        Self {
            keys: RwLock::new(Arc::new(KeySet::default())),
            file: None,
            format: KeyFormat::Jwks(Vec::new()),
            seen: Mutex::new(None),
        }
    }

    /// Keys from a JWKS file, to be reloaded when it changes.
    pub fn from_file(
        path: PathBuf,
        algorithms: &[Algorithm],
    ) -> Result<(Self, Vec<String>), KeyFileError> {
        Self::from_file_as(path, KeyFormat::Jwks(algorithms.to_vec()))
    }

    /// Keys from a file in `format`, to be reloaded when it changes.
    pub fn from_file_as(
        path: PathBuf,
        format: KeyFormat,
    ) -> Result<(Self, Vec<String>), KeyFileError> {
        let stamp = file_stamp(&path);
        let bytes = read(&path)?;
        let (mut me, warnings) = Self::from_bytes_as(&bytes, format)?;
        me.file = Some(path);
        me.seen = Mutex::new(stamp);
        Ok((me, warnings))
    }

    /// Whether the keys come from a file that may change.
    pub fn watches_file(&self) -> bool {
        self.file.is_some()
    }

    /// The current keys.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reloads the file when it changed. `Ok(true)` when new keys were loaded; an error
    /// leaves the old keys in place.
    pub fn reload_if_changed(&self) -> Result<bool, KeyFileError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let stamp = file_stamp(path);
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if stamp.is_none() || *seen == stamp {
                return Ok(false);
            }
            *seen = stamp;
        }
        let bytes = read(path)?;
        let (set, _) = parse(&bytes, &self.format)?;
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
        Ok(true)
    }
}

/// An issuer's key source.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Keys given in configuration.
    Static(Arc<StaticKeys>),
    /// Keys fetched and cached.
    Remote(Arc<RemoteKeys>),
}

impl KeySource {
    /// The keys to verify with now.
    pub async fn keys(&self) -> Result<Arc<KeySet>, Unavailable> {
        match self {
            Self::Static(s) => Ok(s.current()),
            Self::Remote(r) => r.keys().await,
        }
    }

    /// Asks for newer keys because a token names an unknown `kid`.
    pub async fn refetch_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        match self {
            Self::Static(s) => match s.reload_if_changed() {
                Ok(true) => Some(s.current()),
                _ => None,
            },
            Self::Remote(r) => r.refetch_for_unknown_kid().await,
        }
    }

    /// Cache counters of a remote source.
    pub fn stats(&self) -> Option<CacheStats> {
        match self {
            Self::Static(_) => None,
            Self::Remote(r) => Some(r.stats()),
        }
    }
}

/// Runs `attempt` with the keys of `source`; on an unknown `kid`, asks the source for
/// newer keys once and runs it again.
pub(crate) async fn with_refetch<T>(
    source: &KeySource,
    mut attempt: impl FnMut(&KeySet) -> Result<T, VerifyError>,
) -> Result<T, VerifyError> {
    let keys = source
        .keys()
        .await
        .map_err(|e| VerifyError::KeysUnavailable(e.0))?;
    match attempt(&keys) {
        Err(VerifyError::UnknownKey) => match source.refetch_for_unknown_kid().await {
            Some(newer) => attempt(&newer),
            None => Err(VerifyError::UnknownKey),
        },
        other => other,
    }
}

// Here rather than in `saml`, so that `saml` needs nothing of the key sources (which
// read SAML metadata).
#[cfg(feature = "saml")]
impl crate::saml::SamlDocument<'_> {
    /// [`crate::saml::SamlDocument::verify_with`] with a provider's key source: when no
    /// certificate verifies a signature, the source is asked once for newer certificates
    /// (a rotated IdP key).
    pub async fn verify(
        &self,
        source: &KeySource,
        policy: &crate::saml::SamlPolicy<'_>,
        now: i64,
    ) -> Result<crate::saml::Assertion, crate::saml::SamlError> {
        use crate::saml::SamlError;
        let keys = source
            .keys()
            .await
            .map_err(|e| SamlError::KeysUnavailable(e.0))?;
        match self.verify_with(keys.certificates(), policy, now) {
            Err(e @ (SamlError::Signature | SamlError::UntrustedCertificate)) => {
                match source.refetch_for_unknown_kid().await {
                    Some(newer) => self.verify_with(newer.certificates(), policy, now),
                    None => Err(e),
                }
            }
            other => other,
        }
    }
}
