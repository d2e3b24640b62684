//! Secrets named by the configuration (an environment variable or a file), and the
//! key-encryption keys among them. A leaf: the key store, the revocation store and the
//! command line all read them.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_core::config::{SecretSource, Signing};
use ferry_keys::{Kek, KekError};

/// Why a configured secret could not be read. Never carries the secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// The secret's file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A key-encryption key's text is not one (the text is never shown).
    #[error("signing.key_encryption_keys[{index}]: {source}")]
    BadKek {
        /// Its place in `signing.key_encryption_keys`.
        index: usize,
        /// Why it is refused.
        #[source]
        source: KekError,
    },
}

/// Reads a secret: `Ok(None)` for an unset environment variable.
pub fn read_secret(s: &SecretSource) -> Result<Option<String>, SecretError> {
    match s {
        SecretSource::Env(name) => Ok(std::env::var(name).ok().filter(|v| !v.trim().is_empty())),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|e| SecretError::Unreadable {
                path: path.clone(),
                source: Arc::new(e),
            }),
    }
}

/// The key-encryption keys configured and set (an unset environment variable is
/// skipped), in order: the first seals. They seal private signing keys and the JWTs
/// behind reference handles.
pub fn read_kek_list(s: &Signing) -> Result<Vec<Kek>, SecretError> {
    let mut keks = Vec::new();
    for (index, src) in s.key_encryption_keys.iter().enumerate() {
        if let Some(text) = read_secret(src)? {
            keks.push(Kek::parse(&text).map_err(|source| SecretError::BadKek { index, source })?);
        }
    }
    Ok(keks)
}
