//! `/jwks` and the discovery documents, rendered once at start.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

fn json_body(body: &str, cache: &'static str) -> Response {
    let mut resp = body.to_owned().into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// `GET /jwks`: Ferry's pending, active and retired public keys, cacheable for
/// `jwks_max_age`, with a strong ETag (`If-None-Match` → 304).
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snap = state.keys.snapshot();
    let max_age = state.loaded().config.signing.jwks_max_age;
    cacheable_jwks(&headers, &snap.jwks, &snap.etag, max_age)
}

/// A public JWK Set, cacheable for `max_age` seconds with the strong ETag `etag`: 304
/// when `If-None-Match` names it (or `*`), else the set. `/jwks` and each service
/// account's keys answer this way.
pub(super) fn cacheable_jwks(
    headers: &HeaderMap,
    body: &str,
    etag: &str,
    max_age: u64,
) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = body.to_owned().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414) and its OpenID alias.
pub async fn metadata(State(state): State<AppState>) -> Response {
    json_body(&state.loaded().metadata_body, "public, max-age=3600")
}
