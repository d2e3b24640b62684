//! What every public request passes through, in order:
//!
//! 1. A request id (the caller's `X-Request-Id` when sane, else a random one), the W3C
//!    `traceparent` trace id when present, and one span carrying both.
//! 2. A deadline of `limits.request_timeout` → 503.
//! 3. Metrics: count and latency by route, method and status; a 503 noted in the
//!    repeated warnings ([`crate::repeated`]: one line per interval with a count), as
//!    shed or timed out only when it was. The method label is one
//!    of `GET`, `POST`, `HEAD` or `OTHER`: a label set clients cannot grow. A method a
//!    route does not serve — any name a client invents included — gets the router's 405
//!    with `Allow` (RFC 9110 §15.5.6), or 404 off every route: a 4xx, never a 5xx.
//!
//! Before the span, a trusted proxy's client certificate header is read, or stripped
//! from every other peer ([`crate::client_cert_header`]); a malformed one is a 400.
//!
//! The header size limit (`limits.max_header_bytes`, 431) is enforced earlier, while the
//! header is read (`crate::listener`). Load shedding (`limits.concurrency`, 503) comes
//! later, in the form endpoints once a request is admitted (`token::permit`): a request
//! over its rate limits, or whose body is still arriving, holds no permit.

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use ferry_core::{ErrorCode, OAuthError, Step};
use ferry_verify::time::instant_now;
use tracing::Instrument;

use super::reply::error_response;
use crate::forwarded::{ClientAddr, client_addr};
use crate::ids::random_id;
use crate::metrics::{HttpLabels, RouteLabels};
use crate::state::AppState;

/// The request id of the current request.
#[derive(Debug, Clone)]
pub struct RequestId {
    /// The id.
    pub id: String,
    /// The W3C trace id, when the caller sent `traceparent`.
    pub trace_id: Option<String>,
}

/// `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (W3C Trace
/// Context §3.2); an all-zero id is invalid.
pub fn trace_id(traceparent: &str) -> Option<String> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (hex(version, 2)
        && *version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0'))
    .then(|| trace.to_string())
}

fn sane_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn limited(
    state: &AppState,
    limit: &str,
    status: u16,
    code: ErrorCode,
    description: &'static str,
) -> Response {
    state.metrics.count_limited(limit);
    error_response(&OAuthError::new(code, Step::Request, description).status(status))
}

/// The metric label of a method: the ones Ferry serves by name, every other as `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// The request id (the caller's when sane, else a random one) and the W3C trace id.
fn request_id(req: &Request) -> (String, Option<String>) {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map_or_else(|| random_id(12), str::to_owned);
    let trace = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id);
    (id, trace)
}

/// The client's address, behind trusted proxies too ([`crate::forwarded`]): what
/// limits, audit and logs use. Kept in the request's extensions.
fn client_of(req: &mut Request, trusted: &[ipnet::IpNet]) -> Option<std::net::IpAddr> {
    let client = req
        .extensions()
        .get::<ConnectInfo<crate::tls::Peer>>()
        .map(|c| client_addr(c.0.0.ip(), req.headers(), trusted));
    if let Some(c) = client {
        req.extensions_mut().insert(ClientAddr(c));
    }
    client
}

/// The client certificate a trusted proxy's header names ([`crate::client_cert_header`]);
/// `Err` (fixed text): a malformed one, refused with 400.
fn certificate_of(
    state: &AppState,
    req: &mut Request,
    loaded: &crate::state::Loaded,
) -> Result<(), &'static str> {
    let outcome = crate::client_cert_header::apply(req, loaded.config.client_cert_header.as_ref())?;
    if outcome == crate::client_cert_header::Outcome::TooLarge {
        state.metrics.count_limited("client_cert_header");
        state.warnings.warn(
            "client certificate headers over 64 KiB from a trusted peer ignored: those requests had no client certificate",
        );
    }
    Ok(())
}

/// The answer to a trusted proxy's malformed client certificate header.
fn malformed_header(why: &'static str) -> Response {
    tracing::info!(reason = why, "refused: malformed client certificate header");
    error_response(&OAuthError::new(
        ErrorCode::InvalidRequest,
        Step::Request,
        ferry_core::error::desc::CLIENT_CERT_HEADER,
    ))
}

/// The middleware.
pub async fn track(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = instant_now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(req.method());
    let (id, trace) = request_id(&req);
    let loaded = state.loaded();
    let client = client_of(&mut req, &loaded.config.trusted_proxies);
    let refused = certificate_of(&state, &mut req, &loaded)
        .err()
        .map(malformed_header);
    let limits = loaded.config.limits.clone();
    drop(loaded);
    let span = tracing::info_span!("request", request_id = %id, trace_id = trace.as_deref().unwrap_or(""), %method, %route, source = client.map(tracing::field::display));
    crate::telemetry::continue_trace(&span, req.headers());
    req.extensions_mut().insert(RequestId {
        id: id.clone(),
        trace_id: trace,
    });

    let mut timed_out = false;
    let mut resp = async {
        if let Some(refused) = refused {
            return refused;
        }
        let deadline = std::time::Duration::from_secs(limits.request_timeout);
        match tokio::time::timeout(deadline, next.run(req)).await {
            Ok(r) => r,
            Err(_) => {
                timed_out = true;
                limited(
                    &state,
                    "timeout",
                    503,
                    ErrorCode::TemporarilyUnavailable,
                    ferry_core::error::desc::TIMEOUT,
                )
            }
        }
    }
    .instrument(span)
    .await;

    let status = resp.status().as_u16();
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            method,
            status,
        })
        .inc();
    state
        .metrics
        .http_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    // A body refused for its size is left unread: the connection cannot carry another
    // request, and saying so (RFC 9112 §9.6) keeps a client from reusing it mid-close.
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        let message = if timed_out || resp.extensions().get::<super::reply::Shed>().is_some() {
            "requests shed (limits.concurrency) or timed out (limits.request_timeout): answered 503"
        } else {
            // An issuer, the replay cache or the key store unavailable: the request's
            // own log line (at info) says which.
            "requests answered 503 temporarily_unavailable: a dependency is unavailable"
        };
        tracing::debug!(request_id = %id, "{message}");
        state.warnings.warn(message);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparent_parsing() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            super::trace_id(ok).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "junk",
        ] {
            assert_eq!(super::trace_id(bad), None, "{bad}");
        }
    }
}
