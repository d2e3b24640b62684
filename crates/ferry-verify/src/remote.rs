//! An issuer's key set fetched over HTTP and cached, built so that an issuer's rotation
//! is followed without restart and a flood of bad tokens cannot turn into a flood of
//! fetches.
//!
//! | event | behaviour |
//! |---|---|
//! | fresh keys | served from memory; past 80 % of their TTL a background refresh starts |
//! | TTL | `Cache-Control: max-age` clamped to `[min_ttl, max_ttl]`; `default_ttl` without it |
//! | cold cache, many requests | one fetch (single-flight); the others wait for it |
//! | unknown `kid` | one forced refetch per `refetch_interval`, whoever asks; the rest are told no |
//! | issuer down, keys expired | the old keys keep verifying for `max_staleness` (refreshed in the background) |
//! | issuer down, no usable keys | `Unavailable` |
//! | any fetch failed (500, refused, timed out, bad body) | no fetch of any kind — background refresh, cold fetch, unknown-`kid` refetch — for `error_ttl`, whatever the request rate and whether stale keys are being served |
//!
//! At most one fetch runs at a time (single-flight): a request that finds one in flight
//! either waits for its result (no usable keys) or is served the keys at hand (a
//! background refresh). So a failing issuer sees at most one fetch per `error_ttl` (plus
//! the one that was in flight when it started failing).
//!
//! Fetches run in spawned tasks: a client that disconnects mid-request does not cancel
//! the fetch others are waiting for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;
use serde_json::Value;

use crate::alg::Algorithm;
use crate::fetch::{Bearer, get};
use crate::jwks::KeySet;
pub use crate::keys_error::KeysError;
use crate::net::Http;
use crate::time::MonoTime;

/// Where the keys are found.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// OIDC discovery: `<issuer>/.well-known/openid-configuration` (or another document
    /// URL), whose `issuer` must equal `issuer` exactly and whose `jwks_uri` is fetched.
    Discovery {
        /// The exact issuer the document must name.
        issuer: String,
        /// The discovery document's URL.
        url: Url,
    },
    /// A JWKS URL given directly.
    Jwks(Url),
    /// A SAML identity provider's metadata: the signing certificates of `entity_id`.
    #[cfg(feature = "saml")]
    SamlMetadata {
        /// The identity provider's entity id.
        entity_id: String,
        /// The metadata URL.
        url: Url,
    },
}

/// Cache timing.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Shortest cache lifetime, whatever the issuer says.
    pub min_ttl: Duration,
    /// Longest cache lifetime.
    pub max_ttl: Duration,
    /// Lifetime when the issuer sends no `max-age`.
    pub default_ttl: Duration,
    /// At most one forced refetch for an unknown `kid` per this interval.
    pub refetch_interval: Duration,
    /// How long expired keys keep verifying while the issuer cannot be reached.
    pub max_staleness: Duration,
    /// How long a failed fetch is remembered before another is tried.
    pub error_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(86_400),
            default_ttl: Duration::from_secs(3_600),
            refetch_interval: Duration::from_secs(300),
            max_staleness: Duration::from_secs(86_400),
            error_ttl: Duration::from_secs(30),
        }
    }
}

/// The keys could not be had: why the last fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keys unavailable: {0}")]
pub struct Unavailable(pub KeysError);

#[derive(Debug, Default)]
struct Counters {
    fetches: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    refetches: AtomicU64,
    refetches_suppressed: AtomicU64,
    errors: AtomicU64,
    stale_served: AtomicU64,
    /// Fetches that ended, either way.
    ended: AtomicU64,
}

/// A snapshot of a key cache's counters, for metrics and `/readyz`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CacheStats {
    /// Fetches started (discovery + JWKS count as one).
    pub fetches: u64,
    /// Requests served from fresh keys.
    pub hits: u64,
    /// Requests that found no fresh keys.
    pub misses: u64,
    /// Forced refetches for an unknown `kid`.
    pub refetches: u64,
    /// Forced refetches refused because one ran within the interval.
    pub refetches_suppressed: u64,
    /// Failed fetches.
    pub errors: u64,
    /// Requests served from expired keys while the issuer was unreachable.
    pub stale_served: u64,
    /// Seconds the served keys are past their expiry (0 when fresh or none).
    pub staleness_seconds: u64,
    /// Whether keys are held.
    pub has_keys: bool,
    /// Whether keys are held that may still verify: fresh, or stale within
    /// `max_staleness`.
    pub usable: bool,
    /// Whether a fetch is under way.
    pub fetching: bool,
    /// The last fetch error, if the last fetch failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    refresh_at: Duration,
    expires: Duration,
    stale_until: Duration,
    generation: u64,
    last_error: Option<(Duration, KeysError)>,
    last_forced: Option<Duration>,
}

/// A cached remote key set.
#[derive(Debug)]
pub struct RemoteKeys {
    name: String,
    endpoint: Endpoint,
    algorithms: Vec<Algorithm>,
    http: Http,
    bearer: Option<Bearer>,
    settings: CacheSettings,
    time: Arc<dyn MonoTime>,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    counters: Counters,
}

impl RemoteKeys {
    /// A cold cache. `name` identifies it in logs (the provider id).
    pub fn new(
        name: impl Into<String>,
        endpoint: Endpoint,
        algorithms: Vec<Algorithm>,
        http: Http,
        bearer: Option<Bearer>,
        settings: CacheSettings,
        time: Arc<dyn MonoTime>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            endpoint,
            algorithms,
            http,
            bearer,
            settings,
            time,
            state: RwLock::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the last fetch failed less than `error_ttl` ago.
    fn error_recent(&self, s: &State, now: Duration) -> bool {
        s.last_error
            .as_ref()
            .is_some_and(|(at, _)| now < *at + self.settings.error_ttl)
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The current keys: fresh, or stale within the staleness bound, or fetched now.
    pub async fn keys(self: &Arc<Self>) -> Result<Arc<KeySet>, Unavailable> {
        let now = self.time.now();
        let (keys, generation, refresh_due, fresh, usable, error_recent, last_error) = {
            let s = self.read();
            (
                s.keys.clone(),
                s.generation,
                now >= s.refresh_at,
                now < s.expires,
                now < s.stale_until,
                self.error_recent(&s, now),
                s.last_error.as_ref().map(|(_, e)| e.clone()),
            )
        };
        if let Some(keys) = keys {
            if fresh {
                Self::bump(&self.counters.hits);
                // Refreshing ahead of expiry is an optimisation: never worth a fetch
                // while the issuer's last failure is remembered.
                if refresh_due && !error_recent {
                    self.refresh_in_background(generation);
                }
                return Ok(keys);
            }
            if usable {
                // Expired but within the staleness bound: serve, and revalidate in the
                // background unless the issuer just failed.
                Self::bump(&self.counters.misses);
                Self::bump(&self.counters.stale_served);
                if !error_recent {
                    self.refresh_in_background(generation);
                }
                return Ok(keys);
            }
        }
        Self::bump(&self.counters.misses);
        if error_recent {
            return Err(Unavailable(last_error.unwrap_or(KeysError::NoKeys)));
        }
        self.fetch(generation).await.map_err(Unavailable)
    }

    /// Forces one refetch because a token names a `kid` the cached set lacks. At most
    /// one per `refetch_interval`, however many ask; `None` when suppressed or failed.
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        let now = self.time.now();
        let generation = {
            let mut s = self.write();
            if self.error_recent(&s, now) {
                // The issuer just failed: asking again now would only add load. The
                // refetch slot is not spent, so the first request after error_ttl may.
                Self::bump(&self.counters.refetches_suppressed);
                return None;
            }
            if s.last_forced
                .is_some_and(|t| now < t + self.settings.refetch_interval)
            {
                Self::bump(&self.counters.refetches_suppressed);
                return None;
            }
            s.last_forced = Some(now);
            s.generation
        };
        Self::bump(&self.counters.refetches);
        self.fetch(generation).await.ok()
    }

    /// The counters and state, for metrics.
    pub fn stats(&self) -> CacheStats {
        let now = self.time.now();
        let s = self.read();
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            fetches: load(&c.fetches),
            hits: load(&c.hits),
            misses: load(&c.misses),
            refetches: load(&c.refetches),
            refetches_suppressed: load(&c.refetches_suppressed),
            errors: load(&c.errors),
            stale_served: load(&c.stale_served),
            staleness_seconds: if s.keys.is_some() {
                now.saturating_sub(s.expires).as_secs()
            } else {
                0
            },
            has_keys: s.keys.is_some(),
            usable: s.keys.is_some() && now < s.stale_until,
            fetching: load(&c.fetches) > load(&c.ended),
            last_error: s.last_error.as_ref().map(|(_, e)| e.to_string()),
        }
    }

    fn refresh_in_background(self: &Arc<Self>, generation: u64) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.fetch_serialised(generation).await;
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches unless another fetch completed since `seen` (single-flight), in a task of
    /// its own so a cancelled caller does not cancel it.
    async fn fetch(self: &Arc<Self>, seen: u64) -> Result<Arc<KeySet>, KeysError> {
        let this = self.clone();
        match tokio::spawn(async move { this.fetch_serialised(seen).await }).await {
            Ok(r) => r,
            Err(e) => Err(KeysError::Task(e.to_string())),
        }
    }

    async fn fetch_serialised(&self, seen: u64) -> Result<Arc<KeySet>, KeysError> {
        let _guard = self.fetch_lock.lock().await;
        {
            let s = self.read();
            if s.generation != seen {
                // Someone fetched while we waited: take their result.
                return match (&s.keys, &s.last_error) {
                    (_, Some((_, e))) => Err(e.clone()),
                    (Some(k), None) => Ok(k.clone()),
                    (None, None) => Err(KeysError::NoKeys),
                };
            }
            // The one gate every fetch passes: a failure is remembered for error_ttl,
            // whichever path (refresh, cold fetch, unknown kid) asks.
            if let Some((_, e)) = s
                .last_error
                .as_ref()
                .filter(|_| self.error_recent(&s, self.time.now()))
            {
                return Err(e.clone());
            }
        }
        Self::bump(&self.counters.fetches);
        let result = {
            use tracing::Instrument as _;
            self.download()
                .instrument(tracing::info_span!("issuer_key_fetch", provider = %self.name))
                .await
        };
        let now = self.time.now();
        let mut s = self.write();
        s.generation += 1;
        Self::bump(&self.counters.ended);
        match result {
            Ok((set, max_age)) => {
                let ttl = max_age
                    .map(Duration::from_secs)
                    .unwrap_or(self.settings.default_ttl)
                    .clamp(self.settings.min_ttl, self.settings.max_ttl);
                let set = Arc::new(set);
                s.keys = Some(set.clone());
                s.refresh_at = now + ttl.mul_f64(0.8);
                s.expires = now + ttl;
                s.stale_until = now + ttl + self.settings.max_staleness;
                s.last_error = None;
                tracing::debug!(provider = %self.name, kids = ?set.kids(), ttl_s = ttl.as_secs(), "fetched issuer keys");
                Ok(set)
            }
            Err(e) => {
                Self::bump(&self.counters.errors);
                tracing::warn!(provider = %self.name, error = %e, "fetching issuer keys failed");
                s.last_error = Some((now, e.clone()));
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<(KeySet, Option<u64>), KeysError> {
        let jwks_url = match &self.endpoint {
            Endpoint::Jwks(u) => u.clone(),
            #[cfg(feature = "saml")]
            Endpoint::SamlMetadata { entity_id, url } => {
                let fetched = get(&self.http, url, self.bearer.as_ref())
                    .await
                    .map_err(|e| KeysError::fetch(url, e))?;
                let certificates = crate::saml::from_metadata(&fetched.body, entity_id)
                    .map_err(|e| KeysError::Metadata(e.to_string()))?;
                return Ok((KeySet::from_certificates(certificates), fetched.max_age));
            }
            Endpoint::Discovery { issuer, url } => {
                let doc = get(&self.http, url, self.bearer.as_ref())
                    .await
                    .map_err(|e| KeysError::fetch(url, e))?;
                let doc: Value =
                    serde_json::from_slice(&doc.body).map_err(|_| KeysError::DiscoveryNotJson)?;
                // OpenID Connect Discovery §4.3: the issuer must be identical.
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
                    return Err(KeysError::DiscoveryIssuer);
                }
                let uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or(KeysError::NoJwksUri)?;
                let uri = Url::parse(uri).map_err(|_| KeysError::JwksUriNotUrl)?;
                self.http
                    .policy()
                    .check_url(&uri)
                    .map_err(KeysError::JwksUriRefused)?;
                uri
            }
        };
        let fetched = get(&self.http, &jwks_url, self.bearer.as_ref())
            .await
            .map_err(|e| KeysError::fetch(&jwks_url, e))?;
        let (set, warnings) = KeySet::from_jwks(&fetched.body, &self.algorithms)?;
        for w in warnings {
            tracing::debug!(provider = %self.name, "{w}");
        }
        if set.is_empty() {
            return Err(KeysError::NoUsableKey);
        }
        Ok((set, fetched.max_age))
    }
}
