//! Client authentication at `/token` (RFC 6749 §2.3, RFC 7523 §2.2), one method per
//! request:
//!
//! - `client_secret_basic`: HTTP Basic; both the raw `id:secret` (Google's libraries,
//!   Authlib) and the form-urlencoded form of RFC 6749 §2.3.1 (Rust `oauth2`) are
//!   accepted.
//! - `client_secret_post`: `client_id` and `client_secret` in the form.
//! - `private_key_jwt`: a `client_assertion` whose `iss` and `sub` are the client, whose
//!   `aud` is Ferry's issuer identifier as a single string (the token endpoint URL only
//!   for clients configured for it), with a single-use `jti`.
//! - `tls_client_auth` and `self_signed_tls_client_auth` (RFC 8705 §2): `client_id` in
//!   the form and the connection's client certificate, checked by
//!   [`crate::client_mtls`]. A certificate is a method only for a client registered with
//!   one of these (any other client may present one for its tokens to be bound to): such
//!   a client that also sends a secret or an assertion uses two methods (400).
//! - public clients: `client_id` alone, for clients registered with `auth: none` (and
//!   any unregistered `client_id`, which is only a label).
//!
//! Secrets are server-generated with 256 bits of entropy, so a fast hash suffices:
//! stored as SHA-256, compared in constant time. No slow password hash sits on `/token`.
//! Failures are `401 invalid_client` with `WWW-Authenticate`.

use axum::http::{HeaderMap, header};
use base64::Engine;
use ferry_core::config::ClientAuth;
use ferry_core::error::desc;
use ferry_core::request::{CLIENT_ASSERTION_JWT, ClientParams};
use ferry_core::{ErrorCode, OAuthError, Step};

use crate::accounts::verify_assertion;
use crate::client_cert::ClientChain;
use crate::errors::Role;
use crate::state::{AppState, Loaded};

/// The authenticated (or self-declared public) client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// `client_id`.
    pub id: String,
    /// How it authenticated.
    pub method: ClientAuth,
    /// Whether it is registered (only registered clients have a rate bucket of their
    /// own: an unregistered `client_id` is a label anyone may invent).
    pub registered: bool,
}

/// Longest unregistered `client_id` (a label, audited and matched by policies).
pub const MAX_PUBLIC_CLIENT_ID: usize = 128;

/// Whether `id` may be a public client's label: 1 to 128 characters of RFC 6749
/// Appendix A.1's VSCHAR (printable ASCII, `%x20-7E`), outside the `ferry-` prefix Ferry
/// writes itself when no client is named (`ferry-provider:…`, `ferry-service-account:…`):
/// a caller must not pass for a service account in a relying service's eyes.
fn label_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PUBLIC_CLIENT_ID
        && id.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && id.trim() == id
        && !id
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("ferry-"))
}

fn fail(detail: impl Into<String>) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidClient,
        Step::Request,
        desc::INVALID_CLIENT,
    )
    .detail(detail)
}

fn secret_ok(stored: Option<&String>, presented: &str) -> bool {
    stored.is_some_and(|h| {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            h.as_bytes(),
            crate::ids::fingerprint(presented.as_bytes()).as_bytes(),
        )
        .is_ok()
    })
}

fn form_decode(s: &str) -> String {
    ferry_core::form::decode(s.as_bytes()).into_owned()
}

/// The credentials of an `Authorization: Basic …` header. The scheme name is
/// case-insensitive (RFC 7235 §2.1): `BASIC` is Basic, and must not let a wrong secret
/// pass as "no client authentication".
fn basic_credentials(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    scheme.eq_ignore_ascii_case("basic").then_some(rest)
}

/// A new client secret and the hash to register (`ferry clients new-secret`).
pub fn new_secret() -> (String, String) {
    let secret = crate::ids::random_id(32);
    let hash = crate::ids::fingerprint(secret.as_bytes());
    (secret, hash)
}

/// Authenticates the client of a token request; `Ok(None)` when none is named.
/// `certificate`: the client certificate the request came with.
pub async fn authenticate(
    state: &AppState,
    loaded: &Loaded,
    headers: &HeaderMap,
    params: &ClientParams,
    certificate: Option<&ClientChain>,
) -> Result<Option<ClientIdentity>, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    let methods = usize::from(basic.is_some())
        + usize::from(params.client_secret.is_some())
        + usize::from(params.client_assertion.is_some());
    // A certificate is the method of a client registered with a certificate method.
    let by_certificate = certificate.is_some()
        && params
            .client_id
            .as_deref()
            .and_then(|id| loaded.accounts.clients.get(id))
            .is_some_and(|c| c.client.auth.is_certificate());
    if methods + usize::from(by_certificate) > 1 {
        // RFC 6749 §2.3: a client MUST NOT use more than one method per request.
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Request,
            desc::INVALID_CLIENT,
        )
        .status(400)
        .detail("more than one client authentication method"));
    }
    if let Some(b64) = basic {
        return secret_basic(loaded, b64, params).map(Some);
    }
    if let Some(secret) = &params.client_secret {
        return secret_post(loaded, secret, params).map(Some);
    }
    if let Some(assertion) = &params.client_assertion {
        return private_key_jwt(state, loaded, assertion, params)
            .await
            .map(Some);
    }
    with_certificate(state, loaded, params, certificate)
}

/// `tls_client_auth` / `self_signed_tls_client_auth` (RFC 8705 §2) for a client that
/// names itself with `client_id`; any other client goes on as public.
fn with_certificate(
    state: &AppState,
    loaded: &Loaded,
    params: &ClientParams,
    certificate: Option<&ClientChain>,
) -> Result<Option<ClientIdentity>, OAuthError> {
    let Some((id, c)) = params.client_id.as_deref().and_then(|id| {
        loaded
            .accounts
            .clients
            .get(id)
            .map(|c| (id, c))
            .filter(|(_, c)| c.client.auth.is_certificate())
    }) else {
        return public(loaded, params);
    };
    let check = c
        .certificate
        .as_ref()
        .ok_or_else(|| fail("client has no certificate check"))?;
    crate::client_mtls::verify(check, certificate, state.clock.now())
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(ClientIdentity {
        id: id.to_owned(),
        method: c.client.auth,
        registered: true,
    }))
}

/// `client_secret_basic`.
fn secret_basic(
    loaded: &Loaded,
    b64: &str,
    params: &ClientParams,
) -> Result<ClientIdentity, OAuthError> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| fail("malformed Basic credentials"))?;
    let (raw_id, raw_secret) = decoded
        .split_once(':')
        .ok_or_else(|| fail("malformed Basic credentials"))?;
    // Raw first (Google's libraries, Authlib), then RFC 6749 §2.3.1's urlencoding.
    for (id, secret) in [
        (raw_id.to_owned(), raw_secret.to_owned()),
        (form_decode(raw_id), form_decode(raw_secret)),
    ] {
        let Some(c) = loaded
            .accounts
            .clients
            .get(&id)
            .filter(|c| c.client.auth == ClientAuth::SecretBasic)
        else {
            continue;
        };
        if params.client_id.as_deref().is_some_and(|p| p != id) {
            return Err(fail("client_id does not match the Basic credentials"));
        }
        if secret_ok(c.client.secret_sha256.as_ref(), &secret) {
            return Ok(ClientIdentity {
                id,
                method: ClientAuth::SecretBasic,
                registered: true,
            });
        }
    }
    Err(fail("Basic credentials rejected"))
}

/// `client_secret_post`.
fn secret_post(
    loaded: &Loaded,
    secret: &str,
    params: &ClientParams,
) -> Result<ClientIdentity, OAuthError> {
    let id = params
        .client_id
        .as_deref()
        .ok_or_else(|| fail("client_secret without client_id"))?;
    let c = loaded
        .accounts
        .clients
        .get(id)
        .filter(|c| c.client.auth == ClientAuth::SecretPost)
        .ok_or_else(|| fail("not a client_secret_post client"))?;
    if !secret_ok(c.client.secret_sha256.as_ref(), secret) {
        return Err(fail("client_secret rejected"));
    }
    Ok(ClientIdentity {
        id: id.to_owned(),
        method: ClientAuth::SecretPost,
        registered: true,
    })
}

/// `private_key_jwt` (RFC 7523 §2.2): its `jti` single use.
async fn private_key_jwt(
    state: &AppState,
    loaded: &Loaded,
    assertion: &str,
    params: &ClientParams,
) -> Result<ClientIdentity, OAuthError> {
    if params.client_assertion_type.as_deref() != Some(CLIENT_ASSERTION_JWT) {
        return Err(fail("unsupported client_assertion_type"));
    }
    let token = ferry_verify::parse(assertion).map_err(|e| fail(e.to_string()))?;
    let id = token
        .required_issuer()
        .map_err(|e| fail(e.to_string()))?
        .to_owned();
    if params.client_id.as_deref().is_some_and(|p| p != id) {
        return Err(fail("client_id does not match the assertion"));
    }
    let c = loaded
        .accounts
        .clients
        .get(&id)
        .filter(|c| c.client.auth == ClientAuth::PrivateKeyJwt)
        .ok_or_else(|| fail("not a private_key_jwt client"))?;
    let (keys, rules) = c.keys.as_ref().ok_or_else(|| fail("client has no keys"))?;
    verify_assertion(
        token,
        keys,
        rules,
        state.replay.as_ref(),
        state.clock.now(),
        i64::try_from(loaded.config.limits.replay_clock_skew).unwrap_or(0),
    )
    .await
    .map_err(|e| Role::ClientAssertion.assertion_error(&e))?;
    Ok(ClientIdentity {
        id,
        method: ClientAuth::PrivateKeyJwt,
        registered: true,
    })
}

/// No credentials: a public client, or none named.
fn public(loaded: &Loaded, params: &ClientParams) -> Result<Option<ClientIdentity>, OAuthError> {
    let Some(id) = params.client_id.as_deref() else {
        return Ok(None);
    };
    match loaded.accounts.clients.get(id) {
        // A registered confidential client must authenticate.
        Some(c) if c.client.auth != ClientAuth::None => Err(fail("client authentication required")),
        Some(_) => Ok(Some(ClientIdentity {
            id: id.to_owned(),
            method: ClientAuth::None,
            registered: true,
        })),
        // An unregistered id is bounded before it is audited or matched: nothing a caller
        // invents may grow what Ferry keeps.
        None if !label_ok(id) => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Request,
            desc::INVALID_CLIENT_ID,
        )
        .detail(
            "unregistered client_id too long, not printable ASCII or in Ferry's ferry- namespace",
        )),
        None => Ok(Some(ClientIdentity {
            id: id.to_owned(),
            method: ClientAuth::None,
            registered: false,
        })),
    }
}
