//! The key manager's types: what it is configured with, what requests read.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use ferry_core::keyring::{KeyMeta, RingPolicy};

use crate::kek::Keks;
use crate::pkcs11::Hsm;
use crate::signer::{Signer, SigningAlg};
use crate::store::KeyStore;

/// Where new private keys are made and how stored ones are opened.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Software keys, sealed with KEKs (or, for development only, in clear).
    Software {
        /// The key-encryption keys.
        keks: Arc<Keks>,
        /// Store new keys in clear (development only).
        plaintext: bool,
    },
    /// Keys generated and held in a PKCS#11 token.
    Pkcs11(Arc<Hsm>),
}

/// What the manager needs besides the store.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Algorithm of new keys.
    pub alg: SigningAlg,
    /// Ring timing.
    pub policy: RingPolicy,
    /// Key material backend.
    pub backend: Backend,
    /// This writer's name in the store's history (host:pid).
    pub writer: String,
}

/// What requests read: immutable, swapped whole.
#[derive(Debug)]
pub struct Snapshot {
    /// The store version this snapshot reflects.
    pub version: u64,
    /// The ring's lifecycle records.
    pub keys: Vec<KeyMeta>,
    /// The signing key.
    pub active: Arc<dyn Signer>,
    /// `/jwks` body: pending, active and retired public keys.
    pub jwks: String,
    /// A strong ETag of `jwks`.
    pub etag: String,
    /// Keys revoked in an emergency whose tokens may still be alive.
    pub revoked: Vec<crate::store::RevokedKey>,
    /// The latest `exp` a token signed by `active` may carry
    /// (`keyring::signing_deadline`), computed once per ring version.
    pub signing_deadline: Option<i64>,
    /// The longest token lifetime ever configured (`StoredRing::max_issued_ttl`).
    pub max_issued_ttl: i64,
    /// Why this replica cannot sign, `None` when it can: it cannot unseal the active
    /// key (sealed under a key-encryption key it does not hold). `active` is then a
    /// stand-in that refuses to sign, and `jwks` still lists every key of the ring:
    /// what the other replicas sign with stays verifiable wherever `/jwks` is fetched.
    pub cannot_sign: Option<String>,
}

impl Snapshot {
    /// Whether `active` can sign.
    pub fn can_sign(&self) -> bool {
        self.cannot_sign.is_none()
    }
}

/// The key manager.
#[derive(Debug)]
pub struct KeyManager {
    pub(super) store: Arc<dyn KeyStore>,
    pub(super) cfg: ManagerConfig,
    /// `cfg.backend`, replaced whole when the key-encryption keys are reloaded.
    pub(super) backend: RwLock<Backend>,
    /// Set when the backend changed: the next refresh rebuilds the snapshot even if the
    /// ring's version did not change.
    pub(super) rebuild: AtomicBool,
    pub(super) current: RwLock<Arc<Snapshot>>,
}
