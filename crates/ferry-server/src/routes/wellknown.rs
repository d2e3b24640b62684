//! `/jwks` and the discovery documents, rendered once at start.

use axum::extract::State;
use axum::http::{HeaderValue, header};
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

/// `GET /jwks`: Ferry's public keys.
pub async fn jwks(State(state): State<AppState>) -> Response {
    json_body(&state.jwks_body, "public, max-age=300")
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414) and its OpenID alias.
pub async fn metadata(State(state): State<AppState>) -> Response {
    json_body(&state.metadata_body, "public, max-age=3600")
}
