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
    super::wellknown::cacheable_jwks(
        &headers,
        keys.public_jwks(),
        keys.public_jwks_etag(),
        loaded.config.signing.jwks_max_age,
    )
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
