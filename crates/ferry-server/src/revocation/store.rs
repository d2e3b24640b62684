//! The durable revocation store, behind one small interface with two backends: the data
//! directory of a single node ([`super::local`]) and PostgreSQL shared by replicas
//! ([`super::postgres`]). A store only keeps and returns state; matching tokens against
//! it, sealing handles and the in-memory copy are the front's ([`super::Revocations`]).
//! Both pass one conformance suite (`conformance.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use super::model::{Listing, Rule};

/// Why the revocation store could not answer or record. Every one fails closed: a
/// write is refused and a read before the first sync is refused (`/revoke`,
/// `/introspect` and `/revocations` answer 503; see `crate::errors::revocation_unavailable`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store could not be set up (connection string, CA file, key-encryption
    /// keys): every call fails until the configuration is fixed.
    #[error("{0}")]
    Config(String),
    /// A file or directory of the data directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The data directory's revocation file does not parse (never read as empty: that
    /// would resurrect revoked tokens).
    #[error("{} is not valid: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        why: String,
    },
    /// PostgreSQL refused the connection or the statement (the server's message, never
    /// the connection string).
    #[error("{message} ({target})")]
    Postgres {
        /// The driver's or the server's message.
        message: String,
        /// Host, port and database.
        target: String,
    },
    /// PostgreSQL did not answer in time; the connection is dropped.
    #[error("PostgreSQL at {target} did not answer within {ms} ms")]
    Timeout {
        /// Host, port and database.
        target: String,
        /// The bound that ran out.
        ms: u128,
    },
    /// The PostgreSQL schema is newer than this binary can read, or migrating failed.
    #[error("{0}")]
    Schema(String),
    /// State that could not be encoded for storage.
    #[error("{0}")]
    Encode(String),
    /// No key-encryption key is configured, so handles cannot be stored durably.
    #[error("no key-encryption key to seal reference tokens with")]
    NoSealingKey,
    /// Sealing a handle under the key-encryption key failed.
    #[error("{0}")]
    Seal(String),
    /// A handle hash that is not 64 hexadecimal digits.
    #[error("not a handle hash")]
    NotAHash,
    /// Reads fail closed until the store was read once.
    #[error("the revocation store has not been read yet")]
    NotLoaded,
}

impl StoreError {
    /// An I/O failure at `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |e| Self::Io {
            path,
            source: Arc::new(e),
        }
    }

    /// Whether the store could not be reached (PostgreSQL down or silent, the data
    /// directory unwritable), as opposed to a store that is misconfigured or whose
    /// state is unusable.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Self::Io { .. } | Self::Postgres { .. } | Self::Timeout { .. } | Self::NotLoaded
        )
    }
}

/// Why a handle was not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandleError {
    /// As many live handles as allowed.
    #[error("reference token store full")]
    Full,
    /// The JWT is larger than [`super::MAX_JWT_BYTES`].
    #[error("token too large for a reference token")]
    TooLarge,
    /// The store cannot be reached (or cannot keep handles).
    #[error("{0}")]
    Unavailable(#[from] StoreError),
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
    ) -> impl Future<Output = Result<Changes, StoreError>> + Send;
    /// Revokes one token until its `exp`.
    fn revoke_jti(
        &self,
        jti: &str,
        exp: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Adds a rule, kept until `rule.until`.
    fn add_rule(
        &self,
        rule: &Rule,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
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
    fn mark_replay_epoch(&self) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
