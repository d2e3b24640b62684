//! Liveness and readiness. Readiness means: configuration loaded and a signing key in
//! memory, the process not shutting down, and its data directory taking writes
//! ([`crate::lifecycle`]). The public `/readyz` answers its status only; the details
//! (providers, key caches and their errors, the signing key id, the key store's and the
//! data directory's health) are for operators, on the admin listener.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::lifecycle::DataDir;
use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Public `GET /readyz`: 200 `{"status": "ready"}`, or 503 with the reason's short name
/// (`shutting down`, `data directory not writable`) and nothing else, so that it tells an
/// outsider nothing about the issuers trusted, their health or the signing key.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.lifecycle.not_ready() {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": why})),
        )
            .into_response(),
    }
}

/// Admin `GET /readyz`: the status and its details. An unreachable issuer or key store
/// shows here (and in metrics), but never fails readiness, since every replica shares
/// the same issuers and store; shutting down and an unwritable data directory (this
/// replica's own) do, with the same status code as the public `/readyz`.
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
    let not_ready = state.lifecycle.not_ready();
    let body = Json(json!({
        "status": not_ready.unwrap_or("ready"),
        "shutting_down": state.lifecycle.draining(),
        "data_dir": match state.lifecycle.data_dir() {
            DataDir::NotUsed => "not used".to_owned(),
            DataDir::Writable => "ok".to_owned(),
            DataDir::NotWritable(e) => format!("not writable: {e}"),
        },
        "providers": providers,
        "audiences": loaded.config.audience_names.len(),
        "signing_key": state.keys.active().kid(),
        "key_ring_version": state.keys.snapshot().version,
        "key_store": match state.reloads.key_store_error() {
            None => "ok".to_owned(),
            Some(e) => format!("unavailable: {e}"),
        },
        "revocation_store": if state.revocations.store_up() { "ok" } else { "unavailable" },
        "revocation_sync_age_seconds": state.revocations.sync_age(),
    }));
    match not_ready {
        None => body.into_response(),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, body).into_response(),
    }
}
