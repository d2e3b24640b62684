//! What this process knows about its own readiness, apart from its configuration:
//!
//! - **Draining.** From SIGTERM on, `/readyz` (public and admin) answers 503 while the
//!   listeners keep serving for `limits.shutdown_delay`, each response carrying
//!   `Connection: close`, so a load balancer stops routing here before the sockets
//!   close and no request routed meanwhile is refused.
//! - **The data directory.** A periodic write probe (create, write, fsync, remove a
//!   small file) finds a directory that turned read-only or full now, not at the next
//!   key rotation or revocation days later. The directory is this replica's own (unlike
//!   a shared database), so a failing probe fails this replica's readiness: it cannot
//!   persist a revocation or a key transition, and another replica may.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Resolves at the first Ctrl-C or SIGTERM (where SIGTERM cannot be handled, at the
/// first Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// How often the data directory is probed.
pub const DATA_DIR_PROBE: Duration = Duration::from_secs(5);

/// The file the probe writes and removes.
pub const PROBE_FILE: &str = ".ferry-write-probe";

/// Draining and data-directory health.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    /// The directory probed; `None` when Ferry keeps nothing there.
    data_dir: Mutex<Option<PathBuf>>,
    /// The last probe's error, `None` while writable.
    probe_error: Mutex<Option<String>>,
    probe_failures: AtomicU64,
}

/// The data directory's state, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Not probed: Ferry keeps nothing there (the directory does not exist and the key
    /// ring is elsewhere).
    NotUsed,
    /// The last probe wrote, synced and removed its file.
    Writable,
    /// The last probe failed, with why.
    NotWritable(String),
}

impl Lifecycle {
    /// SIGTERM arrived: readiness fails from now on.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// The first step of a shutdown: readiness fails now, and the listeners keep
    /// serving for `delay_s` seconds (0: not at all) or until `again` (a second signal)
    /// resolves. The caller then stops accepting.
    pub async fn drain(&self, delay_s: u64, again: impl std::future::Future<Output = ()>) {
        self.begin_draining();
        if delay_s > 0 {
            tracing::info!(
                shutdown_delay_s = delay_s,
                "shutting down: readiness fails now; still serving for limits.shutdown_delay"
            );
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(delay_s)) => {},
                () = again => {},
            }
        }
        tracing::info!("shutting down: no longer accepting; finishing in-flight requests");
    }

    /// A whole shutdown once the first signal came: [`Self::drain`] for `delay_s` (a
    /// second signal cuts it short), then `stop` ends accepting and the in-flight
    /// requests of `server` get `timeout_s` seconds to finish.
    pub async fn shut_down<T>(
        &self,
        delay_s: u64,
        timeout_s: u64,
        stop: &tokio::sync::watch::Sender<bool>,
        server: tokio::task::JoinHandle<T>,
    ) {
        self.drain(delay_s, shutdown_signal()).await;
        let _ = stop.send(true);
        match tokio::time::timeout(Duration::from_secs(timeout_s), server).await {
            Ok(_) => tracing::info!("stopped"),
            Err(_) => tracing::warn!(
                "in-flight requests did not finish within the shutdown deadline; exiting"
            ),
        }
    }

    /// Whether the process is shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Probe `dir` from now on.
    pub fn watch_data_dir(&self, dir: PathBuf) {
        *self
            .data_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir);
    }

    /// The directory being probed, if any.
    pub fn data_dir_path(&self) -> Option<PathBuf> {
        self.data_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The data directory's state.
    pub fn data_dir(&self) -> DataDir {
        if self.data_dir_path().is_none() {
            return DataDir::NotUsed;
        }
        match self
            .probe_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            None => DataDir::Writable,
            Some(e) => DataDir::NotWritable(e),
        }
    }

    /// Failed probes since start (`ferry_data_dir_probe_failures_total`).
    pub fn probe_failures(&self) -> u64 {
        self.probe_failures.load(Ordering::Relaxed)
    }

    /// Records a probe's outcome; logs when the state changes (not at every probe).
    pub fn record_probe(&self, result: Result<(), ProbeError>) {
        let mut last = self
            .probe_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => {
                if last.take().is_some() {
                    tracing::info!("data directory writable again: readiness restored");
                }
            }
            Err(e) => {
                let e = e.to_string();
                self.probe_failures.fetch_add(1, Ordering::Relaxed);
                if last.as_deref() != Some(e.as_str()) {
                    tracing::error!(error = %e, "data directory not writable: revocations and key-ring changes cannot be persisted; readiness fails until it is");
                }
                *last = Some(e);
            }
        }
    }

    /// Why this replica should get no traffic, if it should not. The public `/readyz`
    /// answers only the status; the admin one adds the details.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.draining() {
            return Some("shutting down");
        }
        match self.data_dir() {
            DataDir::NotWritable(_) => Some("data directory not writable"),
            DataDir::NotUsed | DataDir::Writable => None,
        }
    }
}

/// Why the data directory's write probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Creating, writing, syncing or removing the probe file failed.
    #[error("write probe in {}: {source}", dir.display())]
    Io {
        /// The data directory.
        dir: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The probe did not finish in time (a hung disk).
    #[error("write probe in {} did not finish within {seconds} s", dir.display())]
    Stuck {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The bound.
        seconds: u64,
    },
}

/// Creates, writes, syncs and removes [`PROBE_FILE`] in `dir` (blocking file I/O).
pub fn probe(dir: &Path) -> Result<(), ProbeError> {
    let path = dir.join(PROBE_FILE);
    let attempt = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&path)?;
        f.write_all(b"ferry write probe\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::remove_file(&path)
    };
    attempt().map_err(|e| {
        // A probe that failed half-way (a full disk) leaves no file behind.
        let _ = std::fs::remove_file(&path);
        ProbeError::Io {
            dir: dir.to_owned(),
            source: e,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_failing_probe_fails_readiness_and_a_passing_one_restores_it() {
        let l = Lifecycle::default();
        assert_eq!(l.data_dir(), DataDir::NotUsed);
        assert_eq!(l.not_ready(), None);
        let dir = std::env::temp_dir().join(format!("ferry-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        l.watch_data_dir(dir.clone());
        l.record_probe(probe(&dir));
        assert_eq!((l.data_dir(), l.not_ready()), (DataDir::Writable, None));
        // A directory in the probe file's place fails it, even for root.
        std::fs::create_dir(dir.join(PROBE_FILE)).unwrap();
        l.record_probe(probe(&dir));
        assert!(matches!(l.data_dir(), DataDir::NotWritable(_)));
        assert_eq!(l.not_ready(), Some("data directory not writable"));
        assert_eq!(l.probe_failures(), 1);
        // Twin: out of the way again, the next probe restores readiness.
        std::fs::remove_dir(dir.join(PROBE_FILE)).unwrap();
        l.record_probe(probe(&dir));
        assert_eq!((l.data_dir(), l.not_ready()), (DataDir::Writable, None));
        assert!(!dir.join(PROBE_FILE).exists(), "the probe cleans up");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn draining_fails_readiness() {
        let l = Lifecycle::default();
        assert_eq!(l.not_ready(), None);
        l.begin_draining();
        assert_eq!(l.not_ready(), Some("shutting down"));
    }
}
