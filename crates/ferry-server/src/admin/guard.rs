//! The admin listener's gate, decided when its socket is bound ([`AdminAuth`]) and
//! kept for the socket's life: a reload can neither turn the tokens off nor make a
//! socket bound elsewhere count as loopback (a reload that changes the admin settings is
//! refused as a whole, `tasks::reload`). Bearer tokens are stored as SHA-256 hashes (one
//! hex hash per line, several at once for rotation; the file is re-read on every
//! request) and compared in constant time.
//!
//! A loopback listener without tokens trusts whoever can reach it, so it refuses what
//! only a browser sends: an `Origin` header or a cross-site `Sec-Fetch-Site` (a page
//! posting to `http://127.0.0.1:9090`: CSRF), and a `Host` that is not a loopback name
//! (DNS rebinding: the page's own name re-resolved to 127.0.0.1). State-changing
//! endpoints take only their documented content type on every listener: no endpoint
//! reads a `text/plain` or multipart body, and `/explain`'s `application/json` cannot
//! be sent cross-origin without a CORS preflight, which this listener never answers.
//! `/revoke`'s form is itself a CORS-safelisted type (Fetch standard, "CORS-safelisted
//! request-header"): a plain HTML form can send it, and there the `Origin` check (every
//! current browser sends `Origin` on a cross-origin POST) is what refuses the page.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_core::config::Admin;
use serde_json::json;

use crate::audit::AuditEvent;
use crate::state::AppState;
use crate::{ids::fingerprint, ids::random_id};

/// How the admin listener authenticates requests: fixed when its socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAuth {
    /// The socket is bound to a loopback address: browser requests are refused.
    loopback: bool,
    /// The file of accepted bearer-token hashes; `None` only on loopback.
    tokens: Option<PathBuf>,
}

/// An admin listener bound off loopback without TLS and bearer tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the admin listener is bound to {0}, off loopback: it requires admin.tls and admin.bearer_token_hashes_file"
)]
pub struct OffLoopback(pub SocketAddr);

impl AdminAuth {
    /// The authentication of a listener configured with `admin` and bound to `bound`.
    /// Off loopback — judged by the address the socket is really bound to, not the
    /// configured name — TLS and bearer tokens are required.
    pub fn at_bind(admin: &Admin, bound: SocketAddr) -> Result<Self, OffLoopback> {
        let loopback = bound.ip().to_canonical().is_loopback();
        if !loopback && (admin.tls.is_none() || admin.bearer_token_hashes_file.is_none()) {
            return Err(OffLoopback(bound));
        }
        Ok(Self {
            loopback,
            tokens: admin.bearer_token_hashes_file.clone(),
        })
    }
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

/// Whether a `Host` value names this machine's loopback interface: `localhost` or a
/// loopback address literal, with or without a port.
fn is_loopback_host(value: &str) -> bool {
    let port_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let host = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, p)) if p.is_empty() || p.strip_prefix(':').is_some_and(port_ok) => h,
            _ => return false,
        },
        None => match value.rsplit_once(':') {
            Some((h, p)) if port_ok(p) => h,
            Some(_) => return false,
            None => value,
        },
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Why a request to a loopback listener looks like a browser's, if it does.
fn browser_request(headers: &HeaderMap, authority: Option<&str>) -> Option<&'static str> {
    if headers.contains_key(header::ORIGIN) {
        return Some("a request with an Origin header (a web page)");
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v != "none" && v != "same-origin")
    {
        return Some("a cross-site browser request");
    }
    // HTTP/1.1 sends Host; HTTP/2 the :authority pseudo-header (the URI's authority).
    let host = match headers.get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => authority,
    };
    match host {
        Some(h) if is_loopback_host(h) => None,
        // No Host at all (HTTP/1.0) is no browser's request.
        None if !headers.contains_key(header::HOST) => None,
        _ => Some("a Host that is not a loopback name (DNS rebinding)"),
    }
}

/// The content type a state-changing endpoint documents (README, "Operating Ferry").
fn required_content_type(method: &Method, path: &str) -> Option<&'static str> {
    match (method, path) {
        (&Method::POST, "/explain") => Some("application/json"),
        (&Method::POST, "/revoke") => Some("application/x-www-form-urlencoded"),
        _ => None,
    }
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(want))
}

fn refusal(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// Whether `presented` is one of the tokens whose hashes `file` holds; an unreadable
/// file refuses every token (and says so, at most once per interval).
fn token_in_file(state: &AppState, file: &Path, presented: Option<&str>) -> bool {
    match (std::fs::read_to_string(file), presented) {
        (Ok(hashes), Some(p)) => token_matches(p, &hashes),
        (Err(e), _) => {
            const UNREADABLE: &str = "admin token hashes cannot be read; refusing admin requests";
            if let Some(repeated) = state.warnings.note_at(
                UNREADABLE,
                crate::repeated::Level::Error,
                ferry_verify::time::instant_now(),
            ) {
                tracing::error!(error = %e, repeated, "{UNREADABLE}");
            }
            false
        }
        (Ok(_), None) => false,
    }
}

pub(super) async fn authenticate(
    State((state, auth)): State<(AppState, Arc<AdminAuth>)>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // RFC 7235 §2.1: the scheme name is case-insensitive.
        .and_then(|v| {
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .and_then(|_| v.get(7..))
        })
        .map(str::to_owned);
    // 1. On loopback, nothing a browser sends (CSRF, DNS rebinding).
    let browser = if auth.loopback {
        browser_request(req.headers(), req.uri().authority().map(|a| a.as_str()))
    } else {
        None
    };
    // 2. The bearer token, when the listener was bound with tokens.
    let token_ok = match &auth.tokens {
        None => true, // loopback without tokens configured
        Some(file) => token_in_file(&state, file, presented.as_deref()),
    };
    let allowed = browser.is_none() && token_ok;
    state.audit.record(&AuditEvent {
        kind: "ferry.admin",
        time: state.clock.now(),
        request_id: random_id(12),
        decision: if allowed { "allow" } else { "deny" },
        step: "admin",
        rule: Some(path.clone()),
        reason: browser.map(str::to_owned),
        subject_token_sha256: presented.map(|p| fingerprint(p.as_bytes())),
        ..AuditEvent::default()
    });
    if let Some(why) = browser {
        tracing::debug!(reason = why, "admin request refused");
        state
            .warnings
            .warn("admin requests refused from a browser (details at debug level)");
        return refusal(
            StatusCode::FORBIDDEN,
            "access_denied",
            "browser requests are not accepted on the admin listener",
        );
    }
    if !token_ok {
        let mut r = refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "admin authentication required",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ferry-admin\""),
        );
        return r;
    }
    // 3. The documented content type: no text/plain (or multipart) form posts.
    if let Some(want) = required_content_type(req.method(), &path)
        && !content_type_is(req.headers(), want)
    {
        // The expected type is Ferry's own constant, never the request's header.
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            &format!("unsupported content type: expected {want}"),
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_host_names() {
        for ok in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "127.1.2.3:1",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
            "[::1]",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9090",
            "localhost.evil.example:9090",
            "127.0.0.1.nip.io:9090",
            "10.0.0.1:9090",
            "[::2]:9090",
            "[::1]x",
            "::1",
            "127.0.0.1:90a",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn browser_requests() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert_eq!(browser_request(&h(&[("host", "127.0.0.1:1")]), None), None);
        assert_eq!(browser_request(&h(&[]), None), None);
        assert_eq!(browser_request(&h(&[]), Some("localhost:1")), None);
        assert!(browser_request(&h(&[]), Some("evil.example")).is_some());
        assert!(browser_request(&h(&[("host", "evil.example")]), Some("localhost")).is_some());
        assert!(browser_request(&h(&[("host", "localhost"), ("origin", "null")]), None).is_some());
        assert!(
            browser_request(
                &h(&[("host", "localhost"), ("sec-fetch-site", "cross-site")]),
                None
            )
            .is_some()
        );
        // An operator typing the URL into a browser: no Origin, Sec-Fetch-Site: none.
        assert_eq!(
            browser_request(
                &h(&[("host", "localhost"), ("sec-fetch-site", "none")]),
                None
            ),
            None
        );
    }

    #[test]
    fn content_types() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            m
        };
        let form = "application/x-www-form-urlencoded";
        assert!(content_type_is(&h(form), form));
        assert!(content_type_is(
            &h("Application/X-WWW-Form-Urlencoded ; charset=utf-8"),
            form
        ));
        assert!(!content_type_is(&h("text/plain"), form));
        assert!(!content_type_is(
            &h("multipart/form-data; boundary=x"),
            form
        ));
        assert!(!content_type_is(&HeaderMap::new(), form));
    }

    #[test]
    fn off_loopback_requires_tls_and_tokens_at_bind() {
        let tls = ferry_core::config::Tls {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
            client_auth: ferry_core::config::ClientCertMode::Off,
            client_ca_file: None,
        };
        let admin = |tls: Option<ferry_core::config::Tls>, tokens: bool| Admin {
            listen: Some("localhost:9090".into()),
            tls,
            bearer_token_hashes_file: tokens.then(|| PathBuf::from("tokens")),
        };
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:9090".parse().unwrap();
        // The configured name said loopback; the bound address decides.
        assert_eq!(
            AdminAuth::at_bind(&admin(None, false), any)
                .unwrap_err()
                .to_string(),
            "the admin listener is bound to 0.0.0.0:9090, off loopback: it requires admin.tls and admin.bearer_token_hashes_file"
        );
        assert!(AdminAuth::at_bind(&admin(Some(tls.clone()), false), any).is_err());
        assert!(AdminAuth::at_bind(&admin(None, true), mapped).is_err());
        let off = AdminAuth::at_bind(&admin(Some(tls.clone()), true), any).unwrap();
        assert!(!off.loopback && off.tokens.is_some());
        let on = AdminAuth::at_bind(&admin(None, false), lo).unwrap();
        assert!(on.loopback && on.tokens.is_none());
    }

    #[test]
    fn token_hashes() {
        // printf %s secret | sha256sum
        let hashes = "# rotate by adding the new hash first\n2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n";
        assert!(token_matches("secret", hashes));
        assert!(!token_matches("Secret", hashes));
        assert!(!token_matches("", hashes));
    }
}
