//! Prometheus metrics, in one registry owned by the server (no global recorder). Counts
//! and latencies are recorded as requests happen; the issuer key caches and the signing
//! key ring are read at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `route`, `method`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route.
    pub route: String,
    /// The HTTP method: `GET`, `POST`, `HEAD` or `OTHER` (never a client's own name).
    pub method: &'static str,
    /// The status code.
    pub status: u16,
}

/// `route`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route.
    pub route: String,
}

/// One exchange decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    /// Provider id, or `none` before one was chosen.
    pub provider: String,
    /// The first requested audience when Ferry serves it, else `unknown`.
    pub audience: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The error code of a denial, empty for an allow.
    pub error: String,
}

/// `provider`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Provider id.
    pub provider: String,
}

/// `scope` of a rate limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `source`, `global`, `provider`, `concurrency`, `timeout`, `headers`,
    /// `header_timeout`, `connections`.
    pub limit: String,
}

/// Every `limit` Ferry counts refusals under: each series exists from the start at 0, so
/// `rate()` and `increase()` see the first refusal and the page always carries the family
/// (a family without series is not written at all).
pub const LIMITS: [&str; 11] = [
    "source",
    "global",
    "provider",
    "client",
    "tenant",
    "concurrency",
    "timeout",
    "client_cert_header",
    "headers",
    "header_timeout",
    "connections",
];

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub(crate) registry: Registry,
    /// Requests by route, method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Latency by route.
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Exchanges by provider, audience and decision.
    pub exchanges: Family<ExchangeLabels, Counter>,
    /// Expression evaluation errors (a missing claim or attribute), by provider.
    pub expression_errors: Family<ProviderLabels, Counter>,
    /// Requests refused by a limit.
    pub limited: Family<LimitLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts one request refused by `limit` (`ferry_limited_requests_total{limit}`);
    /// `limit` is always one of Ferry's own names, never a value from a request.
    pub fn count_limited(&self, limit: &str) {
        self.limited
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// A registry with every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        let expression_errors = Family::<ProviderLabels, Counter>::default();
        let limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "ferry_http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        registry.register(
            "ferry_http_request_duration_seconds",
            "HTTP request latency by route",
            http_duration.clone(),
        );
        registry.register(
            "ferry_token_exchanges",
            "Token exchanges by provider, audience and decision",
            exchanges.clone(),
        );
        registry.register(
            "ferry_expression_errors",
            "CEL evaluation errors in conditions, mappings and rules",
            expression_errors.clone(),
        );
        registry.register(
            "ferry_limited_requests",
            "Requests refused by a limit",
            limited.clone(),
        );
        for limit in LIMITS {
            let _ = limited.get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            });
        }
        Self {
            registry,
            http_requests,
            http_duration,
            exchanges,
            expression_errors,
            limited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(m: &Metrics) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        out
    }

    #[test]
    fn every_limit_series_exists_at_zero_before_any_refusal() {
        let m = Metrics::new();
        let text = page(&m);
        assert!(text.contains("# HELP ferry_limited_requests Requests refused by a limit."));
        for limit in LIMITS {
            assert!(
                text.contains(&format!(
                    "ferry_limited_requests_total{{limit=\"{limit}\"}} 0\n"
                )),
                "{limit}: {text}"
            );
        }
        // Counted as before: the first refusal makes it 1.
        m.count_limited("source");
        assert!(page(&m).contains("ferry_limited_requests_total{limit=\"source\"} 1\n"));
        // Families without series are not written: why the exposition touches each
        // configured provider's expression-error counter.
        assert!(!text.contains("ferry_expression_errors"));
    }
}
