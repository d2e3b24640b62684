//! Reference-token handles: each handle's SHA-256 mapped to the JWT it stands for, until
//! that JWT's `exp`, stored durably beside the revocations. The JWT is sealed under the
//! key-encryption key (AES-256-GCM, as private signing keys are; the handle's hash is
//! bound in, so a sealed JWT cannot be moved to another handle): it never lies on disk
//! or in the database in clear.
//!
//! Without a key-encryption key (keys in an HSM with no `FERRY_KEK`, or development
//! keys in clear): a single node keeps its handles in memory only, as before — a restart
//! loses them and their holders ask again; replicas sharing PostgreSQL refuse to issue
//! reference tokens (`503`), since a handle one replica kept to itself would be unknown
//! at the others.
//!
//! Whoever holds a valid subject token may ask for reference tokens, so the store is
//! bounded: at most `limits.max_reference_tokens` live handles (expired ones are dropped
//! first; then a new one is refused, `503`), each JWT at most [`MAX_JWT_BYTES`].

use std::sync::Arc;

use ferry_keys::Keks;

use super::store::{HandleError, StoreError, StoredHandle};

/// Largest JWT stored behind a handle, bytes.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Seals and opens the JWTs behind handles.
#[derive(Debug, Clone, Default)]
pub struct Sealer(Option<Arc<Keks>>);

fn context(hash: &str) -> Vec<u8> {
    format!("ferry-reference-handle:{hash}").into_bytes()
}

impl Sealer {
    /// Seals with the first of `keks`, opens with any; none configured: no sealing.
    pub fn new(keks: Keks) -> Self {
        Self((!keks.is_empty()).then(|| Arc::new(keks)))
    }

    /// Whether handles can be stored durably.
    pub fn can_seal(&self) -> bool {
        self.0.is_some()
    }

    /// The JWT behind `hash`, sealed.
    pub fn seal(&self, hash: &str, jwt: &str, exp: i64) -> Result<StoredHandle, HandleError> {
        let keks = self.0.as_ref().ok_or(StoreError::NoSealingKey)?;
        let sealed = keks
            .seal_bound(jwt.as_bytes(), &context(hash))
            .map_err(|e| StoreError::Seal(e.to_string()))?;
        Ok(StoredHandle { sealed, exp })
    }

    /// The JWT behind `hash`, or `None` when no configured KEK opens it (or it was
    /// moved from another handle).
    pub fn open(&self, hash: &str, handle: &StoredHandle) -> Option<String> {
        let keks = self.0.as_ref()?;
        let plain = keks
            .open_bound(&handle.sealed, &context(hash), "reference handle")
            .ok()?;
        String::from_utf8(plain).ok()
    }
}
