//! What every replay cache is: the trait, a spend, its errors, capacity, and the record
//! of when the state was last lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why an id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before and not yet expired.
    Replayed,
    /// Issued before the cache's state was lost: it may have been seen.
    BeforeLoss,
    /// The cache is full of live entries.
    Full,
    /// The principal holds its whole share of live entries.
    ShareFull,
    /// The shared cache cannot be reached (and the configuration fails closed).
    Unavailable,
}

/// One id to spend.
#[derive(Debug, Clone, Copy)]
pub struct Spend<'a> {
    /// Whose id it is (the registered principal, or `dpop:<jkt>`).
    pub principal: &'a str,
    /// The id.
    pub jti: &'a str,
    /// When it was issued, by the rule of [`issued_at`].
    pub issued: i64,
    /// How far ahead of Ferry's clock the issuer's may run: an id used just before a
    /// loss may say it was issued up to this much later.
    pub leeway: i64,
    /// The allowed clock difference between replicas (and Redis), added to `leeway` by
    /// the shared cache.
    pub skew: i64,
    /// Kept until then (inclusive).
    pub until: i64,
    /// Now, by Ferry's clock.
    pub now: i64,
}

/// What [`ReplayCache::consume`] returns.
pub type Consume<'a> = Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>>;

/// The replay cache interface: in process, or shared through Redis.
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records the id until `spend.until`; an error if it was already recorded, was
    /// issued before a loss of the cache's state, or cannot be recorded.
    fn consume<'a>(&'a self, spend: Spend<'a>) -> Consume<'a>;
    /// Refusals because the cache (or a principal's share) was full.
    fn refusals(&self) -> u64;
    /// Times the shared backend could not be reached (0 for the in-process cache).
    fn backend_errors(&self) -> u64 {
        0
    }
}

/// How much a cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Live entries in all.
    pub total: usize,
    /// Live entries per principal.
    pub per_principal: usize,
}

/// When an assertion counts as issued: its `iat`, or without one `exp` minus the longest
/// lifetime the verifier allows (the earliest it can have been issued).
pub fn issued_at(iat: Option<i64>, exp: i64, max_lifetime: i64) -> i64 {
    iat.unwrap_or_else(|| exp.saturating_sub(max_lifetime))
}

/// Whether an id issued at `issued` may have been seen before the loss at `lost_at`:
/// until then it could be used, and Ferry accepted an `iat` up to `margin` (leeway and
/// clock skew) in its future. Such an id is refused; it expires by itself.
pub fn issued_before_loss(issued: i64, lost_at: Option<i64>, margin: i64) -> bool {
    lost_at.is_some_and(|at| issued < at.saturating_add(margin.max(0)))
}

/// When a cache's state was last found lost (the latest loss wins: it refuses the most),
/// and how many losses were detected. Shared by a mode's assertion and proof caches.
#[derive(Debug)]
pub struct Losses {
    at: AtomicI64,
    count: AtomicU64,
}

impl Default for Losses {
    fn default() -> Self {
        Self {
            at: AtomicI64::new(i64::MIN),
            count: AtomicU64::new(0),
        }
    }
}

impl Losses {
    /// The latest loss, seconds since the epoch.
    pub fn at(&self) -> Option<i64> {
        Some(self.at.load(Ordering::Acquire)).filter(|a| *a != i64::MIN)
    }

    /// Raises the floor to `at` (never lowers it).
    pub fn raise(&self, at: i64) {
        self.at.fetch_max(at, Ordering::AcqRel);
    }

    /// Counts one detected loss.
    pub fn count_one(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Losses detected since start.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether `spend` was issued before the latest loss (`margin`: leeway, plus skew
    /// for the shared cache).
    pub fn refuses(&self, issued: i64, margin: i64) -> bool {
        issued_before_loss(issued, self.at(), margin)
    }
}
