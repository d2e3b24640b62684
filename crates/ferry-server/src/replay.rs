//! Single-use assertion ids (RFC 7523 §3 item 7). Each `jti` is kept, keyed by its issuer,
//! until its `exp`; an entry is never evicted before then, so an attacker flooding fresh
//! assertions cannot push a live one out and replay it. When full, the cache first drops
//! expired entries; if none can go, it refuses the new assertion (and counts the
//! refusal). Size it at least at (assertion rate) × (longest assertion lifetime).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an assertion id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before and not yet expired.
    Replayed,
    /// The cache is full of live entries.
    Full,
}

/// The replay cache interface (a shared implementation comes with scale-out).
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `(issuer, jti)` until `exp`; an error if it was already recorded or if it
    /// cannot be recorded.
    fn consume(&self, issuer: &str, jti: &str, exp: i64, now: i64) -> Result<(), ReplayError>;
    /// Refusals because the cache was full.
    fn refusals(&self) -> u64;
}

/// An in-process replay cache.
#[derive(Debug)]
pub struct InProcessReplay {
    entries: Mutex<HashMap<(String, String), i64>>,
    capacity: usize,
    refused: AtomicU64,
}

impl InProcessReplay {
    /// A cache holding at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            refused: AtomicU64::new(0),
        }
    }
}

impl ReplayCache for InProcessReplay {
    fn consume(&self, issuer: &str, jti: &str, exp: i64, now: i64) -> Result<(), ReplayError> {
        let mut map = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (issuer.to_owned(), jti.to_owned());
        if map.get(&key).is_some_and(|e| *e >= now) {
            return Err(ReplayError::Replayed);
        }
        if map.len() >= self.capacity {
            map.retain(|_, e| *e >= now);
            if map.len() >= self.capacity {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(ReplayError::Full);
            }
        }
        map.insert(key, exp);
        Ok(())
    }

    fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_ids_are_refused_until_they_expire() {
        let c = InProcessReplay::new(10);
        assert_eq!(c.consume("sa", "a", 100, 0), Ok(()));
        assert_eq!(c.consume("sa", "a", 100, 50), Err(ReplayError::Replayed));
        assert_eq!(c.consume("other", "a", 100, 50), Ok(()), "keyed by issuer");
        assert_eq!(
            c.consume("sa", "a", 200, 101),
            Ok(()),
            "after exp it is gone"
        );
    }

    #[test]
    fn a_flood_never_evicts_a_live_entry() {
        let c = InProcessReplay::new(100);
        assert_eq!(c.consume("sa", "live", 1_000, 0), Ok(()));
        let mut refused = 0;
        for i in 0..10_000 {
            if c.consume("attacker", &format!("j{i}"), 1_000, 1) == Err(ReplayError::Full) {
                refused += 1;
            }
        }
        assert_eq!(refused, 10_000 - 99);
        assert_eq!(c.refusals(), 10_000 - 99);
        // The live assertion is still remembered: its replay is refused.
        assert_eq!(
            c.consume("sa", "live", 1_000, 2),
            Err(ReplayError::Replayed)
        );
        // Twin: once the flood's entries expire, new ids are accepted again.
        assert_eq!(c.consume("sa", "new", 2_000, 1_001), Ok(()));
    }
}
