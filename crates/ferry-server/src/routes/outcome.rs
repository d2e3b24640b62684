//! The outcome of a token request, allowed or denied, becomes one audit event, one
//! metrics count and the response.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ferry_core::response::TokenResponse;
use ferry_core::{ErrorCode, OAuthError};

use super::reply::error_response;
use crate::audit::AuditEvent;
use crate::metrics::ExchangeLabels;
use crate::state::{AppState, Loaded};

/// Records the outcome and answers.
pub(super) fn respond(
    state: &AppState,
    loaded: &Loaded,
    result: Result<TokenResponse, OAuthError>,
    audit: &mut AuditEvent,
) -> Response {
    let audience = audit
        .audiences
        .first()
        .filter(|a| loaded.config.audience_names.contains(a))
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    let labels = ExchangeLabels {
        provider: audit.provider.clone().unwrap_or_else(|| "none".to_owned()),
        audience,
        decision: String::new(),
        error: String::new(),
    };
    match result {
        Ok(resp) => allowed(state, resp, labels, audit),
        Err(err) => denied(state, &err, labels, audit),
    }
}

fn allowed(
    state: &AppState,
    resp: TokenResponse,
    mut labels: ExchangeLabels,
    audit: &mut AuditEvent,
) -> Response {
    labels.decision = "allow".into();
    state.metrics.exchanges.get_or_create(&labels).inc();
    audit.decision = "allow";
    audit.step = "mint";
    state.audit.record(audit);
    // The audit event on stdout is the record of every issued token.
    tracing::debug!(request_id = %audit.request_id, provider = ?audit.provider, subject = ?audit.subject, "token issued");
    let mut r = axum::Json(resp).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn denied(
    state: &AppState,
    err: &OAuthError,
    mut labels: ExchangeLabels,
    audit: &mut AuditEvent,
) -> Response {
    labels.decision = "deny".into();
    labels.error = err.code.as_str().into();
    state.metrics.exchanges.get_or_create(&labels).inc();
    if err.expression_error {
        state
            .metrics
            .expression_errors
            .get_or_create(&crate::metrics::ProviderLabels {
                provider: labels.provider.clone(),
            })
            .inc();
    }
    audit.decision = "deny";
    audit.step = err.step.as_str();
    audit.error = Some(err.code.as_str());
    // A rule or detail may quote a request value: bounded before it is logged.
    if let Some(rule) = &err.rule {
        audit.rule = Some(crate::audit::clip(rule));
    }
    audit.reason = Some(crate::audit::clip(if err.detail.is_empty() {
        err.description.as_ref()
    } else {
        err.detail.as_str()
    }));
    state.audit.record(audit);
    if err.code == ErrorCode::ServerError {
        // The first in each interval with its detail, then a count: an internal fault
        // every request hits must not flood the logs.
        const FAILED: &str = "token requests failed with an internal error";
        match state.warnings.note_at(
            FAILED,
            crate::repeated::Level::Error,
            ferry_verify::time::instant_now(),
        ) {
            Some(repeated) => {
                tracing::error!(request_id = %audit.request_id, error = %err, repeated, "{FAILED}");
            }
            None => {
                tracing::debug!(request_id = %audit.request_id, error = %err, "{FAILED}");
            }
        }
    } else {
        tracing::info!(request_id = %audit.request_id, error = %err, "token request denied");
    }
    error_response(err)
}
