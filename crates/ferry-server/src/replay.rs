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

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::redis::Reply;

/// Why an id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before and not yet expired.
    Replayed,
    /// The cache is full of live entries.
    Full,
    /// The principal holds its whole share of live entries.
    ShareFull,
    /// The shared cache cannot be reached (and the configuration fails closed).
    Unavailable,
}

/// What [`ReplayCache::consume`] returns.
pub type Consume<'a> = Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>>;

/// The replay cache interface: in process, or shared through Redis.
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `(principal, jti)` until `until` (inclusive); an error if it was already
    /// recorded or if it cannot be recorded.
    fn consume<'a>(&'a self, principal: &'a str, jti: &'a str, until: i64, now: i64)
    -> Consume<'a>;
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

/// An in-process replay cache.
#[derive(Debug)]
pub struct InProcessReplay {
    inner: Mutex<Entries>,
    capacity: Capacity,
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
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
    /// A cache of `capacity`.
    pub fn new(capacity: Capacity) -> Self {
        Self {
            inner: Mutex::new(Entries {
                next_expiry: i64::MAX,
                ..Entries::default()
            }),
            capacity,
            refused: AtomicU64::new(0),
        }
    }
}

impl ReplayCache for InProcessReplay {
    fn consume<'a>(
        &'a self,
        principal: &'a str,
        jti: &'a str,
        until: i64,
        now: i64,
    ) -> Consume<'a> {
        let r = self.consume_now(principal, jti, until, now);
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
        let mut e = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            self.refused.fetch_add(1, Ordering::Relaxed);
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

/// A replay cache shared by every replica through Redis: each id is a key, a SHA-256 of
/// principal and `jti` (bounded length, nothing echoed), set with `NX` and expiring when
/// the id can no longer be accepted. With shares, one script also keeps the principal's
/// index (a sorted set of its live keys scored by their expiry in Redis' own clock, so
/// replicas' clocks do not matter), and refuses the id when the principal holds its
/// share — the same rule as the in-process cache. One connection, reconnected on
/// error; each command bounded by the configured timeout. When Redis cannot be reached
/// the id is refused (`503`) unless the configuration says `fail_open`, and either way
/// the failure is counted (`ferry_replay_backend_errors_total`) and logged.
#[derive(Debug)]
pub struct RedisReplay {
    redis: crate::redis::Redis,
    share: Option<usize>,
    errors: AtomicU64,
    refused: AtomicU64,
}

/// Records an id unless it is live or its principal holds its share: 1 recorded, 0 seen,
/// 2 share full. KEYS: the id's key, the principal's index; ARGV: ttl (ms), share.
const CONSUME_SHARED: &[u8] = br"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 2 end
local ttl = tonumber(ARGV[1])
redis.call('SET', KEYS[1], '1', 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
";

impl RedisReplay {
    /// A cache for `config`, each principal holding at most `share` live ids (`None`:
    /// no shares, as for DPoP proofs, whose keys anyone can make); connects on first use.
    pub fn new(config: ferry_core::config::RedisReplay, share: Option<usize>) -> Self {
        Self {
            redis: crate::redis::Redis::new(config),
            share,
            errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    async fn set_nx(&self, key: &str, ttl_ms: u64) -> Result<bool, String> {
        // Had a lost command run before the client's retry, the retry finds the key and
        // refuses the assertion: a failure on the safe side.
        let ttl = ttl_ms.to_string();
        match self
            .redis
            .call(&[b"SET", key.as_bytes(), b"1", b"NX", b"PX", ttl.as_bytes()])
            .await?
        {
            Reply::Simple(ok) if ok == b"OK" => Ok(true),
            Reply::Bulk(None) => Ok(false),
            _ => Err("unexpected reply to SET".into()),
        }
    }

    async fn consume_shared(
        &self,
        key: &str,
        index: &str,
        ttl_ms: u64,
        share: usize,
    ) -> Result<Result<(), ReplayError>, String> {
        let (ttl, share) = (ttl_ms.to_string(), share.to_string());
        let reply = self
            .redis
            .call(&[
                b"EVAL",
                CONSUME_SHARED,
                b"2",
                key.as_bytes(),
                index.as_bytes(),
                ttl.as_bytes(),
                share.as_bytes(),
            ])
            .await?;
        match reply {
            Reply::Int(1) => Ok(Ok(())),
            Reply::Int(0) => Ok(Err(ReplayError::Replayed)),
            Reply::Int(2) => Ok(Err(ReplayError::ShareFull)),
            _ => Err("unexpected reply to EVAL".into()),
        }
    }
}

impl ReplayCache for RedisReplay {
    fn consume<'a>(
        &'a self,
        principal: &'a str,
        jti: &'a str,
        until: i64,
        now: i64,
    ) -> Consume<'a> {
        Box::pin(async move {
            // Kept until `until` inclusive, like the in-process cache.
            let ttl_ms = u64::try_from(until.saturating_sub(now).max(0) + 1)
                .unwrap_or(1)
                .saturating_mul(1000);
            let key = format!(
                "ferry:jti:{}",
                crate::fingerprint(format!("{principal}\0{jti}").as_bytes())
            );
            let result = match self.share {
                None => self.set_nx(&key, ttl_ms).await.map(|fresh| {
                    if fresh {
                        Ok(())
                    } else {
                        Err(ReplayError::Replayed)
                    }
                }),
                Some(share) => {
                    let index = format!("ferry:jtis:{}", crate::fingerprint(principal.as_bytes()));
                    self.consume_shared(&key, &index, ttl_ms, share).await
                }
            };
            match result {
                Ok(Err(ReplayError::ShareFull)) => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    Err(ReplayError::ShareFull)
                }
                Ok(r) => r,
                Err(e) => self.unreachable(&e),
            }
        })
    }

    fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn backend_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl RedisReplay {
    fn unreachable(&self, why: &str) -> Result<(), ReplayError> {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.redis.config().fail_open {
            tracing::error!(addr = %self.redis.config().addr, error = %why,
                "replay cache (Redis) unreachable: accepting the assertion without a replay check (fail_open)");
            Ok(())
        } else {
            tracing::error!(addr = %self.redis.config().addr, error = %why,
                "replay cache (Redis) unreachable: refusing the assertion (set replay.fail_open to accept)");
            Err(ReplayError::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(total: usize, per_principal: usize) -> InProcessReplay {
        InProcessReplay::new(Capacity {
            total,
            per_principal,
        })
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
}
