//! Liveness and readiness. Readiness means: configuration loaded and a signing key in
//! memory, which holds for as long as this process serves at all.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: configuration loaded and a signing key in memory.
pub async fn readyz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ready",
        "providers": state.providers.len(),
        "audiences": state.config.audience_names.len(),
        "signing_key": state.signer.kid(),
    }))
}
