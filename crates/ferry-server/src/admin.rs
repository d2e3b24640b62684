//! The admin listener: `/metrics`, `POST /explain`, `/readyz`. It binds 127.0.0.1 by
//! default; anywhere else the configuration requires TLS and bearer tokens. Tokens are
//! stored as SHA-256 hashes (one hex hash per line, several at once for rotation; the
//! file is re-read on every request) and compared in constant time. Every admin request
//! is an audit event.

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::audit::AuditEvent;
use crate::cli::explain::{Subject, explain};
use crate::state::AppState;
use crate::{fingerprint, random_id};

/// The admin router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/explain", post(explain_endpoint))
        .route("/revoke", post(admin_revoke))
        .route("/readyz", get(crate::routes::readyz))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state)
}

/// Whether `presented` hashes to one of the lines of the hash file.
fn token_matches(presented: &str, hashes: &str) -> bool {
    let digest = fingerprint(presented.as_bytes());
    let mut ok = false;
    for line in hashes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        // Every line is compared, in constant time, whatever matched before.
        ok |= aws_lc_rs::constant_time::verify_slices_are_equal(
            line.to_ascii_lowercase().as_bytes(),
            digest.as_bytes(),
        )
        .is_ok();
    }
    ok
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let loaded = state.loaded();
    let path = req.uri().path().to_owned();
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let allowed = match &loaded.config.admin.bearer_token_hashes_file {
        None => true, // loopback without tokens configured
        Some(file) => match (std::fs::read_to_string(file), &presented) {
            (Ok(hashes), Some(p)) => token_matches(p, &hashes),
            (Err(e), _) => {
                tracing::error!(error = %e, "admin token hashes cannot be read; refusing admin requests");
                false
            }
            (Ok(_), None) => false,
        },
    };
    state.audit.record(&AuditEvent {
        kind: "ferry.admin",
        time: state.clock.now(),
        request_id: random_id(12),
        decision: if allowed { "allow" } else { "deny" },
        step: "admin",
        rule: Some(path),
        subject_token_sha256: presented.map(|p| fingerprint(p.as_bytes())),
        ..AuditEvent::default()
    });
    if !allowed {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token", "error_description": "admin authentication required"})),
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ferry-admin\""),
        );
        return r;
    }
    next.run(req).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state, &state.reloads);
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// `POST /explain` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// A subject token (verified as `/token` would).
    pub token: Option<String>,
    /// Or bare claims (verification skipped).
    pub claims: Option<Map<String, Value>>,
    /// Requested audiences.
    pub audience: Vec<String>,
    /// Requested scopes, space-delimited.
    pub scope: Option<String>,
    /// The client.
    pub client_id: Option<String>,
}

async fn explain_endpoint(
    State(state): State<AppState>,
    Json(req): Json<ExplainRequest>,
) -> Response {
    let subject = match (req.token, req.claims) {
        (Some(t), None) => Subject::Token(t.trim().to_owned()),
        (None, Some(c)) => Subject::Claims(c),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "give exactly one of token or claims"})),
            )
                .into_response();
        }
    };
    let loaded = state.loaded();
    match explain(
        &loaded.config,
        state.clock.as_ref(),
        subject,
        &req.audience,
        req.scope.as_deref(),
        req.client_id.as_deref(),
    )
    .await
    {
        Ok(report) => {
            Json(json!({"allowed": report.allowed, "report": report.text})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "explain failed");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "explain failed"})),
            )
                .into_response()
        }
    }
}

/// `POST /revoke` on the admin listener (form): `token=` revokes one token Ferry issued,
/// whoever it was issued to; `subject=`, `provider=` or `client_id=` revokes every token
/// issued to that subject, through that provider or to that client up to now. Each is
/// an audit event.
async fn admin_revoke(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    use crate::revocation::RuleKind;
    let bad = |msg: &'static str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": msg})),
        )
            .into_response()
    };
    let Ok((req, client)) = ferry_core::request::parse_token_action(&body) else {
        return bad("malformed form");
    };
    let now = state.clock.now();
    let targets = [
        req.token.as_deref().map(|t| (None, t)),
        req.subject.as_deref().map(|v| (Some(RuleKind::Subject), v)),
        req.provider
            .as_deref()
            .map(|v| (Some(RuleKind::Provider), v)),
        client
            .client_id
            .as_deref()
            .map(|v| (Some(RuleKind::Client), v)),
    ];
    let mut given = targets.iter().flatten();
    let (Some(&(kind, value)), None) = (given.next(), given.next()) else {
        return bad(ferry_core::error::desc::ONE_TARGET);
    };
    let mut audit = AuditEvent {
        kind: "ferry.revocation",
        time: now,
        request_id: random_id(12),
        decision: "allow",
        step: "revoke",
        ..AuditEvent::default()
    };
    let outcome = match kind {
        None => {
            audit.subject_token_sha256 = Some(fingerprint(value.as_bytes()));
            match crate::tokens::resolve(&state, value, now).await {
                Ok(Some(issued)) => {
                    audit.jti = issued
                        .claims
                        .get("jti")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    audit.reason = Some("revoked by an administrator".into());
                    crate::tokens::revoke(&state, &issued, now)
                        .await
                        .map(|()| json!({"revoked": 1}))
                }
                // An administrator must learn that nothing was revoked, not read a
                // success: a typo or a token of another issuer revokes nothing.
                Ok(None) => return bad(ferry_core::error::desc::NOT_ATTRIBUTABLE),
                Err(e) => Err(e),
            }
        }
        Some(kind) => {
            audit.rule = Some(format!("{kind:?}").to_lowercase());
            audit.subject = Some(value.to_owned());
            audit.reason = Some(format!(
                "every token issued to this {} up to now revoked by an administrator",
                format!("{kind:?}").to_lowercase()
            ));
            crate::tokens::revoke_all(&state, kind, value, now)
                .await
                .map(|rule| json!({"rule": rule}))
        }
    };
    match outcome {
        Ok(body) => {
            state.audit.record(&audit);
            tracing::warn!(reason = ?audit.reason, "administrative revocation");
            Json(body).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "administrative revocation failed: revocation state unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "temporarily_unavailable"})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_hashes() {
        // printf %s secret | sha256sum
        let hashes = "# rotate by adding the new hash first\n2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n";
        assert!(super::token_matches("secret", hashes));
        assert!(!super::token_matches("Secret", hashes));
        assert!(!super::token_matches("", hashes));
    }
}
