//! `POST /revoke` (RFC 7009), `POST /introspect` (RFC 7662, RFC 9701) and
//! `GET /revocations` (the signed revocation list).
//!
//! Revocation: the issuing client, authenticated, revokes its own tokens; anything that
//! is not a live token Ferry issued is answered 200, as RFC 7009 §2.2 asks; a token of
//! another client is refused (`unauthorized_client`). Introspection: only clients
//! registered with `introspect: true`; every inactive token — expired, revoked,
//! foreign, malformed, unknown handle — gets exactly `{"active": false}`. The
//! revocation list: only clients registered with `revocations: true`, authenticated
//! with HTTP Basic (a GET carries no form) — it names revoked subjects, clients and
//! providers, which is nobody else's business.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_core::config::ClientAuth;
use ferry_core::error::desc;
use ferry_core::request::{ClientParams, parse_token_action};
use ferry_core::{ErrorCode, OAuthError, Step};

use super::reply::error_response;
use super::token::read_form;
use crate::audit::AuditEvent;
use crate::client_auth::{ClientIdentity, authenticate};
use crate::state::AppState;
use crate::tokens;
use crate::{ids::fingerprint, ids::random_id};

fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn missing_token() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidRequest,
        Step::Request,
        desc::MISSING_TOKEN,
    )
}

fn invalid_client(detail: &str) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        Step::Request,
        desc::INVALID_CLIENT,
    )
    .detail(detail.to_owned())
}

type Peer = Option<Extension<crate::forwarded::ClientAddr>>;
/// The client certificate the request came with (RFC 8705 §2 client authentication).
type Cert = Option<Extension<crate::client_cert::PeerCertificate>>;

/// Reads the form and authenticates a confidential client, within the source's and the
/// global rate limits (as `/token`); the request holds the returned concurrency permit
/// while it is served.
async fn client_request<'s>(
    state: &'s AppState,
    (peer, certificate): (Peer, Cert),
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<
    (
        ferry_core::request::TokenActionRequest,
        ClientIdentity,
        tokio::sync::SemaphorePermit<'s>,
    ),
    OAuthError,
> {
    super::token::admit(state, peer.map(|p| p.0.0))?;
    let loaded = state.loaded();
    let bytes = read_form(&loaded, method, headers, body).await?;
    let permit = super::token::permit(state)?;
    let (req, params) = parse_token_action(&bytes)?;
    let chain = certificate.map(|c| c.0.0);
    let client = authenticate(state, &loaded, headers, &params, chain.as_deref())
        .await?
        .filter(|c| c.method != ClientAuth::None)
        .ok_or_else(|| invalid_client("client authentication required"))?;
    Ok((req, client, permit))
}

/// Refuses (403 `unauthorized_client`, with the fixed `description`) a client not
/// registered with `flag`.
fn registered_for(
    state: &AppState,
    client: &ClientIdentity,
    (flag, description): (&'static str, &'static str),
    has: impl Fn(&ferry_core::config::Client) -> bool,
) -> Result<(), OAuthError> {
    let allowed = state
        .loaded()
        .accounts
        .clients
        .get(&client.id)
        .is_some_and(|c| has(&c.client));
    if allowed {
        return Ok(());
    }
    Err(
        OAuthError::new(ErrorCode::UnauthorizedClient, Step::Policy, description)
            .status(403)
            .detail(format!(
                "client {} is not registered with {flag}",
                client.id
            )),
    )
}

fn audit_event(state: &AppState, kind: &'static str) -> AuditEvent {
    AuditEvent {
        kind,
        time: state.clock.now(),
        request_id: random_id(12),
        decision: "allow",
        step: "revoke",
        ..AuditEvent::default()
    }
}

/// `POST /revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    peer: Peer,
    certificate: Cert,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = state.clock.now();
    let result = async {
        let (req, client, _permit) =
            client_request(&state, (peer, certificate), &method, &headers, body).await?;
        let token = req.token.ok_or_else(missing_token)?;
        let mut audit = audit_event(&state, "ferry.revocation");
        audit.client_id = Some(client.id.clone());
        audit.subject_token_sha256 = Some(fingerprint(token.as_bytes()));
        let Some(issued) = tokens::resolve(&state, &token, now)
            .await
            .map_err(crate::errors::revocation_unavailable)?
        else {
            // RFC 7009 §2.2: an invalid token needs no action and gets 200.
            return Ok(());
        };
        if issued.profile.client_id != client.id {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                Step::Policy,
                desc::NOT_YOUR_TOKEN,
            )
            .detail(format!(
                "client {} revoking a token of another client",
                client.id
            )));
        }
        tokens::revoke(&state, &issued, now)
            .await
            .map_err(crate::errors::revocation_unavailable)?;
        audit.jti = Some(issued.profile.jti.clone());
        audit.subject = Some(issued.profile.sub.clone());
        audit.reason = Some("revoked by its client".into());
        state.audit.record(&audit);
        tracing::info!(client = %client.id, jti = ?audit.jti, "token revoked");
        Ok(())
    }
    .await;
    match result {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => {
            tracing::debug!(error = %e.code, detail = %e.detail, "revocation refused");
            state
                .warnings
                .warn("revocation refuseds (details at debug level)");
            error_response(&e)
        }
    }
}

const INTROSPECTION_JWT: &str = "application/token-introspection+jwt";

/// `POST /introspect`.
pub async fn introspect(
    State(state): State<AppState>,
    peer: Peer,
    certificate: Cert,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = state.clock.now();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let result: Result<Response, OAuthError> = async {
        let (req, client, _permit) =
            client_request(&state, (peer, certificate), &method, &headers, body).await?;
        registered_for(
            &state,
            &client,
            ("introspect", desc::NOT_INTROSPECTOR),
            |c| c.introspect,
        )?;
        let token = req.token.ok_or_else(missing_token)?;
        let issued = tokens::resolve(&state, &token, now)
            .await
            .map_err(crate::errors::revocation_unavailable)?;
        let live = match issued {
            Some(i) => {
                let revoked = tokens::is_revoked(&state, &i.profile, now)
                    .await
                    .map_err(crate::errors::revocation_unavailable)?;
                (!revoked).then_some(i)
            }
            None => None,
        };
        // The phantom-token pattern: a gateway swaps a live handle for its JWT.
        if let Some(i) = &live
            && i.reference
            && accept.contains("application/jwt")
        {
            let mut r = i.jwt.clone().into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            );
            return Ok(r);
        }
        let body = match &live {
            Some(i) => tokens::introspection(i),
            None => tokens::inactive(),
        };
        if accept.contains(INTROSPECTION_JWT) {
            let jwt = tokens::introspection_jwt(&state, &client.id, body, now)?;
            let mut r = jwt.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(INTROSPECTION_JWT),
            );
            return Ok(r);
        }
        Ok(axum::Json(body).into_response())
    }
    .await;
    match result {
        Ok(r) => no_store(r),
        Err(e) => {
            tracing::debug!(error = %e.code, detail = %e.detail, "introspection refused");
            state
                .warnings
                .warn("introspection refuseds (details at debug level)");
            error_response(&e)
        }
    }
}

/// `GET /revocations`: the signed revocation list (`typ: ferry-revocations+jwt`), for a
/// client registered with `revocations: true`, within the source's and the global rate
/// limits (as `/token`).
pub async fn revocations(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    let reader = async {
        super::token::admit(&state, peer.map(|p| p.0.0))?;
        let permit = super::token::permit(&state)?;
        // HTTP Basic only: the empty form leaves nothing else to authenticate with.
        let client = authenticate(
            &state,
            &state.loaded(),
            &headers,
            &ClientParams::default(),
            None,
        )
        .await?
        .ok_or_else(|| invalid_client("client authentication required"))?;
        registered_for(
            &state,
            &client,
            ("revocations", desc::NOT_REVOCATION_READER),
            |c| c.revocations,
        )?;
        Ok::<_, OAuthError>(permit)
    };
    let _permit = match reader.await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e.code, detail = %e.detail, "revocation list refused");
            state
                .warnings
                .warn("revocation list refuseds (details at debug level)");
            return error_response(&e);
        }
    };
    match tokens::revocation_list(&state, state.clock.now()).await {
        Ok(jwt) => {
            let mut r = jwt.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => {
            tracing::debug!(detail = %e.detail, "revocation list unavailable");
            state
                .warnings
                .error("revocation list unavailable (details at debug level)");
            error_response(&e)
        }
    }
}
