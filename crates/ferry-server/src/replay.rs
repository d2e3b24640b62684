//! Single-use assertion ids (RFC 7523 §3 item 7). Each `jti` is kept, keyed by its issuer,
//! until its `exp`; an entry is never evicted before then, so an attacker flooding fresh
//! assertions cannot push a live one out and replay it. When full, the cache first drops
//! expired entries; if none can go, it refuses the new assertion (and counts the
//! refusal). Size it at least at (assertion rate) × (longest assertion lifetime).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::redis::Reply;

/// Why an assertion id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before and not yet expired.
    Replayed,
    /// The cache is full of live entries.
    Full,
    /// The shared cache cannot be reached (and the configuration fails closed).
    Unavailable,
}

/// What [`ReplayCache::consume`] returns.
pub type Consume<'a> = Pin<Box<dyn Future<Output = Result<(), ReplayError>> + Send + 'a>>;

/// The replay cache interface: in process, or shared through Redis.
pub trait ReplayCache: Send + Sync + std::fmt::Debug {
    /// Records `(issuer, jti)` until `exp`; an error if it was already recorded or if it
    /// cannot be recorded.
    fn consume<'a>(&'a self, issuer: &'a str, jti: &'a str, exp: i64, now: i64) -> Consume<'a>;
    /// Refusals because the cache was full.
    fn refusals(&self) -> u64;
    /// Times the shared backend could not be reached (0 for the in-process cache).
    fn backend_errors(&self) -> u64 {
        0
    }
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
    fn consume<'a>(&'a self, issuer: &'a str, jti: &'a str, exp: i64, now: i64) -> Consume<'a> {
        let r = self.consume_now(issuer, jti, exp, now);
        Box::pin(std::future::ready(r))
    }

    fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl InProcessReplay {
    fn consume_now(&self, issuer: &str, jti: &str, exp: i64, now: i64) -> Result<(), ReplayError> {
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
}

/// A replay cache shared by every replica through Redis: one `SET key 1 NX PX ttl` per
/// assertion, the key a SHA-256 of issuer and `jti` (bounded length, nothing echoed).
/// One connection, reconnected on error; each command bounded by the configured
/// timeout. When Redis cannot be reached the assertion is refused (`503`) unless the
/// configuration says `fail_open`, and either way the failure is counted
/// (`ferry_replay_backend_errors_total`) and logged.
#[derive(Debug)]
pub struct RedisReplay {
    redis: crate::redis::Redis,
    errors: AtomicU64,
}

impl RedisReplay {
    /// A cache for `config`; connects on first use.
    pub fn new(config: ferry_core::config::RedisReplay) -> Self {
        Self {
            redis: crate::redis::Redis::new(config),
            errors: AtomicU64::new(0),
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
}

impl ReplayCache for RedisReplay {
    fn consume<'a>(&'a self, issuer: &'a str, jti: &'a str, exp: i64, now: i64) -> Consume<'a> {
        Box::pin(async move {
            // Kept until `exp` inclusive, like the in-process cache.
            let ttl_ms = u64::try_from(exp.saturating_sub(now).max(0) + 1)
                .unwrap_or(1)
                .saturating_mul(1000);
            let key = format!(
                "ferry:jti:{}",
                crate::fingerprint(format!("{issuer}\0{jti}").as_bytes())
            );
            match self.set_nx(&key, ttl_ms).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(ReplayError::Replayed),
                Err(e) => self.unreachable(&e),
            }
        })
    }

    fn refusals(&self) -> u64 {
        0
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

    #[test]
    fn replayed_ids_are_refused_until_they_expire() {
        let c = InProcessReplay::new(10);
        assert_eq!(c.consume_now("sa", "a", 100, 0), Ok(()));
        assert_eq!(
            c.consume_now("sa", "a", 100, 50),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            c.consume_now("other", "a", 100, 50),
            Ok(()),
            "keyed by issuer"
        );
        assert_eq!(
            c.consume_now("sa", "a", 200, 101),
            Ok(()),
            "after exp it is gone"
        );
    }

    #[test]
    fn a_flood_never_evicts_a_live_entry() {
        let c = InProcessReplay::new(100);
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
}
