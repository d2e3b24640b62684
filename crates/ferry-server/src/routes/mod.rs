//! HTTP routes. Handlers are thin: they read the request, call one function, and turn
//! its result into a response. Errors become RFC 6749 §5.2 bodies in one place
//! ([`reply::error_response`]).

mod health;
pub use health::readyz_details;
pub mod middleware;
mod outcome;
mod reply;
pub use reply::{Shed, error_response};
mod token;
mod tokens;
mod wellknown;

use axum::Router;
use axum::routing::{any, get};

use crate::state::AppState;

/// Every public route and the method it serves; `openapi/openapi.yaml` describes exactly
/// these (a test keeps the two in agreement).
pub const ROUTES: &[(&str, &str)] = &[
    ("/token", "post"),
    ("/v1/token", "post"),
    ("/revoke", "post"),
    ("/introspect", "post"),
    ("/revocations", "get"),
    ("/jwks", "get"),
    ("/.well-known/oauth-authorization-server", "get"),
    ("/.well-known/openid-configuration", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
];

/// The public router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/token", any(token::token))
        .route(
            "/v1/token",
            any(token::token).layer(axum::Extension(crate::token::Endpoint::GoogleV1)),
        )
        .route("/revoke", any(tokens::revoke))
        .route("/introspect", any(tokens::introspect))
        .route("/revocations", get(tokens::revocations))
        .route("/jwks", get(wellknown::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(wellknown::metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(wellknown::metadata),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::track,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;
