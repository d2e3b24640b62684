//! Rate limits and load shedding. Before verification, token requests are limited per
//! source address and globally, so a flood of junk tokens claiming a popular issuer is
//! stopped before it costs a signature check. A provider's bucket counts only tokens
//! that passed its condition, so neither junk claiming GitHub's issuer nor validly
//! signed tokens of another GitHub organisation can exhaust the bucket every pipeline of
//! yours shares; tokens the condition refuses are counted in a bucket of their own per
//! provider and tenant ([`TenantBuckets`]). Clients have buckets only when registered.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use ferry_core::config::Limits;

/// The limiters of one server.
#[derive(Debug)]
pub struct Limiters {
    per_source: DefaultKeyedRateLimiter<IpAddr>,
    global: DefaultDirectRateLimiter,
    per_provider: DefaultKeyedRateLimiter<String>,
    per_client: DefaultKeyedRateLimiter<String>,
    per_tenant: TenantBuckets,
    /// Requests served at once.
    pub concurrency: Semaphore,
    clock: DefaultClock,
}

fn quota(per_second: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_second.saturating_mul(2).max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// A refusal: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl Limiters {
    /// Limiters for `l` (each bucket bursts to twice its rate).
    pub fn new(l: &Limits) -> Self {
        Self {
            per_source: RateLimiter::keyed(quota(l.rate_per_source)),
            global: RateLimiter::direct(quota(l.rate_global)),
            per_provider: RateLimiter::keyed(quota(l.rate_per_provider)),
            per_client: RateLimiter::keyed(quota(l.rate_per_client)),
            per_tenant: TenantBuckets::new(quota(l.rate_per_provider), MAX_TENANTS),
            concurrency: Semaphore::new(l.concurrency),
            clock: DefaultClock::default(),
        }
    }

    fn retry(&self, not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> RetryAfter {
        RetryAfter(not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }

    /// Before verification: the source's bucket, then the global one.
    pub fn check_unverified(
        &self,
        source: Option<IpAddr>,
    ) -> Result<(), (&'static str, RetryAfter)> {
        // An IPv6 source counts as its /64, the smallest block one host is given.
        if let Some(ip) = source.map(crate::listener::cap::source_of) {
            self.per_source
                .check_key(&ip)
                .map_err(|n| ("source", self.retry(&n)))?;
        }
        self.global.check().map_err(|n| ("global", self.retry(&n)))
    }

    /// After the provider's condition refused a verified token: the bucket of that
    /// provider's tenant (the value of its `tenant_claim`).
    pub fn check_tenant(&self, provider: &str, tenant: &str) -> Result<(), RetryAfter> {
        self.per_tenant
            .check(provider, tenant)
            .map_err(|n| self.retry(&n))
    }

    /// After the provider's condition passed: the provider's bucket.
    pub fn check_provider(&self, provider: &str) -> Result<(), RetryAfter> {
        self.per_provider
            .check_key(&provider.to_owned())
            .map_err(|n| self.retry(&n))
    }

    /// After client authentication: the client's bucket.
    pub fn check_client(&self, client: &str) -> Result<(), RetryAfter> {
        self.per_client
            .check_key(&client.to_owned())
            .map_err(|n| self.retry(&n))
    }

    /// Drops the state of idle keys (called periodically).
    pub fn shrink(&self) {
        self.per_source.retain_recent();
        self.per_provider.retain_recent();
        self.per_client.retain_recent();
    }
}

/// Most tenant buckets kept; the least recently used goes first.
pub const MAX_TENANTS: usize = 10_000;

type Direct = DefaultDirectRateLimiter;

/// Buckets keyed by (provider, tenant) for tokens a provider's condition refused, at most
/// `capacity` of them: the tenant value comes from a token anyone with an account at a
/// shared issuer can mint, so the map is bounded and the least recently used bucket is
/// dropped to make room (a dropped bucket only starts full again).
#[derive(Debug)]
pub struct TenantBuckets {
    quota: Quota,
    capacity: usize,
    inner: Mutex<Lru>,
}

/// A map with a use order: `order` holds (key, stamp) per use; an entry whose stamp no
/// longer matches the map's was used again later and is skipped. `order` is compacted
/// when it grows past twice the map, so both stay bounded.
#[derive(Debug, Default)]
struct Lru {
    map: HashMap<String, (Direct, u64)>,
    order: VecDeque<(String, u64)>,
    stamp: u64,
}

impl TenantBuckets {
    /// Buckets of `quota`, at most `capacity` of them.
    pub fn new(quota: Quota, capacity: usize) -> Self {
        Self {
            quota,
            capacity: capacity.max(1),
            inner: Mutex::new(Lru::default()),
        }
    }

    /// Charges the bucket of (`provider`, `tenant`).
    fn check(
        &self,
        provider: &str,
        tenant: &str,
    ) -> Result<(), governor::NotUntil<governor::clock::QuantaInstant>> {
        // The key is bounded whatever the tenant value's length.
        let key = format!("{provider}\0{}", crate::ids::fingerprint(tenant.as_bytes()));
        let mut lru = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lru = &mut *lru;
        lru.stamp += 1;
        let stamp = lru.stamp;
        if !lru.map.contains_key(&key) {
            while lru.map.len() >= self.capacity {
                let Some((old, s)) = lru.order.pop_front() else {
                    break;
                };
                if lru.map.get(&old).is_some_and(|(_, st)| *st == s) {
                    lru.map.remove(&old);
                }
            }
            lru.map
                .insert(key.clone(), (RateLimiter::direct(self.quota), stamp));
        }
        let result = match lru.map.get_mut(&key) {
            Some((bucket, st)) => {
                *st = stamp;
                bucket.check()
            }
            None => Ok(()),
        };
        lru.order.push_back((key, stamp));
        if lru.order.len() > 2 * self.capacity {
            let map = &lru.map;
            lru.order
                .retain(|(k, s)| map.get(k).is_some_and(|(_, st)| st == s));
        }
        result
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_buckets_are_bounded_and_evict_the_least_recently_used() {
        let b = TenantBuckets::new(quota(1), 3);
        // Burst of two per tenant, then refused.
        assert!(b.check("gh", "a").is_ok());
        assert!(b.check("gh", "a").is_ok());
        assert!(b.check("gh", "a").is_err());
        // Another tenant (and the same value at another provider) has its own bucket.
        assert!(b.check("gh", "b").is_ok());
        assert!(b.check("k8s", "a").is_ok());
        // A flood of invented tenants never grows the map past its capacity…
        for i in 0..1_000 {
            let _ = b.check("gh", &format!("t{i}"));
            assert!(b.len() <= 3);
        }
        // …and the one in use stays while the others are evicted.
        let b = TenantBuckets::new(quota(1), 3);
        assert!(b.check("gh", "a").is_ok());
        assert!(b.check("gh", "a").is_ok());
        for i in 0..100 {
            let _ = b.check("gh", &format!("t{i}"));
            assert!(b.check("gh", "a").is_err(), "still drained at {i}");
        }
        assert!(b.inner.lock().unwrap().order.len() <= 6);
    }
}
