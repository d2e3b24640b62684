//! `POST /token` and `POST /v1/token` (Google's path). The HTTP-level checks, in order: method (405), content type (400),
//! size (413), then the form is parsed once and the exchange runs.

use axum::Extension;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use ferry_core::error::desc;
use ferry_core::request::{is_form_content_type, parse_token_request};
use ferry_core::{ErrorCode, OAuthError, Step};

use super::middleware::RequestId;
use super::outcome;
use crate::audit::AuditEvent;
use crate::forwarded::ClientAddr;
use crate::ids::random_id;
use crate::state::{AppState, Loaded};
use crate::token::Endpoint;

fn request_error(code: ErrorCode, description: &'static str) -> OAuthError {
    OAuthError::new(code, Step::Request, description)
}

/// The method, content-type and size checks of a form endpoint, then the body.
pub(super) async fn read_form(
    loaded: &Loaded,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, OAuthError> {
    if method != Method::POST {
        return Err(request_error(ErrorCode::InvalidRequest, desc::METHOD).status(405));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !is_form_content_type(ct) {
        return Err(request_error(ErrorCode::InvalidRequest, desc::CONTENT_TYPE));
    }
    let limit = loaded.config.max_body_bytes;
    let too_large = || request_error(ErrorCode::InvalidRequest, desc::BODY_TOO_LARGE).status(413);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    to_bytes(body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large())
}

/// The source's and the global rate limits, counted in metrics when they refuse: the
/// first check of every public form endpoint.
pub(super) fn admit(state: &AppState, source: Option<std::net::IpAddr>) -> Result<(), OAuthError> {
    state
        .limits
        .check_unverified(source)
        .map_err(|(limit, retry)| {
            state.metrics.count_limited(limit);
            rate_limited(limit, retry)
        })
}

/// A concurrency permit (load shedding: more than `limits.concurrency` requests at work
/// at once → 503), taken only once a request is admitted — within its source's and the
/// global buckets, its body fully read — so a client over its limits, or sending its
/// body slowly, never holds one.
pub(super) fn permit(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, OAuthError> {
    state.limits.concurrency.try_acquire().map_err(|_| {
        state.metrics.count_limited("concurrency");
        OAuthError::new(ErrorCode::TemporarilyUnavailable, Step::Request, desc::BUSY).status(503)
    })
}

/// A replica that cannot sign (it cannot unseal the active key) refuses before anything
/// is verified or recorded: an assertion spent here could not be retried at a replica
/// that can sign.
pub(super) fn can_sign(state: &AppState) -> Result<(), OAuthError> {
    if state.keys.snapshot().can_sign() {
        Ok(())
    } else {
        Err(OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            Step::Mint,
            desc::SIGNING_UNAVAILABLE,
        )
        .status(503)
        .detail("this replica cannot unseal the active signing key"))
    }
}

fn rate_limited(limit: &'static str, retry: crate::limits::RetryAfter) -> OAuthError {
    let mut e = OAuthError::new(ErrorCode::InvalidRequest, Step::Request, desc::RATE_LIMITED)
        .status(429)
        .detail(format!("{limit} rate limit"));
    e.retry_after = Some(retry.0);
    e
}

/// `POST /token` and `POST /v1/token`: the HTTP adapter of the pipeline
/// ([`crate::token::run`]). One configuration snapshot serves the whole request. The
/// router marks `/v1/token` (Google's path, `https://sts.<universe_domain>/v1/token`,
/// so that Google's client libraries reach Ferry with no transport override) with an
/// [`Endpoint`] extension; both paths run the same pipeline, and only a DPoP proof's
/// `htu` names the path used.
#[allow(clippy::too_many_arguments, reason = "one axum extractor per argument")]
pub async fn token(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    request_id: Option<Extension<RequestId>>,
    client: Option<Extension<ClientAddr>>,
    certificate: Option<Extension<crate::client_cert::PeerCertificate>>,
    ignored: Option<Extension<crate::client_cert_header::Ignored>>,
    endpoint: Option<Extension<Endpoint>>,
    body: Body,
) -> Response {
    let endpoint = endpoint.map(|e| e.0).unwrap_or_default();
    let loaded = state.loaded();
    let (request_id, trace_id) = match request_id {
        Some(Extension(r)) => (r.id, r.trace_id),
        None => (random_id(12), None),
    };
    let mut audit = AuditEvent {
        kind: "ferry.audit",
        time: state.clock.now(),
        request_id,
        trace_id,
        source: client.as_ref().map(|c| c.0.0.to_string()),
        client_cert_header: ignored.map(|_| "too_large"),
        ..AuditEvent::default()
    };
    // 1. Admit: before anything is parsed or verified, the source's and global buckets.
    let admitted = admit(&state, client.map(|c| c.0.0));
    let read = match admitted {
        Ok(()) => read_form(&loaded, &method, &headers, body).await,
        Err(e) => Err(e),
    };
    // Admitted and read: only now may the request hold a concurrency permit.
    let (read, _permit) = match read.and_then(|b| permit(&state).map(|p| (b, p))) {
        Ok((bytes, p)) => (Ok(bytes), Some(p)),
        Err(e) => (Err(e), None),
    };
    let parsed = read.and_then(|bytes| can_sign(&state).and_then(|()| parse_token_request(&bytes)));
    let result = match parsed {
        Err(e) => Err(e),
        Ok((request, params)) => {
            let caller = crate::token::Caller {
                source: client.map(|c| c.0.0),
                certificate: certificate.map(|c| c.0.0),
                endpoint,
            };
            crate::token::run(
                &state, &loaded, &headers, &caller, request, &params, &mut audit,
            )
            .await
        }
    };
    let mut response = outcome::respond(&state, &loaded, result, &mut audit);
    // RFC 9449 §8: with nonces required, every response carries a fresh one.
    if loaded.config.dpop.require_nonce
        && let Ok(v) = HeaderValue::from_str(&state.nonces.issue(state.clock.now()))
    {
        response.headers_mut().insert("dpop-nonce", v);
    }
    response
}
