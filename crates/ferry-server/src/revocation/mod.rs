//! Revocation state of the tokens Ferry issued, and the handles of reference tokens.
//!
//! - A revoked `jti` is kept until the token's `exp` (after that the token is dead
//!   anyway).
//! - A rule revokes every token issued to a subject, through a provider or to a client
//!   up to a moment (`iat <= before`); it is kept until every token it can match has
//!   expired (`before` plus the longest lifetime ever issued, which the signing store
//!   records durably beside the key ring: `StoredRing::max_issued_ttl`).
//! - A reference token's handle is stored as its SHA-256, mapped to the JWT it stands
//!   for — sealed under the key-encryption key — until that JWT's `exp` (`handles`).
//!
//! Where: a durable store ([`store::Store`]) — the data directory of a single node
//! (`local`; also when Redis is configured for replay), or PostgreSQL shared by replicas
//! (`postgres`; `revocation.postgres`, by default the signing store's database). Redis
//! holds none of it, not even a cache: a Redis restarted empty loses nothing here.
//!
//! Every replica keeps an in-memory copy of the live state, synced from the store by a
//! background poll (`revocation.postgres.poll_interval`, 2 s by default), after each of
//! its own writes, and — so that a revocation at one replica holds at every other at
//! once — before each read, single-flight (concurrent reads share one incremental sync
//! that started after they arrived). When the store is down, writes fail (`/revoke`
//! answers 503) and reads are served from the copy without waiting, until the poll
//! reaches the store again; the copy's age is `ferry_revocation_sync_age_seconds`.

mod checks;
mod handles;
mod local;
mod model;
mod postgres;
mod store;

#[cfg(test)]
mod conformance;

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_verify::time::instant_now;

pub use checks::{per_node_revocations, startup_warnings};
pub use handles::{MAX_JWT_BYTES, Sealer};
pub use model::{Facts, Listing, Rule, RuleKind};
pub use postgres::{MIGRATIONS, SCHEMA_VERSION};
use store::{Changes, Cursor, Store, StoredHandle};
pub use store::{HandleError, StoreError};

/// Which durable store.
#[derive(Debug)]
enum Backend {
    Local(local::LocalStore),
    Postgres(Box<postgres::PgStore>),
    /// The store could not be opened: every call fails (closed), and `serve` refuses to
    /// start.
    Broken(StoreError),
}

impl Backend {
    async fn changes(&self, since: Cursor, now: i64) -> Result<Changes, StoreError> {
        match self {
            Self::Local(s) => s.changes(since, now).await,
            Self::Postgres(s) => s.changes(since, now).await,
            Self::Broken(e) => Err(e.clone()),
        }
    }
}

/// A handle's JWT in the copy: sealed as stored, or (single node, no key-encryption
/// key) in memory only.
#[derive(Debug, Clone)]
enum Body {
    Sealed(String),
    Clear(String),
}

/// The in-memory copy every read is answered from.
#[derive(Debug, Default)]
struct Copy {
    /// Whether the store was read once (before that, reads fail closed).
    loaded: bool,
    listing: Listing,
    handles: HashMap<String, (Body, i64)>,
    cursor: Cursor,
    synced: Option<Instant>,
}

impl Copy {
    fn apply(&mut self, changes: Changes) {
        for (jti, exp) in changes.listing.jtis {
            self.listing.add_jti(&jti, exp);
        }
        for rule in changes.listing.rules {
            self.listing.add_rule(rule);
        }
        for (hash, h) in changes.handles {
            self.handles.insert(hash, (Body::Sealed(h.sealed), h.exp));
        }
        self.cursor = changes.next;
        self.synced = Some(instant_now());
        self.loaded = true;
    }
}

/// The revocation state: a durable store and this replica's copy of it.
#[derive(Debug)]
pub struct Revocations {
    backend: Backend,
    sealer: Sealer,
    copy: RwLock<Copy>,
    /// Single flight: held while a sync runs; holds when the last one started.
    sync: tokio::sync::Mutex<Option<Instant>>,
    /// Whether the last call reached the store (reads skip the store while it is not).
    up: AtomicBool,
    poll: Duration,
}

/// How often the copy of a data-directory store is pruned (it needs no sync).
const LOCAL_POLL: Duration = Duration::from_secs(2);

impl Revocations {
    fn with(backend: Backend, sealer: Sealer, poll: Duration) -> Self {
        Self {
            backend,
            sealer,
            copy: RwLock::new(Copy::default()),
            sync: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(true),
            poll,
        }
    }

    /// Revocations kept in `data_dir`, loaded now; handles sealed by `sealer` (or in
    /// memory only when it has no key).
    pub fn local(data_dir: &Path, sealer: Sealer) -> Result<Self, StoreError> {
        let store = local::LocalStore::open(data_dir)?;
        let everything = store.everything(i64::MIN)?;
        let r = Self::with(Backend::Local(store), sealer, LOCAL_POLL);
        r.write().apply(everything);
        Ok(r)
    }

    /// Revocations shared through PostgreSQL; nothing is read until [`Self::start`].
    pub fn postgres(
        url: &str,
        timeout: Duration,
        ca_file: Option<&Path>,
        poll: Duration,
        sealer: Sealer,
    ) -> Result<Self, StoreError> {
        let store = postgres::PgStore::new(url, timeout, ca_file)?;
        Ok(Self::with(Backend::Postgres(Box::new(store)), sealer, poll))
    }

    /// The state for a configuration (see `ferry_core::config::RevocationStore`). A
    /// store that cannot be opened leaves a state whose every call fails (see
    /// [`Revocations::broken`]).
    pub fn for_config(config: &ferry_core::config::Config) -> Self {
        use ferry_core::config::RevocationStore;
        let sealer = match crate::secrets::read_kek_list(&config.signing) {
            Ok(keks) => Sealer::new(ferry_keys::Keks::new(keks)),
            Err(e) => return Self::broken_with(StoreError::Config(e.to_string())),
        };
        let opened = match &config.revocation {
            RevocationStore::DataDir => Self::local(&config.data_dir, sealer),
            RevocationStore::Postgres { store, .. } => crate::secrets::read_secret(&store.url)
                .map_err(|e| StoreError::Config(e.to_string()))
                .and_then(|u| u.ok_or_else(|| StoreError::Config("revocation.postgres.url: the connection string's environment variable is not set".to_owned())))
                .and_then(|url| {
                    Self::postgres(
                        &url,
                        Duration::from_millis(store.timeout_ms),
                        store.ca_file.as_deref(),
                        Duration::from_millis(store.poll_interval_ms),
                        sealer,
                    )
                }),
        };
        opened.unwrap_or_else(Self::broken_with)
    }

    fn broken_with(e: StoreError) -> Self {
        Self::with(Backend::Broken(e), Sealer::default(), LOCAL_POLL)
    }

    /// Why the state cannot be used, if it cannot.
    pub fn broken(&self) -> Option<&StoreError> {
        match &self.backend {
            Backend::Broken(e) => Some(e),
            _ => None,
        }
    }

    /// Whether reference handles are sealed and stored durably (a key-encryption key
    /// is configured).
    pub fn seals_handles(&self) -> bool {
        self.sealer.can_seal()
    }

    /// Whether the store is shared by replicas (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Brings a PostgreSQL schema up to date and reads the whole state once; until this
    /// succeeded, every read fails (closed).
    pub async fn start(&self, now: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Broken(e) => Err(e.clone()),
            Backend::Local(_) => Ok(()),
            Backend::Postgres(pg) => {
                pg.migrate().await?;
                self.sync(now, false).await
            }
        }
    }

    /// How often [`Self::poll`] should run.
    pub fn poll_interval(&self) -> Duration {
        self.poll
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Copy> {
        self.copy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Copy> {
        self.copy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records whether the store answered, logging each change.
    fn mark(&self, up: bool, error: Option<&StoreError>) {
        let was = self.up.swap(up, Ordering::SeqCst);
        match (was, up) {
            (true, false) => tracing::warn!(
                error = %error.map(ToString::to_string).unwrap_or_default(),
                age_seconds = self.sync_age().unwrap_or(0.0),
                "revocation store unavailable: revocations answer 503; reads are served from the last synced copy"
            ),
            (false, true) => tracing::info!("revocation store reachable again"),
            _ => {}
        }
    }

    /// Reads what changed since the copy's cursor, single-flight: a caller that finds
    /// a sync started after it asked (and finished meanwhile) uses that one. A `reader`
    /// that finds the store marked down meanwhile does not try again: readers queued
    /// behind a sync that timed out must not each wait for a timeout of their own.
    async fn sync(&self, now: i64, reader: bool) -> Result<(), StoreError> {
        let asked = instant_now();
        let mut last = if reader {
            // A reader never waits long behind a slow sync: it answers from the copy.
            let wait = self.poll.min(Duration::from_secs(1));
            match tokio::time::timeout(wait, self.sync.lock()).await {
                Ok(guard) => guard,
                Err(_) => return Ok(()),
            }
        } else {
            self.sync.lock().await
        };
        if last.is_some_and(|s| s >= asked) || (reader && !self.up.load(Ordering::SeqCst)) {
            return Ok(());
        }
        *last = Some(instant_now());
        let cursor = self.read().cursor;
        match self.backend.changes(cursor, now).await {
            Ok(changes) => {
                self.write().apply(changes);
                self.mark(true, None);
                Ok(())
            }
            Err(e) => {
                self.mark(false, Some(&e));
                Err(e)
            }
        }
    }

    /// Before a read: syncs the copy when the store is up (a failure is logged and the
    /// copy answers); fails only before the first successful sync.
    async fn fresh(&self, now: i64) -> Result<(), StoreError> {
        if let Backend::Broken(e) = &self.backend {
            return Err(e.clone());
        }
        if matches!(self.backend, Backend::Postgres(_)) && self.up.load(Ordering::SeqCst) {
            let _ = self.sync(now, true).await;
        }
        if self.read().loaded {
            Ok(())
        } else {
            Err(StoreError::NotLoaded)
        }
    }

    /// The background poll: syncs the copy and drops what expired from it.
    pub async fn poll(&self, now: i64) {
        let _ = self.sync(now, false).await;
        let mut copy = self.write();
        copy.listing.prune(now);
        copy.handles.retain(|_, (_, exp)| *exp >= now);
    }

    /// Seconds since the copy was last synced with the store (`None` before the first
    /// sync).
    pub fn sync_age(&self) -> Option<f64> {
        self.read().synced.map(|s| s.elapsed().as_secs_f64())
    }

    /// Whether the last call reached the store.
    pub fn store_up(&self) -> bool {
        self.up.load(Ordering::SeqCst) && self.broken().is_none()
    }

    fn written(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        match &result {
            Ok(()) => self.mark(true, None),
            Err(e) => self.mark(false, Some(e)),
        }
        result
    }

    /// Records that this deployment's shared replay state began, returning whether it
    /// had been recorded before (see [`crate::replay::Epoch`]).
    pub async fn mark_replay_epoch(&self) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local(s) => s.mark_replay_epoch().await,
            Backend::Postgres(s) => s.mark_replay_epoch().await,
            Backend::Broken(e) => Err(e.clone()),
        }
    }

    /// Revokes one token until its `exp` (durably, then in the copy).
    pub async fn revoke_jti(&self, jti: &str, exp: i64, now: i64) -> Result<(), StoreError> {
        let r = match &self.backend {
            Backend::Local(s) => s.revoke_jti(jti, exp, now).await,
            Backend::Postgres(s) => s.revoke_jti(jti, exp, now).await,
            Backend::Broken(e) => Err(e.clone()),
        };
        self.written(r)?;
        self.write().listing.add_jti(jti, exp);
        Ok(())
    }

    /// Adds a rule (durably, then in the copy).
    pub async fn add_rule(&self, rule: &Rule, now: i64) -> Result<(), StoreError> {
        let r = match &self.backend {
            Backend::Local(s) => s.add_rule(rule, now).await,
            Backend::Postgres(s) => s.add_rule(rule, now).await,
            Backend::Broken(e) => Err(e.clone()),
        };
        self.written(r)?;
        self.write().listing.add_rule(rule.clone());
        Ok(())
    }

    /// Every live revocation.
    pub async fn listing(&self, now: i64) -> Result<Listing, StoreError> {
        self.fresh(now).await?;
        let mut l = self.read().listing.clone();
        l.prune(now);
        Ok(l)
    }

    /// Whether a token with these facts is revoked.
    pub async fn is_revoked(&self, facts: &Facts, now: i64) -> Result<bool, StoreError> {
        {
            let copy = self.read();
            // Revocations are never undone: a hit in the copy needs no sync.
            if copy.loaded && copy.listing.revokes(facts, now) {
                return Ok(true);
            }
        }
        self.fresh(now).await?;
        Ok(self.read().listing.revokes(facts, now))
    }

    /// Stores a reference token's handle (as its hash) until `exp`, unless `cap` live
    /// handles are held or the JWT is too large.
    pub async fn put_handle(
        &self,
        hash: &str,
        jwt: &str,
        exp: i64,
        now: i64,
        cap: usize,
    ) -> Result<(), HandleError> {
        if jwt.len() > MAX_JWT_BYTES {
            return Err(HandleError::TooLarge);
        }
        if !self.sealer.can_seal() && matches!(self.backend, Backend::Local(_)) {
            // No key-encryption key: this node's memory only, never the disk.
            let mut copy = self.write();
            if copy.handles.len() >= cap {
                copy.handles.retain(|_, (_, e)| *e >= now);
                if copy.handles.len() >= cap {
                    return Err(HandleError::Full);
                }
            }
            copy.handles
                .insert(hash.to_owned(), (Body::Clear(jwt.to_owned()), exp));
            return Ok(());
        }
        let stored = self.sealer.seal(hash, jwt, exp)?;
        let r = match &self.backend {
            Backend::Local(s) => s.put_handle(hash, &stored, now, cap).await,
            Backend::Postgres(s) => s.put_handle(hash, &stored, now, cap).await,
            Backend::Broken(e) => Err(HandleError::Unavailable(e.clone())),
        };
        if let Err(HandleError::Unavailable(e)) = &r {
            self.mark(false, Some(e));
        }
        r?;
        self.write()
            .handles
            .insert(hash.to_owned(), (Body::Sealed(stored.sealed), exp));
        Ok(())
    }

    fn lookup(&self, hash: &str, now: i64) -> Option<Option<String>> {
        let copy = self.read();
        let (body, exp) = copy.handles.get(hash).filter(|(_, exp)| *exp >= now)?;
        Some(match body {
            Body::Clear(jwt) => Some(jwt.clone()),
            Body::Sealed(sealed) => {
                let h = StoredHandle {
                    sealed: sealed.clone(),
                    exp: *exp,
                };
                let jwt = self.sealer.open(hash, &h);
                if jwt.is_none() {
                    tracing::warn!(
                        "a reference handle could not be opened with the configured key-encryption keys"
                    );
                }
                jwt
            }
        })
    }

    /// The JWT a live handle stands for.
    pub async fn get_handle(&self, hash: &str, now: i64) -> Result<Option<String>, StoreError> {
        if let Some(found) = self.lookup(hash, now) {
            return Ok(found);
        }
        self.fresh(now).await?;
        Ok(self.lookup(hash, now).flatten())
    }
}
