//! Operations: limits, TLS, the admin listener and the audit sink.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::durations::duration;
use super::errors::ConfigErrors;
use super::model::DEFAULT_MAX_BODY;
use super::raw::{RawAdmin, RawAudit, RawLimits, RawMetrics, RawTls};

/// Request limits, with documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest `/token` body (64 KiB).
    pub max_body_bytes: usize,
    /// Largest total size of request headers (16 KiB).
    pub max_header_bytes: usize,
    /// Longest a request may take, seconds (10).
    pub request_timeout: u64,
    /// Requests served at once; more are refused with 503 (1024).
    pub concurrency: usize,
    /// Token requests per second from one source address, before verification (50).
    pub rate_per_source: u32,
    /// Token requests per second in all, before verification (default: what this
    /// machine can serve, [`derived_global_rate`]).
    pub rate_global: u32,
    /// Verified token requests per second per provider (500).
    pub rate_per_provider: u32,
    /// Token requests per second per client, after client authentication (100).
    pub rate_per_client: u32,
    /// How long in-flight requests may take to finish after SIGTERM, seconds (20).
    pub shutdown_timeout: u64,
    /// How long the listeners keep serving after SIGTERM, with readiness already
    /// failing, before they stop accepting, seconds (5; 0: stop at once). Covers the time
    /// a load balancer or Kubernetes takes to stop routing to a terminating replica.
    pub shutdown_delay: u64,
    /// Live replay-cache entries one registered client or service account may hold;
    /// `None`: a tenth of `max_replay_entries` (see `Config::replay_share`).
    pub max_replay_entries_per_principal: Option<usize>,
    /// The allowed clock difference between replicas, seconds (5): replay entries are
    /// kept this much longer than an id stays acceptable by the clock that checked it.
    pub replay_clock_skew: u64,
    /// Live reference tokens kept (100 000); more are refused with 503.
    pub max_reference_tokens: usize,
    /// How long a request's header may take to arrive, from its first byte (or from the
    /// connection's start), seconds (10): a client that sends it slower is cut off.
    pub header_read_timeout: u64,
    /// How long a keep-alive connection may wait for its next request, seconds (60).
    pub idle_timeout: u64,
    /// Connections open at once from one source address (an IPv6 /64 counts as one
    /// source); more are closed at accept (256).
    pub max_connections_per_source: usize,
}

/// A certificate and key, PEM files reloaded when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Certificate chain.
    pub cert_file: PathBuf,
    /// Private key.
    pub key_file: PathBuf,
    /// Whether clients are asked for a certificate (the public listener only).
    pub client_auth: ClientCertMode,
    /// The CA bundle a registered `tls_client_auth` client's chain is checked against
    /// unless its registration names its own.
    pub client_ca_file: Option<PathBuf>,
}

/// Whether the TLS listener asks clients for a certificate. The handshake proves the
/// client holds the certificate's key; whether its chain is acceptable is decided where
/// it is used (a client's registration, an `x509` provider's anchors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertMode {
    /// Not asked for (the default).
    #[default]
    Off,
    /// Asked for; a client without one is served.
    Optional,
    /// Asked for; a handshake without one fails.
    Required,
}

/// The admin listener: metrics, explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens (127.0.0.1:9090 by default); `None` when disabled (`off`).
    pub listen: Option<String>,
    /// TLS, required off loopback.
    pub tls: Option<Tls>,
    /// SHA-256 (hex) of the accepted bearer tokens, one per line; required off loopback.
    pub bearer_token_hashes_file: Option<PathBuf>,
}

/// The metrics-only listener: `GET /metrics` and nothing else, plain HTTP without
/// authentication (the page carries counts and configured names, never a token, subject
/// or request value), so it may listen off loopback; restrict who reaches it by network
/// (a Kubernetes NetworkPolicy admitting the monitoring namespace only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsListener {
    /// Where it listens; `None` (the default, or `off`): no such listener.
    pub listen: Option<String>,
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSinkConfig {
    /// Standard output (the default).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// Exchanges per second one core can serve at most: the cryptographic floor (an RS256
/// verification and an ES256 signature) `scripts/bench.sh` measured on the reference
/// machine, 26,186/s per core at 89283d1, rounded down. No core serves more, so a global
/// limit of cores × this never throttles a healthy server: the unit of the defaults.
pub const PER_CORE_EXCHANGES: u32 = 26_000;

/// The default `limits.rate_global`: `cores × PER_CORE_EXCHANGES`. It still stops a
/// flood before verification, but never throttles a healthy server below what it can
/// serve.
pub fn derived_global_rate(cores: usize) -> u32 {
    u32::try_from(cores.max(1))
        .unwrap_or(u32::MAX)
        .saturating_mul(PER_CORE_EXCHANGES)
}

/// `ferry check`'s warning for a global rate below what this machine can serve: the
/// limit would throttle a healthy server.
pub fn global_rate_warning(rate_global: u32, cores: usize) -> Option<String> {
    let derived = derived_global_rate(cores);
    (rate_global < derived).then(|| {
        format!(
            "limits.rate_global: {rate_global}/s is below what this machine serves ({cores} cores × {PER_CORE_EXCHANGES}/s = {derived}/s): healthy traffic past it gets 429"
        )
    })
}

/// The cores this process may use (its CPU quota, where one is set).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

pub(super) fn limits(errs: &mut ConfigErrors, l: &RawLimits) -> Limits {
    let out = Limits {
        max_body_bytes: l.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
        max_header_bytes: l.max_header_bytes.unwrap_or(16 * 1024),
        request_timeout: duration(
            errs,
            "limits.request_timeout",
            l.request_timeout.as_ref(),
            10,
        ),
        concurrency: l.concurrency.unwrap_or(1024),
        rate_per_source: l.rate_per_source.unwrap_or(50),
        rate_global: l
            .rate_global
            .unwrap_or_else(|| derived_global_rate(available_cores())),
        // One provider may take at most half of what the machine serves: a burst from
        // one cluster never starves the others.
        rate_per_provider: l
            .rate_per_provider
            .unwrap_or_else(|| derived_global_rate(available_cores()) / 2),
        rate_per_client: l.rate_per_client.unwrap_or(100),
        shutdown_timeout: duration(
            errs,
            "limits.shutdown_timeout",
            l.shutdown_timeout.as_ref(),
            20,
        ),
        shutdown_delay: duration(errs, "limits.shutdown_delay", l.shutdown_delay.as_ref(), 5),
        max_replay_entries_per_principal: l.max_replay_entries_per_principal,
        replay_clock_skew: duration(
            errs,
            "limits.replay_clock_skew",
            l.replay_clock_skew.as_ref(),
            5,
        ),
        max_reference_tokens: l.max_reference_tokens.unwrap_or(100_000),
        header_read_timeout: duration(
            errs,
            "limits.header_read_timeout",
            l.header_read_timeout.as_ref(),
            10,
        ),
        idle_timeout: duration(errs, "limits.idle_timeout", l.idle_timeout.as_ref(), 60),
        max_connections_per_source: l.max_connections_per_source.unwrap_or(256),
    };
    check_limits(errs, &out);
    out
}

/// The bounds of the limits: durations at most 5m where stated, sizes within range,
/// counts and rates above zero.
fn check_limits(errs: &mut ConfigErrors, out: &Limits) {
    if out.shutdown_delay > 300 {
        errs.push("limits.shutdown_delay", "must be at most 5m");
    }
    if out.replay_clock_skew > 300 {
        errs.push("limits.replay_clock_skew", "must be at most 5m");
    }
    if !(1_024..=1_048_576).contains(&out.max_body_bytes) {
        errs.push("limits.max_body_bytes", "must be between 1024 and 1048576");
    }
    if !(1_024..=1_048_576).contains(&out.max_header_bytes) {
        errs.push(
            "limits.max_header_bytes",
            "must be between 1024 and 1048576",
        );
    }
    for (name, v) in [
        ("limits.concurrency", out.concurrency as u64),
        ("limits.rate_per_source", u64::from(out.rate_per_source)),
        ("limits.rate_global", u64::from(out.rate_global)),
        ("limits.rate_per_provider", u64::from(out.rate_per_provider)),
        ("limits.rate_per_client", u64::from(out.rate_per_client)),
        ("limits.request_timeout", out.request_timeout),
        (
            "limits.max_replay_entries_per_principal",
            out.max_replay_entries_per_principal.map_or(1, |n| n as u64),
        ),
        (
            "limits.max_reference_tokens",
            out.max_reference_tokens as u64,
        ),
        ("limits.header_read_timeout", out.header_read_timeout),
        ("limits.idle_timeout", out.idle_timeout),
        (
            "limits.max_connections_per_source",
            out.max_connections_per_source as u64,
        ),
    ] {
        if v == 0 {
            errs.push(name, "must be greater than zero");
        }
    }
}

pub(super) fn tls(errs: &mut ConfigErrors, path: &str, t: &RawTls, base: &Path) -> Option<Tls> {
    let client_auth = match t.client_auth.as_deref() {
        None | Some("off") => ClientCertMode::Off,
        Some("optional") => ClientCertMode::Optional,
        Some("required") => ClientCertMode::Required,
        Some(_) => {
            errs.push(
                format!("{path}.client_auth"),
                "must be off, optional or required",
            );
            ClientCertMode::Off
        }
    };
    if path != "tls" && (t.client_auth.is_some() || t.client_ca_file.is_some()) {
        errs.push(
            path,
            "client_auth and client_ca_file apply to the public listener's tls only",
        );
    }
    if t.client_ca_file.is_some() && client_auth == ClientCertMode::Off {
        errs.push(
            format!("{path}.client_ca_file"),
            "given while client_auth is off: no client certificate would be asked for",
        );
    }
    match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => Some(Tls {
            cert_file: base.join(c),
            key_file: base.join(k),
            client_auth,
            client_ca_file: t.client_ca_file.as_ref().map(|f| base.join(f)),
        }),
        _ => {
            errs.push(path, "give both cert_file and key_file");
            None
        }
    }
}

fn is_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
    }
}

pub(super) fn admin(errs: &mut ConfigErrors, a: &RawAdmin, base: &Path) -> Admin {
    let listen = match a.listen.as_deref() {
        None => Some("127.0.0.1:9090".to_owned()),
        Some("off") => None,
        Some(l) => Some(l.to_owned()),
    };
    let tls = a.tls.as_ref().and_then(|t| tls(errs, "admin.tls", t, base));
    let hashes = a.bearer_token_hashes_file.as_ref().map(|f| base.join(f));
    if let Some(l) = &listen
        && !is_loopback(l)
        && (tls.is_none() || hashes.is_none())
    {
        errs.push(
            "admin.listen",
            "off loopback the admin listener requires admin.tls and admin.bearer_token_hashes_file",
        );
    }
    Admin {
        listen,
        tls,
        bearer_token_hashes_file: hashes,
    }
}

pub(super) fn metrics_listener(m: &RawMetrics) -> MetricsListener {
    MetricsListener {
        listen: m.listen.clone().filter(|l| l != "off"),
    }
}

/// Whether two listen addresses would take the same socket: the same name, or the same
/// port (not 0, the kernel's pick) on the same address or where either is a wildcard
/// (`0.0.0.0`, `[::]`), which takes the port on every address.
fn same_socket(a: &str, b: &str) -> bool {
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(x), Ok(y)) => {
            x.port() != 0
                && x.port() == y.port()
                && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
        }
        _ => {
            let port = |s: &str| s.rsplit_once(':').map(|(_, p)| p.to_owned());
            a.eq_ignore_ascii_case(b) && port(a).as_deref() != Some("0")
        }
    }
}

/// Errors for listeners that would share a socket: the metrics listener must differ from
/// the public and the admin ones (it serves `/metrics` alone, unauthenticated), and the
/// admin listener from the public one.
pub fn listener_conflicts(
    listen: &str,
    admin: &Admin,
    metrics: &MetricsListener,
) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if let Some(m) = &metrics.listen {
        if same_socket(m, listen) {
            out.push((
                "metrics.listen",
                "must differ from listen (the public listener)",
            ));
        }
        if admin.listen.as_deref().is_some_and(|a| same_socket(m, a)) {
            out.push(("metrics.listen", "must differ from admin.listen"));
        }
    }
    if admin
        .listen
        .as_deref()
        .is_some_and(|a| same_socket(a, listen))
    {
        out.push((
            "admin.listen",
            "must differ from listen (the public listener)",
        ));
    }
    out
}

pub(super) fn check_listeners(
    errs: &mut ConfigErrors,
    listen: &str,
    admin: &Admin,
    metrics: &MetricsListener,
) {
    for (path, msg) in listener_conflicts(listen, admin, metrics) {
        errs.push(path, msg);
    }
}

pub(super) fn audit(a: &RawAudit, base: &Path) -> AuditSinkConfig {
    match &a.file {
        Some(f) => AuditSinkConfig::File(base.join(f)),
        None => AuditSinkConfig::Stdout,
    }
}

/// DPoP at `/token` (RFC 9449).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dpop {
    /// The public URL of the token endpoint that proofs' `htu` must name (the `Host`
    /// header is never trusted); default `<issuer>/token`.
    pub token_url: String,
    /// The same endpoint at Google's path, `/v1/token` (where Google's client libraries
    /// post): `token_url` with its last path segment replaced by `v1/token`. A proof sent
    /// there must name this URL, and one sent to `/token` the other (RFC 9449 §4.3).
    pub v1_token_url: String,
    /// Accepted distance of a proof's `iat` from now, seconds (60).
    pub iat_window: u64,
    /// Require the server's nonce in proofs (`use_dpop_nonce`).
    pub require_nonce: bool,
}

pub(super) fn dpop(errs: &mut ConfigErrors, d: &super::raw::RawDpop, issuer: &str) -> Dpop {
    let token_url = d
        .token_url
        .clone()
        .unwrap_or_else(|| format!("{issuer}/token"));
    let v1_token_url = match url::Url::parse(&token_url).and_then(|u| u.join("v1/token")) {
        Ok(u) => u.to_string(),
        Err(_) => {
            errs.push("dpop.token_url", "must be an absolute URL");
            String::new()
        }
    };
    Dpop {
        token_url,
        v1_token_url,
        iat_window: duration(errs, "dpop.iat_window", d.iat_window.as_ref(), 60),
        require_nonce: d.require_nonce.unwrap_or(false),
    }
}

#[cfg(test)]
#[path = "ops_tests.rs"]
pub(super) mod tests;
