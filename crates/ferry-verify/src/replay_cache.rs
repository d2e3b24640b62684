//! A bounded in-process memory of spent `jti`s, per principal, for relying services
//! (service-account JWTs presented directly, DPoP proofs per key). An id is kept until the token it came in
//! can no longer verify; a live id is never evicted to make room — when the cache (or a
//! principal's share of it) holds only live ids, new tokens are refused instead, so a
//! flood of fresh tokens can never make an earlier one replayable.

use std::collections::HashMap;

/// The outcome of spending an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spent {
    /// First use: remembered.
    Fresh,
    /// Seen before and still live.
    Replayed,
    /// No room without forgetting a live id: refused.
    Full,
}

/// Spent ids by principal, each with the time until which it is kept.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    by_principal: HashMap<String, HashMap<String, i64>>,
    len: usize,
    total: usize,
    per_principal: usize,
    /// The earliest time any kept id may be forgotten: before it, a full cache has
    /// nothing to drop and is not scanned.
    earliest: i64,
}

impl ReplayCache {
    /// At most `total` ids in all and `per_principal` for any one principal.
    pub(crate) fn new(total: usize, per_principal: usize) -> Self {
        Self {
            by_principal: HashMap::new(),
            len: 0,
            total,
            per_principal,
            earliest: i64::MAX,
        }
    }

    /// Spends `jti` of `principal`, kept until `until`.
    pub(crate) fn spend(&mut self, principal: &str, jti: &str, until: i64, now: i64) -> Spent {
        if self
            .by_principal
            .get(principal)
            .and_then(|ids| ids.get(jti))
            .is_some_and(|kept| *kept >= now)
        {
            return Spent::Replayed;
        }
        if !self.has_room(principal) {
            if now > self.earliest {
                self.forget_expired(now);
            }
            if !self.has_room(principal) {
                return Spent::Full;
            }
        }
        let ids = self.by_principal.entry(principal.to_owned()).or_default();
        if ids.insert(jti.to_owned(), until).is_none() {
            self.len += 1;
        }
        self.earliest = self.earliest.min(until);
        Spent::Fresh
    }

    fn has_room(&self, principal: &str) -> bool {
        let own = self.by_principal.get(principal).map_or(0, HashMap::len);
        self.len < self.total && own < self.per_principal
    }

    /// Drops the ids no token can be replayed with any more.
    fn forget_expired(&mut self, now: i64) {
        for ids in self.by_principal.values_mut() {
            ids.retain(|_, kept| *kept >= now);
        }
        self.by_principal.retain(|_, ids| !ids.is_empty());
        self.len = self.by_principal.values().map(HashMap::len).sum();
        self.earliest = self
            .by_principal
            .values()
            .flat_map(HashMap::values)
            .copied()
            .min()
            .unwrap_or(i64::MAX);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An id is single use while live, reusable once expired; the cache never holds
    /// more than its bounds, and a full cache refuses rather than forget a live id.
    #[test]
    fn ids_are_single_use_and_the_cache_is_bounded() {
        let mut c = ReplayCache::new(3, 2);
        assert_eq!(c.spend("a", "1", 100, 0), Spent::Fresh);
        assert_eq!(c.spend("a", "1", 100, 50), Spent::Replayed);
        // The twin: the same id of another principal is another id.
        assert_eq!(c.spend("b", "1", 100, 0), Spent::Fresh);
        assert_eq!(c.spend("a", "2", 100, 0), Spent::Fresh);
        // a's share (2) is full of live ids: refused, and a's first id still spent.
        assert_eq!(c.spend("a", "3", 100, 0), Spent::Full);
        assert_eq!(c.spend("a", "1", 100, 0), Spent::Replayed);
        // The whole cache (3) is full: c is refused too.
        assert_eq!(c.spend("c", "1", 100, 0), Spent::Full);
        assert_eq!(c.len(), 3);
        // Once the ids expired, room is made by dropping them, never live ones.
        assert_eq!(c.spend("c", "1", 200, 101), Spent::Fresh);
        assert_eq!(c.len(), 1);
        assert_eq!(c.spend("a", "1", 200, 101), Spent::Fresh);
    }

    /// One principal's share full of live ids refuses only that principal: another
    /// still gets in (the twin that shows the per-principal bound on its own).
    #[test]
    fn a_full_share_refuses_only_its_principal() {
        let mut c = ReplayCache::new(10, 2);
        assert_eq!(c.spend("a", "1", 100, 0), Spent::Fresh);
        assert_eq!(c.spend("a", "2", 100, 0), Spent::Fresh);
        assert_eq!(c.spend("a", "3", 100, 0), Spent::Full);
        assert_eq!(c.spend("b", "1", 100, 0), Spent::Fresh);
        // Before the earliest id expires a full share is not scanned, after it is.
        assert_eq!(c.spend("a", "3", 100, 100), Spent::Full);
        assert_eq!(c.spend("a", "3", 200, 101), Spent::Fresh);
    }
}
