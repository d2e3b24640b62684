//! `POST /token`. The HTTP-level checks, in order: method (405), content type (400),
//! size (413), then the form is parsed once and the exchange runs.

use axum::Extension;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use ferry_core::error::desc;
use ferry_core::request::{TokenRequest, is_form_content_type, parse_token_request};
use ferry_core::{ErrorCode, OAuthError, Step};

use super::error_response;
use super::middleware::RequestId;
use crate::audit::AuditEvent;
use crate::exchange::{exchange, jwt_bearer};
use crate::random_id;
use crate::state::AppState;

fn request_error(code: ErrorCode, description: &'static str) -> OAuthError {
    OAuthError::new(code, Step::Request, description)
}

/// The method, content-type and size checks of a form endpoint, then the body.
pub(super) async fn read_form(
    state: &AppState,
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
    let limit = state.loaded().config.max_body_bytes;
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

/// `POST /token`.
pub async fn token(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    request_id: Option<Extension<RequestId>>,
    peer: Option<Extension<ConnectInfo<crate::tls::Peer>>>,
    body: Body,
) -> Response {
    let (request_id, trace_id) = match request_id {
        Some(Extension(r)) => (r.id, r.trace_id),
        None => (random_id(12), None),
    };
    let mut audit = AuditEvent {
        kind: "ferry.audit",
        time: state.clock.now(),
        request_id,
        trace_id,
        source: peer.as_ref().map(|p| p.0.0.0.ip().to_string()),
        ..AuditEvent::default()
    };
    // Before anything is parsed or verified: the source's and the global buckets.
    let admitted = admit(&state, peer.map(|p| p.0.0.0.ip()));
    let read = match admitted {
        Ok(()) => read_form(&state, &method, &headers, body).await,
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
            match crate::client_auth::authenticate(&state, &headers, &params).await {
                Err(e) => Err(e),
                Ok(client) => {
                    // After client authentication: the client's bucket, for registered
                    // clients only (an unregistered id is a label anyone may invent: a
                    // bucket per label would let callers grow the map at will).
                    let limited = client
                        .as_ref()
                        .filter(|c| c.registered)
                        .map(|c| state.limits.check_client(&c.id));
                    let client_id = client.map(|c| c.id);
                    audit.client_id = client_id.clone();
                    match (limited, request) {
                        (Some(Err(retry)), _) => {
                            state.metrics.count_limited("client");
                            Err(rate_limited("client", retry))
                        }
                        (_, request) => {
                            match crate::dpop::check_token_request(&state, &headers).await {
                                Err(e) => Err(e),
                                Ok(proof) => match request {
                                    TokenRequest::TokenExchange(mut req) => {
                                        audit.grant_type = Some("token-exchange");
                                        req.client_id = client_id;
                                        exchange(&state, &req, proof.as_ref(), &mut audit).await
                                    }
                                    TokenRequest::JwtBearer(req) => {
                                        audit.grant_type = Some("jwt-bearer");
                                        jwt_bearer(
                                            &state,
                                            &req,
                                            client_id.as_deref(),
                                            proof.as_ref(),
                                            &mut audit,
                                        )
                                        .await
                                    }
                                },
                            }
                        }
                    }
                }
            }
        }
    };
    let audience = audit
        .audiences
        .first()
        .filter(|a| state.loaded().config.audience_names.contains(a))
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    let mut labels = crate::metrics::ExchangeLabels {
        provider: audit.provider.clone().unwrap_or_else(|| "none".to_owned()),
        audience,
        decision: String::new(),
        error: String::new(),
    };
    let mut response = match result {
        Ok(resp) => {
            labels.decision = "allow".into();
            state.metrics.exchanges.get_or_create(&labels).inc();
            audit.decision = "allow";
            audit.step = "mint";
            state.audit.record(&audit);
            // The audit event on stdout is the record of every issued token.
            tracing::debug!(request_id = %audit.request_id, provider = ?audit.provider, subject = ?audit.subject, "token issued");
            let mut r = axum::Json(resp).into_response();
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(err) => {
            labels.decision = "deny".into();
            labels.error = err.code.as_str().into();
            state.metrics.exchanges.get_or_create(&labels).inc();
            if err.expression_error {
                state
                    .metrics
                    .expression_errors
                    .get_or_create(&crate::metrics::ProviderLabels {
                        provider: labels.provider.clone(),
                    })
                    .inc();
            }
            audit.decision = "deny";
            audit.step = err.step.as_str();
            audit.error = Some(err.code.as_str());
            // A rule or detail may quote a request value: bounded before it is logged.
            if let Some(rule) = &err.rule {
                audit.rule = Some(crate::audit::clip(rule));
            }
            audit.reason = Some(crate::audit::clip(if err.detail.is_empty() {
                err.description.as_ref()
            } else {
                err.detail.as_str()
            }));
            state.audit.record(&audit);
            if err.code == ErrorCode::ServerError {
                // The first in each interval with its detail, then a count: an
                // internal fault every request hits must not flood the logs.
                const FAILED: &str = "token requests failed with an internal error";
                match state.warnings.note_at(
                    FAILED,
                    crate::repeated::Level::Error,
                    std::time::Instant::now(),
                ) {
                    Some(repeated) => {
                        tracing::error!(request_id = %audit.request_id, error = %err, repeated, "{FAILED}");
                    }
                    None => {
                        tracing::debug!(request_id = %audit.request_id, error = %err, "{FAILED}");
                    }
                }
            } else {
                tracing::info!(request_id = %audit.request_id, error = %err, "token request denied");
            }
            error_response(&err)
        }
    };
    // RFC 9449 §8: with nonces required, every response carries a fresh one.
    let loaded = state.loaded();
    if loaded.config.dpop.require_nonce
        && let Ok(v) = HeaderValue::from_str(&state.nonces.issue(state.clock.now()))
    {
        response.headers_mut().insert("dpop-nonce", v);
    }
    response
}
