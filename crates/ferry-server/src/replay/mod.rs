//! Single-use ids: RFC 7523 §3 item 7 assertion `jti`s (service accounts, client
//! assertions) and RFC 9449 §11.1 DPoP proof `jti`s, each in its own cache. An entry is
//! kept, keyed by its principal, for as long as the id could still be accepted (the
//! caller says until when: `exp` plus the verifier's leeway, or the proof window, plus
//! the allowed clock difference between replicas); it is never evicted before then, so
//! an attacker flooding fresh ids cannot push a live one out and replay it. When full,
//! expired entries go first; if none can, the new id is refused (and the refusal
//! counted). Each principal (a registered service account or client) holds at most its
//! share of the cache, so one tenant's assertions can never lock another tenant out.
//! Size it at least at (assertion rate) × (longest assertion lifetime).
//!
//! A cache that loses its entries (Redis restarted without persistence, a failover to an
//! empty replica, a flush; a Ferry process that stopped without saving its in-process
//! cache) would accept every id it forgot. So each cache knows when its state was last
//! lost ([`Losses`]) and refuses every id issued before that moment plus the leeway —
//! those it may have seen — until they expire ([`issued_before_loss`]). The shared cache
//! detects a loss with an epoch marker checked atomically with each write
//! ([`shared`]); the in-process one by saving itself at a graceful stop and treating an
//! unclean stop as a loss at start ([`persist`]).

mod memory;
pub mod persist;
mod shared;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub use memory::{Entry, InProcessReplay};
pub use shared::{EPOCH_KEY, Epoch, RedisReplay};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assertion_without_iat_counts_as_issued_at_its_earliest() {
        assert_eq!(issued_at(Some(1_000), 1_300, 3_600), 1_000);
        assert_eq!(issued_at(None, 5_000, 3_600), 1_400);
        assert_eq!(issued_at(None, i64::MIN + 1, 3_600), i64::MIN);
    }

    #[test]
    fn ids_issued_before_a_loss_plus_the_margin_are_refused() {
        let lost = Some(10_000);
        let table = [
            // (issued, margin, refused, why)
            (9_000, 60, true, "issued well before the loss"),
            (10_000, 60, true, "issued at the loss"),
            (
                10_059,
                60,
                true,
                "within the leeway after the loss: may have been seen",
            ),
            (
                10_060,
                60,
                false,
                "loss + leeway: issued after anything seen",
            ),
            (10_100, 60, false, "issued after"),
            (10_064, 65, true, "the shared cache adds the replicas' skew"),
            (10_065, 65, false, "…and accepts from loss + leeway + skew"),
            (9_999, -5, true, "a negative margin counts as none"),
        ];
        for (issued, margin, refused, why) in table {
            assert_eq!(issued_before_loss(issued, lost, margin), refused, "{why}");
        }
        // Twin: with no loss, nothing is refused.
        assert!(!issued_before_loss(0, None, 60));
    }

    #[test]
    fn an_assertion_without_iat_is_refused_until_it_expires() {
        // Lifetime 1 h allowed: one without iat expiring an hour after the loss may
        // have been issued before it.
        let lost = Some(10_000);
        let before = issued_at(None, 10_000 + 3_600, 3_600);
        assert!(issued_before_loss(before, lost, 60));
        // Twin: one expiring later than loss + leeway + lifetime was issued after.
        let after = issued_at(None, 10_000 + 60 + 3_600, 3_600);
        assert!(!issued_before_loss(after, lost, 60));
    }

    #[test]
    fn the_latest_loss_wins() {
        let l = Losses::default();
        assert_eq!(l.at(), None);
        assert!(!l.refuses(0, 60));
        l.raise(100);
        l.raise(50);
        assert_eq!(l.at(), Some(100));
        assert!(l.refuses(159, 60));
        assert!(!l.refuses(160, 60));
    }
}
