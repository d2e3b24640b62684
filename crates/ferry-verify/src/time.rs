//! Monotonic time for caches, injectable so cache expiry and staleness are tested
//! without sleeping; and, for the few places that have no clock passed in, the one
//! place this crate and the server read the real clocks (`clippy.toml` bans
//! `Instant::now` and `SystemTime::now` everywhere else).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic clock: time elapsed since an arbitrary origin.
pub trait MonoTime: Send + Sync + std::fmt::Debug {
    /// Time since the origin.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemMono(std::time::Instant);

impl Default for SystemMono {
    fn default() -> Self {
        Self(instant_now())
    }
}

/// The process's monotonic clock as an [`std::time::Instant`], for deadlines and
/// durations measured where no [`MonoTime`] is passed in (connection deadlines, request
/// latency, log rate limits).
#[allow(
    clippy::disallowed_methods,
    reason = "the monotonic clock itself: the one Instant::now"
)]
pub fn instant_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Seconds since the Unix epoch by the system's real-time clock (0 before the epoch),
/// for an entry point that is given no time (the axum extractor).
#[allow(
    clippy::disallowed_methods,
    reason = "the wall clock itself: the one SystemTime::now of this crate"
)]
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl MonoTime for SystemMono {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock moved by hand; for tests.
#[derive(Debug, Default)]
pub struct ManualMono(AtomicU64);

impl ManualMono {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(
            u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl MonoTime for ManualMono {
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}
