//! The in-process replay cache (single node): a map of live ids with per-principal
//! counts, refusing when full rather than evicting a live id. Its entries can be saved
//! and restored ([`super::persist`]) so a graceful restart forgets nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::model::{Capacity, Consume, Losses, ReplayCache, ReplayError, Spend};

/// One live id, as saved to disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Whose id.
    pub principal: String,
    /// The id.
    pub jti: String,
    /// Kept until then (inclusive).
    pub until: i64,
}

/// An in-process replay cache.
#[derive(Debug)]
pub struct InProcessReplay {
    inner: Mutex<Entries>,
    capacity: Capacity,
    refused: AtomicU64,
    losses: Arc<Losses>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Saved for a stop: nothing more is recorded.
    sealed: bool,
    map: HashMap<(String, String), i64>,
    /// Live entries per principal (only principals holding some).
    per: HashMap<String, usize>,
    /// No entry expires before this: pruning before it would find nothing, so a
    /// principal at its share is refused without a scan.
    next_expiry: i64,
}

impl Entries {
    /// Drops every expired entry, unless none can have expired.
    fn prune(&mut self, now: i64) {
        if now <= self.next_expiry {
            return;
        }
        let per = &mut self.per;
        let mut next = i64::MAX;
        self.map.retain(|(principal, _), until| {
            if *until >= now {
                next = next.min(*until);
                true
            } else {
                if let Some(n) = per.get_mut(principal) {
                    *n = n.saturating_sub(1);
                }
                false
            }
        });
        per.retain(|_, n| *n > 0);
        self.next_expiry = next;
    }
}

impl InProcessReplay {
    /// A cache of `capacity`, refusing ids issued before the losses in `losses`.
    pub fn new(capacity: Capacity, losses: Arc<Losses>) -> Self {
        Self {
            inner: Mutex::new(Entries {
                next_expiry: i64::MAX,
                ..Entries::default()
            }),
            capacity,
            refused: AtomicU64::new(0),
            losses,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entries still live at `now`, to save; from then on every id is refused as
    /// `Unavailable`, so none is spent that the saved copy would miss.
    pub fn seal(&self, now: i64) -> Vec<Entry> {
        let mut e = self.entries();
        e.sealed = true;
        e.map
            .iter()
            .filter(|(_, until)| **until >= now)
            .map(|((principal, jti), until)| Entry {
                principal: principal.clone(),
                jti: jti.clone(),
                until: *until,
            })
            .collect()
    }

    /// Puts saved entries back (those still live at `now`), all of them even beyond a
    /// capacity lowered since: dropping one would let it be replayed, while a cache
    /// over its capacity only refuses new ids until enough expire.
    pub fn restore(&self, entries: Vec<Entry>, now: i64) {
        let mut e = self.entries();
        for saved in entries.into_iter().filter(|s| s.until >= now) {
            let until = saved.until;
            let principal = saved.principal.clone();
            if e.map.insert((saved.principal, saved.jti), until).is_none() {
                *e.per.entry(principal).or_insert(0) += 1;
            }
            e.next_expiry = e.next_expiry.min(until);
        }
    }
}

impl ReplayCache for InProcessReplay {
    fn consume<'a>(&'a self, s: Spend<'a>) -> Consume<'a> {
        // One clock: the leeway alone separates what may have been seen.
        let r = if self.losses.refuses(s.issued, s.leeway) {
            Err(ReplayError::BeforeLoss)
        } else {
            self.consume_now(s.principal, s.jti, s.until, s.now)
        };
        Box::pin(std::future::ready(r))
    }

    fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl InProcessReplay {
    fn consume_now(
        &self,
        principal: &str,
        jti: &str,
        until: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let r = self.record(principal, jti, until, now);
        if matches!(r, Err(ReplayError::Full | ReplayError::ShareFull)) {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn record(&self, principal: &str, jti: &str, until: i64, now: i64) -> Result<(), ReplayError> {
        let mut e = self.entries();
        if e.sealed {
            return Err(ReplayError::Unavailable);
        }
        let key = (principal.to_owned(), jti.to_owned());
        if e.map.get(&key).is_some_and(|u| *u >= now) {
            return Err(ReplayError::Replayed);
        }
        let held = |e: &Entries| e.per.get(principal).copied().unwrap_or(0);
        if held(&e) >= self.capacity.per_principal || e.map.len() >= self.capacity.total {
            e.prune(now);
        }
        let refusal = if held(&e) >= self.capacity.per_principal {
            Some(ReplayError::ShareFull)
        } else if e.map.len() >= self.capacity.total {
            Some(ReplayError::Full)
        } else {
            None
        };
        if let Some(r) = refusal {
            return Err(r);
        }
        // An expired entry of the same id is replaced, not counted twice.
        if e.map.insert(key, until).is_none() {
            *e.per.entry(principal.to_owned()).or_insert(0) += 1;
        }
        e.next_expiry = e.next_expiry.min(until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(total: usize, per_principal: usize) -> InProcessReplay {
        InProcessReplay::new(
            Capacity {
                total,
                per_principal,
            },
            Arc::default(),
        )
    }

    #[test]
    fn replayed_ids_are_refused_until_they_expire() {
        let c = cache(10, 10);
        assert_eq!(c.consume_now("sa", "a", 100, 0), Ok(()));
        assert_eq!(
            c.consume_now("sa", "a", 100, 50),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            c.consume_now("sa", "a", 100, 100),
            Err(ReplayError::Replayed),
            "kept until `until` inclusive"
        );
        assert_eq!(
            c.consume_now("other", "a", 100, 50),
            Ok(()),
            "keyed by principal"
        );
        assert_eq!(
            c.consume_now("sa", "a", 200, 101),
            Ok(()),
            "after `until` it is gone"
        );
    }

    #[test]
    fn a_flood_never_evicts_a_live_entry() {
        let c = cache(100, 100);
        assert_eq!(c.consume_now("sa", "live", 1_000, 0), Ok(()));
        let mut refused = 0;
        for i in 0..10_000 {
            if c.consume_now("attacker", &format!("j{i}"), 1_000, 1) == Err(ReplayError::Full) {
                refused += 1;
            }
        }
        assert_eq!(refused, 10_000 - 99);
        assert_eq!(c.refusals(), 10_000 - 99);
        // The live assertion is still remembered: its replay is refused.
        assert_eq!(
            c.consume_now("sa", "live", 1_000, 2),
            Err(ReplayError::Replayed)
        );
        // Twin: once the flood's entries expire, new ids are accepted again.
        assert_eq!(c.consume_now("sa", "new", 2_000, 1_001), Ok(()));
    }

    #[test]
    fn one_principal_cannot_take_anothers_share() {
        let c = cache(10, 3);
        for i in 0..3 {
            assert_eq!(c.consume_now("a", &format!("{i}"), 100, 0), Ok(()));
        }
        for i in 3..20 {
            assert_eq!(
                c.consume_now("a", &format!("{i}"), 100, 0),
                Err(ReplayError::ShareFull)
            );
        }
        // b and c still have theirs; the whole cache still bounds them all.
        for p in ["b", "c"] {
            for i in 0..3 {
                assert_eq!(c.consume_now(p, &format!("{i}"), 100, 0), Ok(()));
            }
        }
        assert_eq!(c.consume_now("d", "0", 100, 0), Ok(()));
        assert_eq!(c.consume_now("e", "0", 100, 0), Err(ReplayError::Full));
        assert_eq!(c.refusals(), 18);
        // A refusal for a full share is not a replay: b's ids are still remembered…
        assert_eq!(c.consume_now("b", "0", 300, 50), Err(ReplayError::Replayed));
        // …and once a's entries expire, its share is free again.
        assert_eq!(c.consume_now("a", "new", 300, 101), Ok(()));
    }

    #[test]
    fn an_expired_entry_replaced_is_counted_once() {
        let c = cache(10, 1);
        assert_eq!(c.consume_now("a", "x", 10, 0), Ok(()));
        assert_eq!(c.consume_now("a", "x", 30, 20), Ok(()));
        assert_eq!(c.consume_now("a", "y", 40, 21), Err(ReplayError::ShareFull));
        assert_eq!(c.consume_now("a", "y", 40, 31), Ok(()));
    }

    #[test]
    fn saved_entries_come_back_and_expired_ones_do_not() {
        let c = cache(10, 10);
        assert_eq!(c.consume_now("sa", "live", 100, 0), Ok(()));
        assert_eq!(c.consume_now("sa", "old", 10, 0), Ok(()));
        let saved = c.seal(20);
        assert_eq!(saved.len(), 1, "only live entries are saved");
        assert_eq!(
            c.consume_now("sa", "after", 100, 21),
            Err(ReplayError::Unavailable),
            "a sealed cache spends nothing more"
        );
        let again = cache(10, 10);
        again.restore(saved, 30);
        assert_eq!(
            again.consume_now("sa", "live", 100, 40),
            Err(ReplayError::Replayed)
        );
        // Twin: an id that was not saved is new.
        assert_eq!(again.consume_now("sa", "old", 100, 40), Ok(()));
        // Restored into a smaller cache, every live id is kept: new ones wait.
        let small = cache(1, 1);
        small.restore(
            (0..3)
                .map(|i| Entry {
                    principal: "sa".into(),
                    jti: format!("j{i}"),
                    until: 100,
                })
                .collect(),
            0,
        );
        assert_eq!(
            small.consume_now("sa", "j2", 100, 1),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            small.consume_now("sa", "new", 100, 1),
            Err(ReplayError::ShareFull)
        );
        assert_eq!(small.consume_now("sa", "new", 200, 101), Ok(()));
    }

    #[test]
    fn ids_issued_before_a_loss_are_refused_without_being_recorded() {
        let losses = Arc::new(Losses::default());
        let c = InProcessReplay::new(
            Capacity {
                total: 10,
                per_principal: 10,
            },
            losses.clone(),
        );
        losses.raise(1_000);
        let spend = |jti, issued| Spend {
            principal: "sa",
            jti,
            issued,
            leeway: 60,
            skew: 5,
            until: 2_000,
            now: 1_001,
        };
        let consume = |s| futures_util::FutureExt::now_or_never(c.consume(s)).unwrap();
        assert_eq!(consume(spend("a", 1_059)), Err(ReplayError::BeforeLoss));
        // Twin: issued at loss + leeway (the skew is for replicas only).
        assert_eq!(consume(spend("b", 1_060)), Ok(()));
        assert_eq!(consume(spend("b", 1_060)), Err(ReplayError::Replayed));
    }
}
