//! Rate limits and load shedding. Before verification, token requests are limited per
//! source address and globally, so a flood of junk tokens claiming a popular issuer is
//! stopped before it costs a signature check; a provider's bucket counts only tokens
//! whose signature verified, so junk claiming GitHub's issuer cannot exhaust the bucket
//! every GitHub pipeline shares.

use std::net::IpAddr;
use std::num::NonZeroU32;

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
        if let Some(ip) = source {
            self.per_source
                .check_key(&ip)
                .map_err(|n| ("source", self.retry(&n)))?;
        }
        self.global.check().map_err(|n| ("global", self.retry(&n)))
    }

    /// After the signature verified: the provider's bucket.
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
