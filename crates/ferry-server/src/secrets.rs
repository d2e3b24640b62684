//! Secrets named by the configuration (an environment variable or a file), and the
//! key-encryption keys among them. A leaf: the key store, the revocation store and the
//! command line all read them.

use ferry_core::config::{SecretSource, Signing};
use ferry_keys::Kek;

/// Reads a secret: `Ok(None)` for an unset environment variable.
pub fn read_secret(s: &SecretSource) -> Result<Option<String>, String> {
    match s {
        SecretSource::Env(name) => Ok(std::env::var(name).ok().filter(|v| !v.trim().is_empty())),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
    }
}

/// The key-encryption keys configured and set (an unset environment variable is
/// skipped), in order: the first seals. They seal private signing keys and the JWTs
/// behind reference handles.
pub fn read_kek_list(s: &Signing) -> Result<Vec<Kek>, String> {
    let mut keks = Vec::new();
    for (i, src) in s.key_encryption_keys.iter().enumerate() {
        if let Some(text) = read_secret(src)? {
            keks.push(
                Kek::parse(&text).map_err(|e| format!("signing.key_encryption_keys[{i}]: {e}"))?,
            );
        }
    }
    Ok(keks)
}
