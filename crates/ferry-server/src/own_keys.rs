//! Ferry's own public keys as a verifier's key set, parsed once per key-ring version: what
//! narrowing and introspection verify Ferry's tokens with.

use std::sync::{Arc, RwLock};

use ferry_keys::KeyManager;
use ferry_verify::{Algorithm, KeySet};

/// The parsed key set of the ring version last asked for.
#[derive(Debug, Default)]
pub struct OwnKeys(RwLock<Option<(u64, Arc<KeySet>)>>);

impl OwnKeys {
    /// The key set of the ring version in force.
    pub fn get(&self, keys: &KeyManager) -> Arc<KeySet> {
        let snap = keys.snapshot();
        if let Some((v, k)) = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && *v == snap.version
        {
            return k.clone();
        }
        let set = Arc::new(
            KeySet::from_jwks(snap.jwks.as_bytes(), &Algorithm::ferry())
                .map(|(s, _)| s)
                .unwrap_or_default(),
        );
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((snap.version, set.clone()));
        set
    }
}
