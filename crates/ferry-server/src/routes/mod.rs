//! HTTP routes. Handlers are thin: they read the request, call one function, and turn
//! its result into a response. Errors become RFC 6749 §5.2 bodies in one place
//! ([`reply::error_response`]).

mod health;
pub use health::readyz_details;
pub mod middleware;
mod outcome;
mod reply;
pub use reply::{Shed, error_response};
mod service_accounts;
mod token;
mod tokens;
mod wellknown;

use axum::Router;
use axum::routing::{MethodRouter, any, get};

use crate::state::AppState;

/// The public route table: each path, the method `openapi/openapi.yaml` documents for
/// it, and its handler. The router is built from it, and a test compares it with the
/// document's `paths`, so a route cannot be served undocumented (nor documented and not
/// served). `any` routes answer other methods themselves (405 with a JSON body).
fn table() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("/token", "post", any(token::token)),
        (
            "/v1/token",
            "post",
            any(token::token).layer(axum::Extension(crate::token::Endpoint::GoogleV1)),
        ),
        ("/revoke", "post", any(tokens::revoke)),
        ("/introspect", "post", any(tokens::introspect)),
        ("/revocations", "get", get(tokens::revocations)),
        ("/jwks", "get", get(wellknown::jwks)),
        (
            "/service-accounts/{id}/jwks",
            "get",
            get(service_accounts::jwks),
        ),
        (
            "/.well-known/oauth-authorization-server",
            "get",
            get(wellknown::metadata),
        ),
        (
            "/.well-known/openid-configuration",
            "get",
            get(wellknown::metadata),
        ),
        ("/healthz", "get", get(health::healthz)),
        ("/readyz", "get", get(health::readyz)),
    ]
}

/// Every public route and the method it serves (lower case, as OpenAPI names them):
/// what `openapi/openapi.yaml` describes.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table().into_iter().map(|(p, m, _)| (p, m)).collect()
}

/// The public router, built from the route table.
pub fn router(state: AppState) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |r, (path, _, handler)| {
            r.route(path, handler)
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::track,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;
