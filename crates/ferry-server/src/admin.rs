//! The admin listener (described by `openapi/admin.yaml`): `GET /metrics`,
//! `POST /explain`, `POST /revoke`, `GET /readyz` (with details). It binds 127.0.0.1 by
//! default; anywhere else TLS and bearer tokens are required. How it authenticates is
//! decided when its socket is bound and kept for the socket's life ([`guard`]). Every
//! admin request is an audit event.

mod guard;
pub use guard::{AdminAuth, OffLoopback};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use ferry_core::config::Admin;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::audit::AuditEvent;
use crate::cli::explain::{ExplainContext, Subject, explain};
use crate::listener::Server;
use crate::state::AppState;
use crate::tls::acceptor;
use crate::{ids::fingerprint, ids::random_id};

/// Longest subject, provider or client a revocation rule may name.
const MAX_RULE_VALUE: usize = 1024;

/// The admin route table: each path, the method `openapi/admin.yaml` documents for it,
/// and its handler. The router is built from it, and a test compares it with the
/// document's `paths`.
fn table() -> Vec<(&'static str, &'static str, MethodRouter<AppState>)> {
    vec![
        ("/metrics", "get", get(metrics_page)),
        ("/explain", "post", post(explain_endpoint)),
        ("/revoke", "post", post(admin_revoke)),
        ("/readyz", "get", get(crate::routes::readyz_details)),
    ]
}

/// Every admin route and the method it serves (lower case, as OpenAPI names them):
/// what `openapi/admin.yaml` describes.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    table().into_iter().map(|(p, m, _)| (p, m)).collect()
}

/// The admin router, authenticating as `auth` says for as long as it serves.
pub fn router(state: AppState, auth: AdminAuth) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |r, (path, _, handler)| {
            r.route(path, handler)
        })
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), Arc::new(auth)),
            guard::authenticate,
        ))
        .with_state(state)
}

/// Why the admin listener could not be bound or served.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be bound (or taken from the service manager).
    #[error("binding the admin listener {listen}: {source}")]
    Bind {
        /// `admin.listen`, or that it is off for an inherited socket.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bound address could not be read back.
    #[error("{0}")]
    Address(#[source] std::io::Error),
    /// Bound off loopback without TLS and bearer tokens.
    #[error(transparent)]
    OffLoopback(#[from] guard::OffLoopback),
    /// The admin certificate and key do not load.
    #[error("admin TLS: {0}")]
    Tls(#[source] crate::tls::TlsError),
}

/// The admin listener's socket: bound, its authentication decided from the address
/// really bound (not the configured name), not yet serving.
#[derive(Debug)]
pub struct AdminSocket {
    tcp: tokio::net::TcpListener,
    addr: SocketAddr,
    auth: AdminAuth,
    admin: Admin,
}

impl AdminSocket {
    /// Binds the listener `admin` configures, if any, or takes `inherited` (socket
    /// activation), which serves even when `admin.listen` is off: the service manager
    /// passed it on purpose. Off loopback without TLS and tokens this fails, whatever
    /// the configuration's validation said of the name.
    pub async fn bind(
        admin: &Admin,
        inherited: Option<std::net::TcpListener>,
    ) -> Result<Option<Self>, AdminError> {
        let listen = match (&admin.listen, &inherited) {
            (Some(listen), _) => listen.as_str(),
            (None, Some(_)) => "admin.listen (off)",
            (None, None) => return Ok(None),
        };
        let tcp = crate::listener::activation::bind_or_inherit(listen, inherited)
            .await
            .map_err(|source| AdminError::Bind {
                listen: listen.to_owned(),
                source,
            })?;
        let addr = tcp.local_addr().map_err(AdminError::Address)?;
        let auth = AdminAuth::at_bind(admin, addr)?;
        Ok(Some(Self {
            tcp,
            addr,
            auth,
            admin: admin.clone(),
        }))
    }

    /// Serves the admin router on the socket, in the background, through the same
    /// listener as the public one (header and idle deadlines, per-source cap). It has
    /// no graceful shutdown: it ends with the process.
    pub fn serve(self, state: AppState) -> Result<(), AdminError> {
        let app = router(state.clone(), self.auth);
        let tls = match &self.admin.tls {
            Some(t) => Some(acceptor(&t.cert_file, &t.key_file).map_err(AdminError::Tls)?),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let limits = state.loaded().config.limits.clone();
        let server = Server::new(self.tcp, tls, &limits, state.metrics.clone());
        // Under the binary's target, beside "ferry listening on": a filter that keeps
        // the listening lines (`ferry=info`) keeps both.
        tracing::info!(target: "ferry", "ferry admin listening on {scheme}://{}", self.addr);
        tokio::spawn(server.run(app, std::future::pending()));
        Ok(())
    }
}

/// `GET /metrics`: the OpenMetrics page (the admin and the metrics-only listeners).
pub(crate) async fn metrics_page(State(state): State<AppState>) -> Response {
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
    /// The request's context as rules see it (`request.source_ip`, …).
    #[serde(default)]
    pub request: ExplainContext,
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
        &req.request,
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
    // A rule is kept (and listed to every relying service) until its tokens expire: its
    // value is bounded like every other stored value.
    if kind.is_some() && value.len() > MAX_RULE_VALUE {
        return bad(ferry_core::error::desc::RULE_VALUE_TOO_LONG);
    }
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
                    audit.jti = Some(issued.profile.jti.clone());
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
    revocation_answer(&state, &audit, outcome)
}

/// The answer to an administrative revocation: its audit event when it was stored, 503
/// when the revocation state is unavailable.
fn revocation_answer(
    state: &AppState,
    audit: &AuditEvent,
    outcome: Result<serde_json::Value, impl std::fmt::Display>,
) -> Response {
    match outcome {
        Ok(body) => {
            state.audit.record(audit);
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
