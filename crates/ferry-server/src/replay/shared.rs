//! The replay cache shared by every replica through Redis, and the epoch marker that
//! tells it when Redis lost what it held.
//!
//! Each id is a key, a SHA-256 of principal and `jti` (bounded length, nothing echoed),
//! expiring when the id can no longer be accepted. With shares, the same script keeps
//! the principal's index (a sorted set of its live keys scored by their expiry in
//! Redis' own clock, so replicas' clocks do not matter) and refuses the id when the
//! principal holds its share — the same rule as the in-process cache.
//!
//! **Epoch.** Redis also holds [`EPOCH_KEY`] = `<random id>:<ms>`, the moment (Redis'
//! clock) the marker was made, which is when the state it vouches for began. Each
//! replica remembers the marker it last saw; every write runs one script that checks
//! the marker atomically with the write. A marker that is gone (Redis restarted without
//! persistence, a failover to an empty replica, `FLUSHALL`) is remade by the first
//! replica to notice, with the current time: the loss. A marker that differs from the
//! one a replica remembers was remade by another replica: this one adopts its loss
//! time, so every replica refuses from the same floor; a marker older than the one
//! remembered (a failover to a replica holding an earlier epoch) is remade too. Either
//! way the write is not done; the id is checked against the new floor (issued before
//! loss + leeway + skew: refused until it expires) and, if still acceptable, written
//! in the new epoch. No write happens in an epoch the replica has not checked, so no
//! replica can accept an id it or another replica saw before the loss.
//!
//! A replica's first write finds the marker of the running deployment and adopts it.
//! If there is none, Redis alone cannot tell a brand-new deployment from an emptied one:
//! the durable revocation store can. Before its first write a replica records there that
//! the deployment's replay state has begun ([`crate::revocation::Revocations::mark_replay_epoch`]);
//! only when nothing had been recorded before may its script make a missing marker with
//! time 0 (a first start: nothing refused). Every id any replica ever accepted was
//! accepted after that record was durable, so a marker missing later is always a loss.
//! Without a durable store to ask (or when it cannot be reached) a missing marker counts
//! as a loss (refusing for one leeway what was issued before).
//!
//! One connection manager, reconnected on error; each call bounded by the configured
//! timeout. When Redis cannot be reached the id is refused (`503`) unless the
//! configuration says `fail_open`, and either way the failure is counted
//! (`ferry_replay_backend_errors_total`) and logged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::model::{Consume, Losses, ReplayCache, ReplayError, Spend};
use crate::redis::{Redis, RedisError, Reply};

/// How far ahead of this replica's clock a marker's time may be (seconds); beyond, it
/// counts as unreadable (a loss now).
const MAX_AHEAD_S: i64 = 60;

/// The Redis key of the epoch marker.
pub const EPOCH_KEY: &str = "ferry:replay:epoch";

/// Checks the epoch, then records an id unless it is live or its principal holds its
/// share. KEYS: marker, the id's key, the principal's index. ARGV: the marker this
/// replica knows ('' for none), a fresh marker id, ttl (ms), share (0: no shares), '1'
/// when the deployment never began an epoch (a missing marker is then made with time 0:
/// nothing was lost, nothing is refused).
/// Returns {1} recorded, {0} seen, {2} share full, or {3, marker, made} when the marker
/// is not the one known (made = 1 when this call remade it): nothing was written.
const CONSUME: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('GET', KEYS[1])
if m then
  local made_at = tonumber(string.match(m, '^%w+:(%d+)$'))
  -- A marker from the future (written by hand, or by a clock far ahead) is no marker:
  -- trusting its time would refuse everything until then.
  if made_at and made_at > now + 60000 then m = false end
end
if m ~= ARGV[1] then
  local remake = not m
  if m and ARGV[1] ~= '' then
    local seen = tonumber(string.match(m, '^%w+:(%d+)$'))
    local known = tonumber(string.match(ARGV[1], '^%w+:(%d+)$'))
    if not seen or not known or seen <= known then remake = true end
  end
  if m and not string.match(m, '^%w+:%d+$') then remake = true end
  if remake then
    if not m and ARGV[5] == '1' then now = 0 end
    m = ARGV[2] .. ':' .. now
    redis.call('SET', KEYS[1], m)
    return {3, m, 1}
  end
  return {3, m, 0}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
local ttl = tonumber(ARGV[3])
local share = tonumber(ARGV[4])
if share > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= share then return {2} end
end
redis.call('SET', KEYS[2], '1', 'PX', ttl)
if share > 0 then
  redis.call('ZADD', KEYS[3], now + ttl, KEYS[2])
  if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
end
return {1}
";

/// The epoch a process knows, shared by its assertion and proof caches.
#[derive(Debug, Default)]
pub struct Epoch {
    known: Mutex<Option<String>>,
    losses: Arc<Losses>,
    /// Where the deployment records that its replay state began.
    ledger: Option<Arc<crate::revocation::Revocations>>,
    /// Whether this process recorded the beginning first (asked once).
    first: tokio::sync::OnceCell<bool>,
    /// Whether Redis' persistence and eviction policy were looked at (once, after the
    /// first write).
    persistence_checked: AtomicBool,
}

impl Epoch {
    /// An epoch recording its losses in `losses`.
    pub fn new(losses: Arc<Losses>) -> Self {
        Self::with_ledger(losses, None)
    }

    /// An epoch that asks `ledger` whether the deployment's replay state ever began.
    pub fn with_ledger(
        losses: Arc<Losses>,
        ledger: Option<Arc<crate::revocation::Revocations>>,
    ) -> Self {
        Self {
            known: Mutex::new(None),
            losses,
            ledger,
            first: tokio::sync::OnceCell::new(),
            persistence_checked: AtomicBool::new(false),
        }
    }

    /// Whether a missing marker may be made as the deployment's first: only before this
    /// process adopted any epoch, and only when it recorded the beginning itself.
    async fn first_start(&self, was: Option<&str>) -> bool {
        let Some(ledger) = self.ledger.as_ref().filter(|_| was.is_none()) else {
            return false;
        };
        *self
            .first
            .get_or_init(|| async {
                match ledger.mark_replay_epoch().await {
                    Ok(before) => !before,
                    Err(e) => {
                        tracing::warn!(target: "ferry", error = %e,
                            "could not record the replay epoch's beginning: a missing marker counts as a loss");
                        false
                    }
                }
            })
            .await
    }

    fn known(&self) -> Option<String> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes `marker` (`id:ms`) as the epoch in force; `was` is what the script was
    /// told, `made` whether it remade the marker, `now` this replica's time (the loss
    /// time should the marker's not be readable).
    fn adopt(&self, marker: &str, was: Option<&str>, made: bool, now: i64) {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.as_deref() == Some(marker) {
            return; // another request adopted it meanwhile
        }
        let first = was.is_none() && known.is_none();
        // Seconds, rounded up: an id issued within the loss' second may have been seen.
        // A time more than a minute ahead of this replica's clock is unreadable too (the
        // script already refuses markers ahead of Redis' clock): never a floor in the future.
        let at = marker
            .rsplit_once(':')
            .and_then(|(_, ms)| ms.parse::<i64>().ok())
            .map(|ms| ms.saturating_add(999).div_euclid(1000))
            .filter(|at| *at <= now.saturating_add(MAX_AHEAD_S))
            .unwrap_or(now.saturating_add(1));
        if first && made && at == 0 {
            // Made as the deployment's first (see `first_start`): nothing to refuse.
            *known = Some(marker.to_owned());
            drop(known);
            tracing::info!(target: "ferry", "replay state (Redis): began the deployment's first epoch");
            return;
        }
        // The floor rises before the marker is published: a request that reads the new
        // marker (and may then write in its epoch) also sees the new floor.
        if at > 0 {
            self.losses.raise(at);
        }
        *known = Some(marker.to_owned());
        drop(known);
        if first && !made {
            tracing::info!(target: "ferry", lost_at = at,
                "replay state (Redis): joined the epoch in force");
            return;
        }
        self.losses.count_one();
        tracing::warn!(target: "ferry", lost_at = at,
            "replay state (Redis) was lost (restarted without persistence, failed over to an empty replica, flushed, or new): refusing assertions and DPoP proofs issued before then plus the leeway until they expire");
    }
}

/// The shared cache; see the module documentation.
#[derive(Debug)]
pub struct RedisReplay {
    redis: Arc<Redis>,
    epoch: Arc<Epoch>,
    script: redis::Script,
    share: Option<usize>,
    errors: AtomicU64,
    refused: AtomicU64,
}

impl RedisReplay {
    /// A cache on `redis`, in `epoch`, each principal holding at most `share` live ids
    /// (`None`: no shares, as for DPoP proofs, whose keys anyone can make).
    pub fn new(redis: Arc<Redis>, epoch: Arc<Epoch>, share: Option<usize>) -> Self {
        Self {
            redis,
            epoch,
            script: redis::Script::new(CONSUME),
            share,
            errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// One run of the script: `Ok(Ok(result))`, or `Ok(Err(()))` when the epoch changed
    /// (adopted here; nothing written).
    async fn attempt(
        &self,
        was: Option<String>,
        key: &str,
        index: &str,
        ttl_ms: u64,
        now: i64,
    ) -> Result<Result<Result<(), ReplayError>, ()>, RedisError> {
        let fresh = {
            let mut b = [0u8; 12];
            let _ = aws_lc_rs::rand::fill(&mut b);
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        };
        let (ttl, share) = (ttl_ms.to_string(), self.share.unwrap_or(0).to_string());
        let first = if self.epoch.first_start(was.as_deref()).await {
            "1"
        } else {
            "0"
        };
        let reply = self
            .redis
            .script(
                &self.script,
                &[EPOCH_KEY, key, index],
                &[
                    was.as_deref().unwrap_or("").as_bytes(),
                    fresh.as_bytes(),
                    ttl.as_bytes(),
                    share.as_bytes(),
                    first.as_bytes(),
                ],
            )
            .await?;
        let items = reply.items();
        Ok(Ok(match items.as_slice() {
            [Reply::Int(1)] => Ok(()),
            [Reply::Int(0)] => Err(ReplayError::Replayed),
            [Reply::Int(2)] => Err(ReplayError::ShareFull),
            [Reply::Int(3), marker, Reply::Int(made)] => {
                let marker = marker
                    .text()
                    .ok_or(RedisError::Unexpected("unexpected epoch marker"))?;
                self.epoch.adopt(&marker, was.as_deref(), *made == 1, now);
                return Ok(Err(()));
            }
            _ => {
                return Err(RedisError::Unexpected(
                    "unexpected reply to the replay script",
                ));
            }
        }))
    }

    /// Warns once when Redis keeps its data only in memory (`appendonly no`): a restart
    /// then loses the replay state, which Ferry detects but pays for in refusals; and
    /// when its eviction policy is not `noeviction`, which can drop live ids unseen. A
    /// Redis that does not answer `INFO` (some managed ones) is not judged.
    async fn check_persistence(&self) {
        if self.epoch.persistence_checked.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(info) = self.redis.call(&[b"INFO", b"persistence"]).await else {
            return;
        };
        if info
            .text()
            .is_some_and(|t| t.lines().any(|l| l.trim() == "aof_enabled:0"))
        {
            tracing::warn!(target: "ferry", addr = %self.redis.config().addr,
                "Redis does not persist its replay state (appendonly no): a restart empties it, and Ferry then refuses every assertion and DPoP proof issued before until they expire; run production Redis with appendonly yes");
        }
        // Any eviction policy but noeviction may drop live ids under memory pressure
        // (volatile-* evicts exactly them: they expire, the marker does not), and a
        // dropped id is a replay the marker cannot see.
        let Ok(memory) = self.redis.call(&[b"INFO", b"memory"]).await else {
            return;
        };
        let policy = memory.text().and_then(|t| {
            t.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("maxmemory_policy:")
                    .map(str::to_owned)
            })
        });
        if let Some(policy) = policy.filter(|p| p != "noeviction") {
            tracing::warn!(target: "ferry", addr = %self.redis.config().addr, %policy,
                "Redis may evict live replay ids under memory pressure (maxmemory-policy is not noeviction): an evicted id can be replayed, and nothing detects it; run the replay Redis with maxmemory-policy noeviction");
        }
    }

    fn unreachable(&self, why: &dyn std::fmt::Display) -> Result<(), ReplayError> {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let addr = &self.redis.config().addr;
        if self.redis.config().fail_open {
            tracing::error!(%addr, error = %why,
                "replay cache (Redis) unreachable: accepting the assertion without a replay check (fail_open)");
            Ok(())
        } else {
            tracing::error!(%addr, error = %why,
                "replay cache (Redis) unreachable: refusing the assertion (set replay.fail_open to accept)");
            Err(ReplayError::Unavailable)
        }
    }
}

impl ReplayCache for RedisReplay {
    fn consume<'a>(&'a self, s: Spend<'a>) -> Consume<'a> {
        Box::pin(async move {
            // Kept until `until` inclusive, like the in-process cache.
            let ttl_ms = u64::try_from(s.until.saturating_sub(s.now).max(0) + 1)
                .unwrap_or(1)
                .saturating_mul(1000);
            let key = format!(
                "ferry:jti:{}",
                crate::ids::fingerprint(format!("{}\0{}", s.principal, s.jti).as_bytes())
            );
            let index = format!(
                "ferry:jtis:{}",
                crate::ids::fingerprint(s.principal.as_bytes())
            );
            let margin = s.leeway.saturating_add(s.skew);
            // The epoch changes at most once per call in practice; a marker flapping
            // faster than that is treated as an unreachable backend.
            for _ in 0..3 {
                // The marker first, then the floor (see `Epoch::adopt`): the script
                // writes only in the epoch whose floor was checked.
                let was = self.epoch.known();
                if self.epoch.losses.refuses(s.issued, margin) {
                    return Err(ReplayError::BeforeLoss);
                }
                match self.attempt(was, &key, &index, ttl_ms, s.now).await {
                    Ok(Ok(Err(ReplayError::ShareFull))) => {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        return Err(ReplayError::ShareFull);
                    }
                    Ok(Ok(r)) => {
                        self.check_persistence().await;
                        return r;
                    }
                    Ok(Err(())) => continue,
                    Err(e) => return self.unreachable(&e),
                }
            }
            self.unreachable(&"the epoch marker keeps changing")
        })
    }

    fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn backend_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_an_epoch_is_no_loss_and_a_changed_marker_is() {
        let losses = Arc::new(Losses::default());
        let e = Epoch::new(losses.clone());
        // First contact with the deployment's marker: its time is the floor, no loss.
        e.adopt("aa:1000000", None, false, 5_000);
        assert_eq!((losses.at(), losses.count()), (Some(1_000), 0));
        // The same marker again (another request adopted it): nothing.
        e.adopt("aa:1000000", Some("aa:1000000"), false, 5_000);
        assert_eq!(losses.count(), 0);
        // Remade by another replica: a loss, at its time (ms rounded up).
        e.adopt("bb:2000001", Some("aa:1000000"), false, 5_000);
        assert_eq!((losses.at(), losses.count()), (Some(2_001), 1));
        assert_eq!(e.known().as_deref(), Some("bb:2000001"));
        // An unreadable time counts from this replica's clock, never from far ahead.
        e.adopt(
            "cc:99999999999999999999999",
            Some("bb:2000001"),
            true,
            5_000,
        );
        assert_eq!((losses.at(), losses.count()), (Some(5_001), 2));
    }

    #[test]
    fn a_first_epoch_made_at_time_zero_refuses_nothing() {
        let losses = Arc::new(Losses::default());
        let e = Epoch::new(losses.clone());
        e.adopt("aa:0", None, true, 3_000);
        assert_eq!((losses.at(), losses.count()), (None, 0));
        assert_eq!(e.known().as_deref(), Some("aa:0"));
        // Twin: a replica joining that epoch refuses nothing either.
        let other = Arc::new(Losses::default());
        Epoch::new(other.clone()).adopt("aa:0", None, false, 3_000);
        assert_eq!((other.at(), other.count()), (None, 0));
        // And once known, its disappearance is a loss like any other.
        e.adopt("bb:4000000", Some("aa:0"), true, 4_000);
        assert_eq!((losses.at(), losses.count()), (Some(4_000), 1));
    }

    #[test]
    fn a_marker_from_the_future_is_a_loss_now_never_a_floor_in_the_future() {
        let losses = Arc::new(Losses::default());
        let e = Epoch::new(losses.clone());
        e.adopt("aa:1000000", None, false, 5_000);
        // Written by hand far ahead: counted from this replica's clock.
        e.adopt("zz:99999999999999", Some("aa:1000000"), false, 5_000);
        assert_eq!((losses.at(), losses.count()), (Some(5_001), 1));
        // Twin: a marker within the allowed minute ahead keeps its own time.
        e.adopt("bb:5060000", Some("zz:99999999999999"), false, 5_000);
        assert_eq!((losses.at(), losses.count()), (Some(5_060), 2));
    }

    #[test]
    fn no_marker_at_first_contact_is_a_loss() {
        let losses = Arc::new(Losses::default());
        let e = Epoch::new(losses.clone());
        e.adopt("aa:3000000", None, true, 3_000);
        assert_eq!((losses.at(), losses.count()), (Some(3_000), 1));
    }
}
