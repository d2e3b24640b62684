//! The durable revocation store, behind one small interface with two backends: the data
//! directory of a single node ([`super::local`]) and PostgreSQL shared by replicas
//! ([`super::postgres`]). A store only keeps and returns state; matching tokens against
//! it, sealing handles and the in-memory copy are the front's ([`super::Revocations`]).
//! Both pass one conformance suite (`conformance.rs`).

use super::model::{Listing, Rule};

/// Why a handle was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// As many live handles as allowed.
    #[error("reference token store full")]
    Full,
    /// The JWT is larger than [`super::MAX_JWT_BYTES`].
    #[error("token too large for a reference token")]
    TooLarge,
    /// The store cannot be reached (or cannot keep handles).
    #[error("{0}")]
    Unavailable(String),
}

/// A reference-token handle as stored: the JWT sealed under the key-encryption key
/// (bound to the handle's hash), and the JWT's `exp`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredHandle {
    /// `Keks::seal_bound` of the JWT.
    pub sealed: String,
    /// The JWT's `exp`.
    pub exp: i64,
}

/// What changed since a cursor (everything, from the default cursor).
#[derive(Debug, Default)]
pub struct Changes {
    /// Revoked `jti`s and rules written since.
    pub listing: Listing,
    /// Handles written since, by hash.
    pub handles: Vec<(String, StoredHandle)>,
    /// Where the next read starts.
    pub next: Cursor,
}

/// Where a store's change feed was last read; opaque to the front.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor(pub i64);

/// A durable revocation store. Every write is durable when it returns `Ok`; state past
/// its expiry may be dropped at any time.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// What was written since `since` and is still live at `now` (rows may repeat).
    fn changes(
        &self,
        since: Cursor,
        now: i64,
    ) -> impl Future<Output = Result<Changes, String>> + Send;
    /// Revokes one token until its `exp`.
    fn revoke_jti(
        &self,
        jti: &str,
        exp: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Adds a rule, kept until `rule.until`.
    fn add_rule(&self, rule: &Rule, now: i64) -> impl Future<Output = Result<(), String>> + Send;
    /// Stores a handle unless `cap` live handles are held (expired ones are dropped
    /// first), atomically with every other writer of the store.
    fn put_handle(
        &self,
        hash: &str,
        handle: &StoredHandle,
        now: i64,
        cap: usize,
    ) -> impl Future<Output = Result<(), HandleError>> + Send;
    /// Records that this deployment's shared replay state (the Redis epoch) has begun,
    /// and returns whether that had been recorded before: an epoch marker missing from
    /// a deployment that never had one is a first start, not a lost state.
    fn mark_replay_epoch(&self) -> impl Future<Output = Result<bool, String>> + Send;
}
