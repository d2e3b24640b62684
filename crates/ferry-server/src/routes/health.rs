//! Liveness and readiness. Readiness means: configuration loaded, this replica able to
//! sign with the active key (it fails when this replica cannot unseal it: a
//! key-encryption key it does not hold), the process not shutting down, and its data
//! directory taking writes ([`crate::lifecycle`]). Each of these faults is this
//! replica's alone, so the load balancer should send its requests elsewhere. The public
//! `/readyz` answers its status only; the details (providers, key caches and their
//! errors, the signing key id, why this replica cannot sign, the key store's and the
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

/// Why this replica should get no traffic, if it should not: shutting down, an
/// unwritable data directory, or unable to sign.
fn not_ready(state: &AppState) -> Option<&'static str> {
    state
        .lifecycle
        .not_ready()
        .or_else(|| (!state.keys.snapshot().can_sign()).then_some("cannot sign"))
}

/// Public `GET /readyz`: 200 `{"status": "ready"}`, or 503 with the reason's short name
/// (`shutting down`, `data directory not writable`, `cannot sign`) and nothing else, so
/// that it tells an outsider nothing about the issuers trusted, their health or the
/// signing key.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match not_ready(&state) {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": why})),
        )
            .into_response(),
    }
}

/// Admin `GET /readyz`: the status and its details, with the public endpoint's status
/// code. An unreachable issuer or key store shows here (and in metrics), but never
/// fails readiness, since every replica shares the same issuers and store; shutting
/// down, an unwritable data directory and a replica that cannot sign (this replica's
/// own faults) do, and `signing` says why it cannot sign.
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
    let signing = match &keys.cannot_sign {
        None => json!({"can_sign": true}),
        Some(why) => json!({"can_sign": false, "reason": why}),
    };
    let not_ready = not_ready(&state);
    let body = Json(json!({
        "status": not_ready.unwrap_or("ready"),
        "signing": signing,
        "shutting_down": state.lifecycle.draining(),
        "data_dir": match state.lifecycle.data_dir() {
            DataDir::NotUsed => "not used".to_owned(),
            DataDir::Writable => "ok".to_owned(),
            DataDir::NotWritable(e) => format!("not writable: {e}"),
        },
        "providers": providers,
        "audiences": loaded.config.audience_names.len(),
        "signing_key": keys.active.kid(),
        "key_ring_version": keys.version,
        "key_encryption_keys": state.keys.kek_ids(),
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
