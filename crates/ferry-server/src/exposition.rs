//! The OpenMetrics page: the registered metrics, and the ones read at scrape time from
//! the server's state.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::metrics::Metrics;
use crate::reloads::ReloadStats;
use crate::state::AppState;

/// Reads one counter of a key cache.
type StatFn = fn(&ferry_verify::CacheStats) -> u64;

impl Metrics {
    /// The OpenMetrics text of every metric, including the ones read at scrape time.
    pub fn render(&self, state: &AppState, reloads: &ReloadStats) -> String {
        // Each configured provider's expression-error series exists at 0 (bounded by the
        // configuration), so the family is on the page before the first error.
        for p in state.loaded().providers.iter() {
            let _ = self
                .expression_errors
                .get_or_create(&crate::metrics::ProviderLabels {
                    provider: p.config.id.clone(),
                });
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            return "# EOF\n".to_owned();
        }
        let mut tail = String::new();
        issuer_key_metrics(&mut tail, state);
        signing_metrics(&mut tail, state, reloads);
        store_metrics(&mut tail, state, reloads);
        match out.strip_suffix("# EOF\n") {
            Some(head) => format!("{head}{tail}# EOF\n"),
            None => format!("{out}{tail}"),
        }
    }
}

/// Per provider: the issuer key cache counters and the staleness of served keys.
fn issuer_key_metrics(tail: &mut String, state: &AppState) {
    let loaded = state.loaded();
    let mut providers: Vec<_> = loaded
        .providers
        .iter()
        .filter_map(|p| p.keys.stats().map(|s| (p.config.id.clone(), s)))
        .collect();
    providers.sort_by(|a, b| a.0.cmp(&b.0));
    let counters: [(&str, &str, StatFn); 7] = [
        ("ferry_issuer_key_fetches", "Issuer key set fetches", |s| {
            s.fetches
        }),
        (
            "ferry_issuer_key_cache_hits",
            "Requests served from fresh cached issuer keys",
            |s| s.hits,
        ),
        (
            "ferry_issuer_key_cache_misses",
            "Requests that found no fresh cached issuer keys",
            |s| s.misses,
        ),
        (
            "ferry_issuer_key_refetches",
            "Forced refetches for an unknown kid",
            |s| s.refetches,
        ),
        (
            "ferry_issuer_key_refetches_suppressed",
            "Forced refetches refused within the interval",
            |s| s.refetches_suppressed,
        ),
        (
            "ferry_issuer_key_fetch_errors",
            "Failed issuer key fetches",
            |s| s.errors,
        ),
        (
            "ferry_issuer_key_stale_served",
            "Requests verified with expired keys while the issuer was down",
            |s| s.stale_served,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(tail, "# HELP {name} {help}.\n# TYPE {name} counter");
        for (id, s) in &providers {
            let _ = writeln!(tail, "{name}_total{{provider=\"{id}\"}} {}", get(s));
        }
    }
    let _ = writeln!(
        tail,
        "# HELP ferry_issuer_key_staleness_seconds How far past expiry the served issuer keys are.\n# TYPE ferry_issuer_key_staleness_seconds gauge\n# UNIT ferry_issuer_key_staleness_seconds seconds"
    );
    for (id, s) in &providers {
        let _ = writeln!(
            tail,
            "ferry_issuer_key_staleness_seconds{{provider=\"{id}\"}} {}",
            s.staleness_seconds
        );
    }
    let _ = writeln!(
        tail,
        "# HELP ferry_issuer_keys_usable Whether keys that may still verify are held (fresh, or stale within max_staleness).\n# TYPE ferry_issuer_keys_usable gauge"
    );
    for (id, s) in &providers {
        let _ = writeln!(
            tail,
            "ferry_issuer_keys_usable{{provider=\"{id}\"}} {}",
            u8::from(s.usable)
        );
    }
}

/// Ferry's signing key: its age, the next rotation, whether this replica can sign and
/// reach the key store.
fn signing_metrics(tail: &mut String, state: &AppState, reloads: &ReloadStats) {
    let now = state.clock.now();
    let snap = state.keys.snapshot();
    let policy = state.keys.policy();
    if let Some(active) = snap
        .keys
        .iter()
        .find(|k| k.state == ferry_core::keyring::KeyState::Active)
    {
        let since = active.activated_at.unwrap_or(active.published_at);
        let _ = writeln!(
            tail,
            "# HELP ferry_signing_key_age_seconds Time the active signing key has signed.\n# TYPE ferry_signing_key_age_seconds gauge\n# UNIT ferry_signing_key_age_seconds seconds\nferry_signing_key_age_seconds {}",
            now - since
        );
        let _ = writeln!(
            tail,
            "# HELP ferry_signing_key_next_rotation_seconds Time until the next scheduled rotation.\n# TYPE ferry_signing_key_next_rotation_seconds gauge\n# UNIT ferry_signing_key_next_rotation_seconds seconds\nferry_signing_key_next_rotation_seconds {}",
            (since + policy.rotation_period - now).max(0)
        );
    }
    let count = |state| snap.keys.iter().filter(|k| k.state == state).count();
    let _ = writeln!(
        tail,
        "# HELP ferry_signing_keys Keys in the signing key ring by state (a rotation needs a pending key).\n# TYPE ferry_signing_keys gauge\nferry_signing_keys{{state=\"pending\"}} {}\nferry_signing_keys{{state=\"active\"}} {}\nferry_signing_keys{{state=\"retired\"}} {}",
        count(ferry_core::keyring::KeyState::Pending),
        count(ferry_core::keyring::KeyState::Active),
        count(ferry_core::keyring::KeyState::Retired)
    );
    let _ = writeln!(
        tail,
        "# HELP ferry_signing_available Whether this replica can sign (it can unseal the active key).\n# TYPE ferry_signing_available gauge\nferry_signing_available {}",
        u8::from(snap.can_sign())
    );
    let _ = writeln!(
        tail,
        "# HELP ferry_key_store_up Whether the last key-ring poll reached the key store.\n# TYPE ferry_key_store_up gauge\nferry_key_store_up {}",
        u8::from(reloads.key_store_error().is_none())
    );
}

/// The data directory, the revocation store, configuration reloads and the replay caches.
fn store_metrics(tail: &mut String, state: &AppState, reloads: &ReloadStats) {
    let _ = writeln!(
        tail,
        "# HELP ferry_data_dir_writable Whether the last write probe of the data directory succeeded (1 when Ferry keeps nothing there).\n# TYPE ferry_data_dir_writable gauge\nferry_data_dir_writable {}\n# HELP ferry_data_dir_probe_failures Failed write probes of the data directory.\n# TYPE ferry_data_dir_probe_failures counter\nferry_data_dir_probe_failures_total {}",
        u8::from(!matches!(
            state.lifecycle.data_dir(),
            crate::lifecycle::DataDir::NotWritable(_)
        )),
        state.lifecycle.probe_failures()
    );
    let _ = writeln!(
        tail,
        "# HELP ferry_revocation_store_up Whether the last call reached the revocation store.\n# TYPE ferry_revocation_store_up gauge\nferry_revocation_store_up {}",
        u8::from(state.revocations.store_up())
    );
    if let Some(age) = state.revocations.sync_age() {
        let _ = writeln!(
            tail,
            "# HELP ferry_revocation_sync_age_seconds Age of the in-memory revocation copy reads are served from.\n# TYPE ferry_revocation_sync_age_seconds gauge\n# UNIT ferry_revocation_sync_age_seconds seconds\nferry_revocation_sync_age_seconds {age:.3}"
        );
    }
    let _ = writeln!(
        tail,
        "# HELP ferry_config_reloads Configuration reloads by result.\n# TYPE ferry_config_reloads counter\nferry_config_reloads_total{{result=\"ok\"}} {}\nferry_config_reloads_total{{result=\"error\"}} {}",
        reloads.ok.load(Ordering::Relaxed),
        reloads.failed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        tail,
        "# HELP ferry_config_last_reload_successful Whether the last configuration reload took effect (1 before any).\n# TYPE ferry_config_last_reload_successful gauge\nferry_config_last_reload_successful {}",
        u8::from(!reloads.last_failed.load(Ordering::Relaxed))
    );
    let _ = writeln!(
        tail,
        "# HELP ferry_replay_backend_errors Replay checks that could not reach the shared replay cache (Redis).\n# TYPE ferry_replay_backend_errors counter\nferry_replay_backend_errors_total {}\n# HELP ferry_replay_full_refusals Assertions refused because the replay cache, or the principal's share of it, was full.\n# TYPE ferry_replay_full_refusals counter\nferry_replay_full_refusals_total {}\n# HELP ferry_dpop_replay_full_refusals DPoP proofs refused because the proof replay cache was full.\n# TYPE ferry_dpop_replay_full_refusals counter\nferry_dpop_replay_full_refusals_total {}\n# HELP ferry_replay_state_lost Times the replay state was found lost (Redis emptied, or an unclean stop of a single node): ids issued before are refused until they expire.\n# TYPE ferry_replay_state_lost counter\nferry_replay_state_lost_total {}",
        state.replay.backend_errors() + state.dpop_replay.backend_errors(),
        state.replay.refusals(),
        state.dpop_replay.refusals(),
        state.replay_losses.count()
    );
}
