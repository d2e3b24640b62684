//! Liveness and readiness. Readiness means: configuration loaded and this replica able
//! to sign with the active key. It fails when this replica cannot unseal the active key
//! (a key-encryption key it does not hold): that fault is this replica's alone, so the
//! load balancer should send its requests elsewhere. The public `/readyz` answers its
//! status only; the details (providers, key caches and their errors, the signing key id,
//! why this replica cannot sign, the key store's health) are for operators, on the
//! admin listener.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Public `GET /readyz`: 200 while this replica can sign, 503 when it cannot; nothing
/// but the status, so that it tells an outsider nothing about the issuers trusted,
/// their health or the signing key.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.keys.snapshot().can_sign() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready"})),
        )
            .into_response()
    }
}

/// Admin `GET /readyz`: the status and its details, with the public endpoint's status
/// code. An unreachable issuer or key store shows here (and in metrics), but never
/// fails readiness, since every replica shares the same issuers and store; a replica
/// that cannot sign fails it, and `signing` says why.
pub async fn readyz_details(State(state): State<AppState>) -> Response {
    let loaded = state.loaded();
    let mut providers: Vec<Value> = loaded
        .providers
        .iter()
        .map(|p| {
            json!({
                "id": p.config.id,
                "kind": p.config.kind.as_str(),
                "keys": match p.keys.stats() {
                    Some(stats) => json!(stats),
                    None => json!("static"),
                },
            })
        })
        .collect();
    providers.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let keys = state.keys.snapshot();
    let (status, code, signing) = match &keys.cannot_sign {
        None => ("ready", StatusCode::OK, json!({"can_sign": true})),
        Some(why) => (
            "not ready",
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"can_sign": false, "reason": why}),
        ),
    };
    let body = Json(json!({
        "status": status,
        "signing": signing,
        "providers": providers,
        "audiences": loaded.config.audience_names.len(),
        "signing_key": keys.active.kid(),
        "key_ring_version": keys.version,
        "key_encryption_keys": state.keys.kek_ids(),
        "key_store": match state.reloads.key_store_error() {
            None => "ok".to_owned(),
            Some(e) => format!("unavailable: {e}"),
        },
    }));
    (code, body).into_response()
}
