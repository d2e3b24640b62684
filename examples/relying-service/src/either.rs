//! Both kinds of token side by side: `GET /whoami` accepts a Ferry access token (as
//! `/resource` does) or a service account's self-signed JWT whose `aud` is this service
//! (direct API authentication, no Ferry token in between), and says which it got.
//!
//! The token's unverified `iss` only routes it: Ferry's issuer to the Ferry verifier,
//! anything else to the service-account verifier. Each verifier then applies all its
//! own checks — explicit `typ`, its own keys, `aud` — so a token routed to the wrong
//! one is refused, never accepted as the other kind.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ferry_verify::{FerryAuth, FerryVerifier, ServiceAccountAuth, ServiceAccountVerifier};
use serde_json::json;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct Verifiers {
    /// Ferry's issuer (routes a token to the Ferry verifier).
    pub ferry_issuer: String,
    /// Ferry access tokens for this audience.
    pub ferry: Arc<FerryVerifier>,
    /// Service-account JWTs for this audience (`SERVICE_ACCOUNTS`; none accepted without).
    pub accounts: Arc<ServiceAccountVerifier>,
}

impl FromRef<Verifiers> for Arc<FerryVerifier> {
    fn from_ref(v: &Verifiers) -> Self {
        v.ferry.clone()
    }
}

impl FromRef<Verifiers> for Arc<ServiceAccountVerifier> {
    fn from_ref(v: &Verifiers) -> Self {
        v.accounts.clone()
    }
}

/// The token of the `Authorization` header, whatever its scheme (`Bearer` or `DPoP`).
fn presented(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, t)| t.trim())
}

/// `GET /whoami`: `{"kind": "ferry", …}` or `{"kind": "service_account", …}`.
pub async fn whoami(State(v): State<Verifiers>, mut parts: Parts) -> Response {
    let from_ferry = presented(&parts)
        .and_then(|t| ferry_verify::parse(t).ok())
        .is_some_and(|t| t.issuer() == Some(v.ferry_issuer.as_str()));
    if from_ferry {
        match FerryAuth::from_request_parts(&mut parts, &v).await {
            Ok(FerryAuth(t)) => Json(json!({
                "kind": "ferry",
                "subject": t.subject,
                "scopes": t.scopes,
                "bound": t.bound_jkt.is_some(),
            }))
            .into_response(),
            Err(refused) => refused,
        }
    } else {
        match ServiceAccountAuth::from_request_parts(&mut parts, &v).await {
            Ok(ServiceAccountAuth(t)) => Json(json!({
                "kind": "service_account",
                "subject": t.account,
                "expires_at": t.expires_at,
            }))
            .into_response(),
            Err(refused) => refused,
        }
    }
}
