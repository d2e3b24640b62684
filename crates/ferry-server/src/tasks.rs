//! Background work: the key-ring poll, the revocation copy's sync, warming remote key
//! caches, reloading JWKS files when they change, reloading the configuration on SIGHUP
//! or when its file changes, probing the data directory for writes, and logging the
//! counts of repeated warnings.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ferry_verify::KeySource;
use ferry_verify::time::SystemMono;

use crate::load::{ConfigSource, load_providers_reusing, loaded};
use crate::reloads::ReloadStats;
use crate::state::{AppState, Providers};

/// How often JWKS files and the configuration file are checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// How often the key ring is checked for due transitions and for changes by other
/// processes (an emergency revocation reaches a running server within this).
pub fn ring_poll(state: &AppState) -> Duration {
    let s = &state.loaded().config.signing;
    match &s.postgres {
        // Replicas learn of each other's transitions by reading the shared ring.
        Some(pg) => Duration::from_millis(pg.poll_interval_ms),
        None => Duration::from_secs(((s.jwks_max_age + s.leeway) / 10).clamp(1, 10)),
    }
}

fn warm(state: &AppState) {
    for p in state.loaded().providers.iter() {
        if let KeySource::Remote(remote) = &p.keys {
            if remote.stats().fetches > 0 {
                continue;
            }
            // Warm the cache so the first request does not wait for the issuer. The
            // fetch is single-flight: requests arriving meanwhile join it.
            let remote = remote.clone();
            let id = p.config.id.clone();
            tokio::spawn(async move {
                if let Err(e) = remote.keys().await {
                    tracing::warn!(provider = %id, error = %e, "initial key fetch failed; will retry on demand");
                }
            });
        }
    }
}

/// Probes the data directory every [`crate::lifecycle::DATA_DIR_PROBE`] when Ferry keeps
/// state there: the local key ring, or anything already in an existing directory (a
/// replica whose ring is in PostgreSQL and that never created the directory has nothing
/// to persist there, and is not failed for it).
fn probe_data_dir(state: &AppState) {
    let config = &state.loaded().config;
    let dir = config.data_dir.clone();
    if config.signing.postgres.is_some() && !dir.is_dir() {
        return;
    }
    state.lifecycle.watch_data_dir(dir.clone());
    let lifecycle = state.lifecycle.clone();
    tokio::spawn(async move {
        let every = crate::lifecycle::DATA_DIR_PROBE;
        let mut tick = tokio::time::interval(every);
        // A probe stuck in the kernel (a hung network disk) fails too; it is waited
        // for again at the next tick rather than joined by another stuck thread.
        let mut stuck = None;
        loop {
            tick.tick().await;
            let mut probe = stuck.take().unwrap_or_else(|| {
                let dir = dir.clone();
                // Blocking file I/O (an fsync): off the workers.
                tokio::task::spawn_blocking(move || crate::lifecycle::probe(&dir))
            });
            match tokio::time::timeout(every, &mut probe).await {
                Ok(Ok(result)) => lifecycle.record_probe(result),
                Ok(Err(e)) => tracing::error!(error = %e, "data directory probe task failed"),
                Err(_) => {
                    lifecycle.record_probe(Err(crate::lifecycle::ProbeError::Stuck {
                        dir: dir.clone(),
                        seconds: every.as_secs(),
                    }));
                    stuck = Some(probe);
                }
            }
        }
    });
}

/// Why a reload was refused (the previous configuration stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not read, parse or validate, or a provider's keys do not load.
    #[error(transparent)]
    Config(#[from] ferry_core::config::ConfigErrors),
    /// The admin listener's settings changed: they need a restart.
    #[error(
        "admin settings changed (admin.listen, admin.tls, admin.bearer_token_hashes_file or \
         --admin-listen): they take effect at the next restart; nothing of this file was applied"
    )]
    AdminChanged,
    /// The key-encryption keys could not be read, or `tokens.max_ttl` recorded.
    #[error(transparent)]
    Keys(#[from] crate::load::KeySetupError),
}

/// Reloads the configuration from `source` (the file, with the command line's overrides
/// applied again): fully validated, then swapped atomically; on any error the old
/// configuration stays and the error is logged and counted. Remote key caches of
/// unchanged providers are kept warm.
pub fn reload(
    state: &AppState,
    source: &ConfigSource,
    stats: &ReloadStats,
) -> Result<(), ReloadError> {
    let path = &source.path;
    let result = (|| {
        let config = source.read()?;
        let current = state.loaded();
        // The admin listener's authentication was decided when its socket was bound; a
        // file that changes it (turns the listener off, moves it to loopback, drops its
        // tokens) must not half-apply: the whole reload is refused until a restart.
        if config.admin != current.config.admin {
            return Err(ReloadError::AdminChanged);
        }
        if config.revocation != current.config.revocation {
            tracing::warn!("revocation settings changed: they take effect at the next restart");
        }
        let mut signing = config.signing.clone();
        signing.key_encryption_keys = current.config.signing.key_encryption_keys.clone();
        if signing != current.config.signing {
            tracing::warn!("signing settings changed: they take effect at the next restart");
        }
        if config.listen != current.config.listen || config.metrics != current.config.metrics {
            tracing::warn!("listen or metrics.listen changed: it takes effect at the next restart");
        }
        let empty = Providers::default();
        let previous = if config.outbound == current.config.outbound {
            &current.providers
        } else {
            &empty
        };
        let (providers, warnings) =
            load_providers_reusing(&config, Arc::new(SystemMono::default()), previous)?;
        for w in config.warnings.iter().chain(&warnings) {
            tracing::warn!("{w}");
        }
        let accounts = crate::accounts::load_accounts(&config, Arc::new(SystemMono::default()))?;
        // A longer `tokens.max_ttl` is recorded before any token is issued under it.
        crate::load::record_max_ttl(&state.keys, &config)?;
        // Last before the swap: a refused reload changes nothing, KEKs included.
        reload_keks(state, &config)?;
        state.swap(loaded(config, providers, accounts));
        Ok::<(), ReloadError>(())
    })();
    match &result {
        Ok(()) => {
            stats.ok.fetch_add(1, Ordering::Relaxed);
            stats.last_failed.store(false, Ordering::Relaxed);
            tracing::info!(config = %path.display(), "configuration reloaded");
            warm(state);
        }
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            stats.last_failed.store(true, Ordering::Relaxed);
            tracing::error!(config = %path.display(), error = %e, "configuration reload refused; the previous configuration stays in force");
        }
    }
    result
}

/// Reads the key-encryption keys again (a KEK added for a rollout): when they changed,
/// the key manager takes them, so a replica that could not unseal the active key signs
/// again without a restart.
fn reload_keks(
    state: &AppState,
    config: &ferry_core::config::Config,
) -> Result<(), crate::load::KeySetupError> {
    if config.signing.hsm.is_some() {
        return Ok(());
    }
    let keks = crate::load::read_keks(config)?;
    if keks.ids() != state.keys.kek_ids() {
        tracing::info!(kek_fingerprints = %keks.ids().join(", "), "key-encryption keys reloaded");
        state.keys.replace_keks(keks);
        crate::load::warn_kek_order(&state.keys, config);
    }
    Ok(())
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Starts the background tasks for `state`. They end with the runtime. With a
/// `config_source`, the configuration is reloaded on SIGHUP and when the file changes.
pub fn spawn_background(state: &AppState, config_source: Option<ConfigSource>) {
    let stats = state.reloads.clone();
    spawn_key_ring(state);
    spawn_revocation_sync(state);
    warm(state);
    probe_data_dir(state);
    spawn_flush(state);
    spawn_limits_shrink(state);
    spawn_file_watch(state, config_source.clone(), stats.clone());
    // SIGHUP.
    #[cfg(unix)]
    if let Some(source) = config_source {
        spawn_sighup(state, source, stats);
    }
}

/// Polls the key ring (rotations, changes by other replicas) and records this replica's
/// heartbeat.
fn spawn_key_ring(state: &AppState) {
    let (keys, clock, every) = (state.keys.clone(), state.clock.clone(), ring_poll(state));
    let health = state.reloads.clone();
    let st = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut version = keys.snapshot().version;
        loop {
            tick.tick().await;
            let (keys, now) = (keys.clone(), clock.now());
            // The store does blocking file I/O (and takes a lock): off the workers.
            // Then this replica's heartbeat: the KEKs it holds, for `ferry keys rewrap`.
            let poll = move || keys.tick(now).and_then(|_| keys.heartbeat());
            match tokio::task::spawn_blocking(poll).await {
                Ok(Ok(_)) => {
                    health.set_key_store_error(None);
                    // A ring another replica changed (a rotation, a forced rewrap)
                    // may now hold keys sealed under a KEK this one lacks: say so.
                    let now_version = st.keys.snapshot().version;
                    if now_version != version {
                        version = now_version;
                        let (keys, config) = (st.keys.clone(), st.loaded().config.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            crate::load::warn_kek_order(&keys, &config)
                        })
                        .await;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "key ring unavailable: signing continues with the keys in memory; rotation waits");
                    health.set_key_store_error(Some(e.to_string()));
                }
                Err(e) => tracing::error!(error = %e, "key ring task failed"),
            }
        }
    });
}

/// Syncs the revocation copy from its store and drops expired entries.
fn spawn_revocation_sync(state: &AppState) {
    let (revocations, clock) = (state.revocations.clone(), state.clock.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(revocations.poll_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            revocations.poll(clock.now()).await;
        }
    });
}

/// Logs the counts of repeated per-request warnings once their interval ended.
fn spawn_flush(state: &AppState) {
    let (warnings, audit) = (state.warnings.clone(), state.audit.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::repeated::INTERVAL);
        loop {
            tick.tick().await;
            crate::repeated::flush(&warnings);
            audit.flush_failures();
        }
    });
}

/// Drops idle rate-limit state.
fn spawn_limits_shrink(state: &AppState) {
    let limits = state.limits.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.shrink();
        }
    });
}

/// Reloads JWKS files and the configuration file when they change.
fn spawn_file_watch(state: &AppState, source: Option<ConfigSource>, stats: Arc<ReloadStats>) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut seen = source.as_ref().and_then(|s| stamp(&s.path));
        let mut tick = tokio::time::interval(FILE_POLL);
        loop {
            tick.tick().await;
            let loaded = state.loaded();
            let accounts = &loaded.accounts;
            let sources = loaded
                .providers
                .iter()
                .map(|p| (p.config.id.as_str(), &p.keys))
                .chain(
                    accounts
                        .service_accounts
                        .iter()
                        .map(|(id, sa)| (id.as_str(), &sa.keys)),
                )
                .chain(
                    accounts
                        .clients
                        .iter()
                        .filter_map(|(id, c)| c.keys.as_ref().map(|(k, _)| (id.as_str(), k))),
                );
            // Providers naming one file share its key set: check it once.
            let mut checked = std::collections::HashSet::new();
            for (id, keys) in sources {
                if let KeySource::Static(keys) = keys {
                    if !keys.watches_file() || !checked.insert(Arc::as_ptr(keys)) {
                        continue;
                    }
                    match keys.reload_if_changed() {
                        Ok(true) => {
                            tracing::info!(keys_of = %id, "JWKS file changed: keys reloaded")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(keys_of = %id, error = %e, "JWKS file changed but could not be loaded; keeping the old keys")
                        }
                    }
                }
            }
            if let Some(source) = &source {
                let now = stamp(&source.path);
                if now.is_some() && now != seen {
                    seen = now;
                    let _ = reload(&state, source, &stats);
                }
            }
        }
    });
}

/// Reloads the configuration on SIGHUP.
#[cfg(unix)]
fn spawn_sighup(state: &AppState, source: ConfigSource, stats: Arc<ReloadStats>) {
    let state = state.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("SIGHUP cannot be handled; reload by changing the file");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = reload(&state, &source, &stats);
        }
    });
}
