//! The running state shared by every request: built once at start, read-only after.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ferry_core::Clock;
use ferry_core::config::{Config, Provider};
use ferry_keys::KeyManager;
use ferry_verify::{KeySource, Rules};

use crate::accounts::Accounts;
use crate::audit::AuditSink;
use crate::limits::Limiters;
use crate::metrics::Metrics;
use crate::reloads::ReloadStats;
use crate::replay::persist::Local;
use crate::replay::{Capacity, Epoch, InProcessReplay, Losses, RedisReplay, ReplayCache};

/// A provider ready to verify: its configuration, verification rules and parsed keys.
#[derive(Debug)]
pub struct TrustedProvider {
    /// The validated configuration.
    pub config: Provider,
    /// Verification rules derived from it.
    pub rules: Rules,
    /// Its keys: static (parsed once, file reloaded on change) or a remote cache.
    pub keys: KeySource,
    /// An x509 provider's trust anchors and intermediates (read at load and reload).
    pub x509: Option<std::sync::Arc<ferry_verify::x509::TrustStore>>,
}

/// Providers by exact issuer.
#[derive(Debug, Default)]
pub struct Providers {
    by_issuer: HashMap<String, TrustedProvider>,
}

impl Providers {
    /// Indexes providers by issuer.
    pub fn new(list: Vec<TrustedProvider>) -> Self {
        Self {
            by_issuer: list
                .into_iter()
                .map(|p| (p.config.issuer.clone(), p))
                .collect(),
        }
    }
    /// The provider for exactly this issuer.
    pub fn get(&self, iss: &str) -> Option<&TrustedProvider> {
        self.by_issuer.get(iss)
    }
    /// Every provider.
    pub fn iter(&self) -> impl Iterator<Item = &TrustedProvider> {
        self.by_issuer.values()
    }
    /// Number of providers.
    pub fn len(&self) -> usize {
        self.by_issuer.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }
}

/// What a configuration file becomes: swapped whole on reload, so a request that
/// started under one configuration finishes under it.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Trusted issuers.
    pub providers: Providers,
    /// Service accounts and registered clients.
    pub accounts: Accounts,
    /// Pre-rendered discovery metadata.
    pub metadata_body: String,
}

/// Everything a request needs.
#[derive(Debug, Clone)]
pub struct AppState {
    loaded: Arc<RwLock<Arc<Loaded>>>,
    /// Ferry's signing key ring.
    pub keys: Arc<KeyManager>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where audit events go.
    pub audit: Arc<AuditSink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Rate limits and load shedding (fixed at start: limit changes need a restart).
    pub limits: Arc<Limiters>,
    /// Configuration reload counts.
    pub reloads: Arc<ReloadStats>,
    /// Single-use assertion ids (service accounts, client assertions), each registered
    /// principal holding at most its share.
    pub replay: Arc<dyn ReplayCache>,
    /// Single-use DPoP proof ids, apart from the assertions: a proof's key is anyone's
    /// to make, so proofs cannot take the assertions' room.
    pub dpop_replay: Arc<dyn ReplayCache>,
    /// When the replay state was last lost (both caches), and how often.
    pub replay_losses: Arc<Losses>,
    /// The in-process caches, saved at a graceful stop (`None` with Redis).
    pub replay_local: Option<Arc<Local>>,
    /// DPoP server nonces.
    pub nonces: Arc<crate::nonces::Nonces>,
    /// Ferry's own public keys, for downscoping.
    pub own_keys: Arc<crate::own_keys::OwnKeys>,
    /// Revoked tokens and reference-token handles.
    pub revocations: Arc<crate::revocation::Revocations>,
    /// Draining after SIGTERM and the data directory's health: readiness.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// Per-request warnings, logged once per interval with a count.
    pub warnings: Arc<crate::repeated::RepeatedWarnings>,
}

/// The assertion and proof caches: both in Redis, sharing one connection and one epoch,
/// or both in process.
#[allow(clippy::type_complexity)]
fn replay_caches(
    config: &Config,
    ledger: &Arc<crate::revocation::Revocations>,
) -> (
    Arc<dyn ReplayCache>,
    Arc<dyn ReplayCache>,
    Arc<Losses>,
    Option<Arc<Local>>,
) {
    let losses = Arc::new(Losses::default());
    let share = config.replay_share();
    match &config.replay_redis {
        Some(r) => {
            let redis = Arc::new(crate::redis::Redis::new(r.clone()));
            let epoch = Arc::new(Epoch::with_ledger(losses.clone(), Some(ledger.clone())));
            (
                Arc::new(RedisReplay::new(redis.clone(), epoch.clone(), Some(share))),
                Arc::new(RedisReplay::new(redis, epoch, None)),
                losses,
                None,
            )
        }
        None => {
            let cache = |per_principal| {
                Arc::new(InProcessReplay::new(
                    Capacity {
                        total: config.max_replay_entries,
                        per_principal,
                    },
                    losses.clone(),
                ))
            };
            let local = Arc::new(Local {
                assertions: cache(share),
                proofs: cache(config.max_replay_entries),
                losses: losses.clone(),
            });
            (
                local.assertions.clone(),
                local.proofs.clone(),
                losses,
                Some(local),
            )
        }
    }
}

impl AppState {
    /// A state serving `loaded`.
    pub fn new(
        loaded: Loaded,
        keys: Arc<KeyManager>,
        clock: Arc<dyn Clock>,
        audit: Arc<AuditSink>,
    ) -> Self {
        let limits = Arc::new(Limiters::new(&loaded.config.limits));
        let config = &loaded.config;
        let revocations = Arc::new(crate::revocation::Revocations::for_config(&loaded.config));
        let (replay, dpop_replay, replay_losses, replay_local) =
            replay_caches(config, &revocations);
        Self {
            loaded: Arc::new(RwLock::new(Arc::new(loaded))),
            keys,
            clock,
            audit,
            metrics: Arc::new(Metrics::new()),
            limits,
            reloads: Arc::new(ReloadStats::default()),
            replay,
            dpop_replay,
            replay_losses,
            replay_local,
            nonces: Arc::default(),
            own_keys: Arc::default(),
            revocations,
            lifecycle: Arc::default(),
            warnings: Arc::default(),
        }
    }

    /// The configuration in force now.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a new configuration in force; requests in flight keep the old one.
    pub fn swap(&self, next: Loaded) {
        *self
            .loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }
}
