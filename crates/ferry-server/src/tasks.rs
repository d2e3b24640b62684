//! Background work: warming remote key caches at start, and reloading JWKS files when
//! they change.

use std::time::Duration;

use ferry_verify::KeySource;

use crate::state::AppState;

/// How often JWKS files are checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);

/// How often the key ring is checked for due transitions and for changes by other
/// processes (an emergency revocation reaches a running server within this).
pub fn ring_poll(state: &AppState) -> Duration {
    let ahead = state.config.signing.jwks_max_age + state.config.signing.leeway;
    Duration::from_secs((ahead / 10).clamp(1, 10))
}

/// Starts the background tasks for `state`. They end with the runtime.
pub fn spawn_background(state: &AppState) {
    let keys = state.keys.clone();
    let clock = state.clock.clone();
    let every = ring_poll(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let (keys, now) = (keys.clone(), clock.now());
            // The store does blocking file I/O (and takes a lock): off the async workers.
            match tokio::task::spawn_blocking(move || keys.tick(now)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "key ring unavailable: signing continues with the keys in memory; rotation waits")
                }
                Err(e) => tracing::error!(error = %e, "key ring task failed"),
            }
        }
    });
    for p in state.providers.iter() {
        match &p.keys {
            KeySource::Remote(remote) => {
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
            KeySource::Static(keys) if keys.watches_file() => {
                let keys = keys.clone();
                let id = p.config.id.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(FILE_POLL);
                    loop {
                        tick.tick().await;
                        match keys.reload_if_changed() {
                            Ok(true) => {
                                tracing::info!(provider = %id, "JWKS file changed: keys reloaded")
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(provider = %id, error = %e, "JWKS file changed but could not be loaded; keeping the old keys")
                            }
                        }
                    }
                });
            }
            KeySource::Static(_) => {}
        }
    }
}
