//! Liveness and readiness. Readiness means: configuration loaded and a signing key in
//! memory, which holds for as long as this process serves at all. The public `/readyz`
//! answers its status only; the details (providers, key caches and their errors, the
//! signing key id, the key store's health) are for operators, on the admin listener.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Public `GET /readyz`: configuration loaded and a signing key in memory. Always 200
/// while serving; nothing but the status, so that it tells an outsider nothing about
/// the issuers trusted, their health or the signing key.
pub async fn readyz() -> Json<Value> {
    Json(json!({"status": "ready"}))
}

/// Admin `GET /readyz`: the status and its details. An unreachable issuer or key store
/// shows here (and in metrics), but never fails readiness, since every replica shares
/// the same issuers and store.
pub async fn readyz_details(State(state): State<AppState>) -> Json<Value> {
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
    Json(json!({
        "status": "ready",
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
    }))
}
