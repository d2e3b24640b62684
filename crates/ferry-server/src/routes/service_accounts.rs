//! `GET /service-accounts/{id}/jwks`: a registered service account's public keys, for
//! APIs that accept the account's self-signed JWTs directly (as Google publishes each
//! service account's keys). The keys are the ones Ferry itself verifies the account's
//! assertions with, right now: a key removed from the account's `jwks` (a file reloaded,
//! a configuration reload) or an account removed disappears here at the same moment.
//!
//! Unauthenticated and bounded: a lookup in the loaded configuration, nothing stored
//! per request or per id asked for; the id is never echoed (an unknown one, or one that
//! is not UTF-8, gets the same fixed 404).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::state::AppState;

/// The one answer for an id that is not a registered service account.
const NOT_FOUND: &str = r#"{"error":"not_found","error_description":"no such service account"}"#;
/// The answer when the account's keys come from a URL that cannot be read now.
const UNAVAILABLE: &str = r#"{"error":"temporarily_unavailable","error_description":"the service account's keys are unavailable"}"#;

fn json(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A strong ETag of the body: its SHA-256.
fn etag(body: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// The account's public keys, cacheable for `signing.jwks_max_age` as `/jwks` is, with a
/// strong ETag (`If-None-Match` → 304).
pub async fn jwks(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let loaded = state.loaded();
    let Some(account) = id
        .ok()
        .and_then(|Path(id)| loaded.accounts.service_accounts.get(&id))
    else {
        // Not cached: an account registered later must be found at once.
        return no_store(json(StatusCode::NOT_FOUND, NOT_FOUND.to_owned()));
    };
    let Ok(keys) = account.keys.keys().await else {
        return no_store(json(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE.to_owned(),
        ));
    };
    let body = keys.public_jwks().to_owned();
    let tag = etag(&body);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        json(StatusCode::OK, body)
    };
    let h = resp.headers_mut();
    let cache = format!("public, max-age={}", loaded.config.signing.jwks_max_age);
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    resp
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
