//! One hardened GET: the URL policy first, an optional bearer token sent only to its own
//! origin, status 200 required, the body read up to the size cap, and the
//! `Cache-Control` lifetime returned.

use reqwest::Url;
use reqwest::header::{ACCEPT, CACHE_CONTROL};

use crate::net::{Http, NetError, origin};

/// Why a GET failed. Detail from the HTTP stack is kept as text (without the URL) so the
/// error can be cached and compared; the kind is typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is refused by the outbound policy.
    #[error(transparent)]
    Refused(#[from] NetError),
    /// The bearer-token file cannot be read.
    #[error("reading the bearer-token file: {0}")]
    BearerFile(String),
    /// The credentials are not a valid header value.
    #[error("the credentials are not a valid header value")]
    BadCredentials,
    /// Connecting or sending failed (refused, timed out, a forbidden address).
    #[error("request failed: {0}")]
    Request(String),
    /// The status was not 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is larger than the cap.
    #[error("response larger than the cap")]
    TooLarge,
    /// Reading the body failed.
    #[error("reading body: {0}")]
    Body(String),
}

/// Where a bearer token comes from.
#[derive(Clone)]
pub enum BearerToken {
    /// A fixed value.
    Value(String),
    /// A file re-read on every request (a projected service-account token rotates).
    File(std::path::PathBuf),
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value([redacted])"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// A bearer token for exactly the origins of one Kubernetes API server.
#[derive(Clone)]
pub struct Bearer {
    /// The `scheme://host:port`s the token may be sent to.
    pub origins: Vec<String>,
    /// The token.
    pub token: BearerToken,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("origins", &self.origins)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// A fetched body and its `Cache-Control: max-age`, if any.
#[derive(Debug)]
pub struct Fetched {
    /// The body.
    pub body: Vec<u8>,
    /// Seconds from `max-age`; `Some(0)` for `no-store`/`no-cache`.
    pub max_age: Option<u64>,
}

fn max_age(value: &str) -> Option<u64> {
    let mut out = None;
    for d in value.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            out = v.trim_matches('"').parse().ok();
        }
    }
    out
}

/// GETs `url` under the client's policy.
pub async fn get(http: &Http, url: &Url, bearer: Option<&Bearer>) -> Result<Fetched, FetchError> {
    let authorization = match bearer {
        Some(b) if origin(url).is_some_and(|o| b.origins.contains(&o)) => {
            let token = match &b.token {
                BearerToken::Value(v) => v.clone(),
                BearerToken::File(f) => std::fs::read_to_string(f)
                    .map_err(|e| FetchError::BearerFile(e.to_string()))?
                    .trim()
                    .to_owned(),
            };
            Some(format!("Bearer {token}"))
        }
        _ => None,
    };
    get_authorized(http, url, authorization).await
}

/// GETs `url` under the client's policy with an `Authorization` header value meant for
/// `url`'s origin (reqwest drops it on a redirect to another host).
pub(crate) async fn get_authorized(
    http: &Http,
    url: &Url,
    authorization: Option<String>,
) -> Result<Fetched, FetchError> {
    http.policy.check_url(url)?;
    let mut req = http
        .client
        .get(url.clone())
        .header(ACCEPT, "application/json, application/jwk-set+json");
    if let Some(a) = authorization {
        let mut value =
            reqwest::header::HeaderValue::from_str(&a).map_err(|_| FetchError::BadCredentials)?;
        value.set_sensitive(true);
        req = req.header(reqwest::header::AUTHORIZATION, value);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| FetchError::Request(without_url(&e)))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status(resp.status().as_u16()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > http.max_response_bytes as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let max_age = resp
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Body(without_url(&e)))?
    {
        if body.len() + chunk.len() > http.max_response_bytes {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, max_age })
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_control_max_age() {
        assert_eq!(super::max_age("public, max-age=300"), Some(300));
        assert_eq!(super::max_age("max-age=\"60\""), Some(60));
        assert_eq!(super::max_age("no-store"), Some(0));
        assert_eq!(super::max_age("private"), None);
    }
}
