//! Monotonic time for caches, injectable so cache expiry and staleness are tested
//! without sleeping.

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
        Self(std::time::Instant::now())
    }
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
