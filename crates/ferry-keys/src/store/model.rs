//! What a key store holds, and the trait every store implements.

use std::time::Duration;

use ferry_core::keyring::KeyMeta;
use serde::{Deserialize, Serialize};

use crate::signer::KeyError;

/// How a private key is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Material {
    /// PKCS#8 sealed with a key-encryption key (see `kek`).
    Encrypted {
        /// The sealed blob.
        blob: String,
    },
    /// PKCS#8 in clear: only when explicitly configured for development.
    Plaintext {
        /// base64url PKCS#8.
        pkcs8: String,
    },
    /// A key generated inside a PKCS#11 token; only a reference is stored.
    Pkcs11 {
        /// `CKA_LABEL` / `CKA_ID` of the key pair in the token.
        label: String,
    },
}

/// One key: its lifecycle record, its material and its public JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// Lifecycle.
    #[serde(flatten)]
    pub meta: KeyMeta,
    /// The public JWK (so `/jwks` and `ferry keys export-public` need no private key).
    pub jwk: serde_json::Value,
    /// The private key.
    pub material: Material,
}

/// The whole ring at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRing {
    /// Incremented by every write; 0 for a store never written.
    pub version: u64,
    /// Who wrote this version (host and process), for the compare-and-swap history.
    #[serde(default)]
    pub written_by: String,
    /// The keys.
    pub keys: Vec<StoredKey>,
    /// Keys revoked in an emergency, listed (in the signed revocation list) until every
    /// token they signed has expired.
    #[serde(default)]
    pub revoked: Vec<RevokedKey>,
    /// The longest token lifetime (seconds) any replica has been configured to issue:
    /// a token issued before `tokens.max_ttl` was lowered is still verified, revoked and
    /// covered by revocation rules for that long. Only ever raised.
    #[serde(default)]
    pub max_issued_ttl: i64,
}

/// A key revoked in an emergency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedKey {
    /// Its `kid`.
    pub kid: String,
    /// When.
    pub at: i64,
}

/// A replica's heartbeat in a shared store: which key-encryption keys it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its name (host and process, as in the ring's history).
    pub name: String,
    /// The fingerprints of the key-encryption keys it holds (see `Kek::id`), the one it
    /// seals with first. Never the keys.
    pub keks: Vec<String>,
    /// Seconds since its last heartbeat, by the store's clock.
    pub age_secs: i64,
}

/// A key store.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// The current ring (version 0 and no keys when never written).
    fn load(&self) -> Result<StoredRing, KeyError>;
    /// Writes `ring` as version `expected + 1` if the stored version is still
    /// `expected`. `Ok(false)` when another writer got there first.
    fn compare_and_swap(&self, expected: u64, ring: &StoredRing) -> Result<bool, KeyError>;

    /// Records that `replica` is alive and holds the key-encryption keys whose
    /// fingerprints are `keks`. Only stores shared by replicas keep heartbeats; the
    /// default keeps nothing.
    fn heartbeat(&self, replica: &str, keks: &[String]) -> Result<(), KeyError> {
        let _ = (replica, keks);
        Ok(())
    }

    /// The replicas whose last heartbeat is at most `max_age` old. `None` for a store
    /// that keeps no heartbeats (a single node's directory): there is nothing to check.
    fn live_replicas(&self, max_age: Duration) -> Result<Option<Vec<Replica>>, KeyError> {
        let _ = max_age;
        Ok(None)
    }
}
