//! Errors as responses: RFC 6749 §5.2 bodies, built in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_core::OAuthError;
use ferry_core::response::ErrorResponse;

/// Marks a response refused by load shedding (`limits.concurrency`), so the logs tell it
/// from a 503 for an unavailable dependency.
#[derive(Debug, Clone, Copy)]
pub struct Shed;

/// The one place an [`OAuthError`] becomes a response: a fixed JSON body, never input,
/// never internal detail.
pub fn error_response(err: &OAuthError) -> Response {
    let status = StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = ErrorResponse {
        error: err.code.as_str(),
        error_description: err.description.to_string(),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if err.code == ferry_core::ErrorCode::InvalidClient {
        // RFC 6749 §5.2: 401 with the scheme the client may use.
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ferry\""),
        );
    }
    if err.description == ferry_core::error::desc::BUSY {
        resp.extensions_mut().insert(Shed);
    }
    let h = resp.headers_mut();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let Some(secs) = err.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        h.insert(header::RETRY_AFTER, v);
    }
    resp
}
