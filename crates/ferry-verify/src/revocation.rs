//! Revocations for relying services that verify Ferry's tokens offline. Ferry publishes a
//! signed list (`GET /revocations`, `typ: ferry-revocations+jwt`): the `jti` and `exp`
//! of every revoked token, and rules revoking every token issued to a subject, through
//! a provider or to a client up to a moment. The verifier fetches it when its copy is
//! older than the polling interval — before answering, so a token revoked more than one
//! interval ago is never accepted — verifies it with Ferry's keys, and refuses every
//! token while it holds no list younger than `max_staleness` (fail closed).
//!
//! The list names revoked subjects, clients and providers, so Ferry serves it only to a
//! client registered with `revocations: true`: the poller authenticates as that client
//! with HTTP Basic ([`ClientCredentials`]).

use std::collections::HashMap;
use std::time::Duration;

use ferry_token::AccessClaims;
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use crate::alg::Algorithm;
use crate::net::Http;
use crate::source::KeySource;
use crate::{error::VerifyError, rules::Rules};

/// `typ` of the list.
pub const REVOCATIONS_TYPE: &str = "ferry-revocations+jwt";

#[derive(Debug, Clone, Deserialize)]
struct RuleEntry {
    kind: String,
    value: String,
    before: i64,
    until: i64,
}

#[derive(Debug, Default)]
struct Held {
    list: Option<List>,
    /// After a failed fetch, the next is not tried before this (one per second).
    next_try: i64,
}

#[derive(Debug, Default)]
struct List {
    fetched_at: i64,
    jtis: HashMap<String, i64>,
    rules: Vec<RuleEntry>,
    kids: Vec<String>,
}

/// Why a token was refused on revocation grounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The token (or a rule covering it) is on the list.
    #[error("the token has been revoked")]
    Revoked,
    /// No list younger than `max_staleness` could be had.
    #[error("no current revocation list: {0}")]
    Unavailable(String),
}

/// Why a revocation list could not be refreshed (logged; the old list stays in use
/// until it is too old).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// `GET /revocations` failed.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// The body is not UTF-8.
    #[error("the list is not text")]
    NotText,
    /// The list is not a JWT Ferry signed for itself.
    #[error("the list does not verify: {0}")]
    Verify(#[from] VerifyError),
    /// The list's `rules` are not revocation rules.
    #[error("the list's rules are malformed")]
    Rules,
}

/// The id and secret of a client registered at Ferry with `revocations: true`, sent with
/// HTTP Basic as RFC 6749 §2.3.1 says: each form-urlencoded, then joined with `:` and
/// base64-encoded (so an id containing `:` survives). The secret never prints.
#[derive(Clone)]
pub struct ClientCredentials {
    id: String,
    secret: String,
}

impl ClientCredentials {
    /// Credentials of client `id` (its secret from `ferry clients new-secret`).
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
        }
    }

    /// The `Authorization` header value.
    fn basic(&self) -> String {
        use base64::Engine;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let pair = format!("{}:{}", enc(&self.id), enc(&self.secret));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Polls Ferry's revocation list.
#[derive(Debug)]
pub struct RevocationPoller {
    url: Url,
    http: Http,
    credentials: ClientCredentials,
    interval: i64,
    max_staleness: i64,
    held: tokio::sync::RwLock<Held>,
}

impl RevocationPoller {
    /// Polls `url` at most every `interval`, authenticating as `credentials`; refuses
    /// every token after `3 × interval` without a list.
    pub fn new(url: Url, http: Http, interval: Duration, credentials: ClientCredentials) -> Self {
        let interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
        Self {
            url,
            http,
            credentials,
            interval,
            max_staleness: interval.saturating_mul(3),
            held: tokio::sync::RwLock::new(Held::default()),
        }
    }

    /// How long a list may be used when a new one cannot be had.
    pub fn with_max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = i64::try_from(max.as_secs())
            .unwrap_or(i64::MAX)
            .max(self.interval);
        self
    }

    async fn fetch(&self, issuer: &str, keys: &KeySource, now: i64) -> Result<List, ListError> {
        let got =
            crate::fetch::get_authorized(&self.http, &self.url, Some(self.credentials.basic()))
                .await?;
        let text = String::from_utf8(got.body).map_err(|_| ListError::NotText)?;
        let rules = Rules::new(issuer, vec![issuer.to_owned()])
            .require_type(REVOCATIONS_TYPE)
            .set_allowed_algorithms(Algorithm::ferry());
        let v = crate::unverified::parse(text.trim())?
            .verify(&rules, keys, now)
            .await?;
        let mut list = List {
            fetched_at: now,
            ..List::default()
        };
        for e in v
            .claims
            .get("revoked")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(j), Some(exp)) = (
                e.get("jti").and_then(Value::as_str),
                e.get("exp").and_then(Value::as_i64),
            ) {
                list.jtis.insert(j.to_owned(), exp);
            }
        }
        list.kids = v
            .claims
            .get("revoked_kids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        if let Some(r) = v.claims.get("rules") {
            list.rules = serde_json::from_value(r.clone()).map_err(|_| ListError::Rules)?;
        }
        Ok(list)
    }

    /// Refuses `token` (a verified Ferry token's claims, signed with `kid`; for a
    /// derived token, its root's, with `issued_at` the root's `iat`) if revoked,
    /// refreshing the list first when it is older than the interval.
    pub async fn check(
        &self,
        token: &AccessClaims,
        issued_at: i64,
        kid: Option<&str>,
        issuer: &str,
        keys: &KeySource,
        now: i64,
    ) -> Result<(), RevocationError> {
        let due = |h: &Held| {
            now >= h.next_try
                && h.list
                    .as_ref()
                    .is_none_or(|l| now - l.fetched_at >= self.interval)
        };
        if due(&*self.held.read().await) {
            // One refresh at a time; requests arriving meanwhile wait for it.
            let mut w = self.held.write().await;
            if due(&w) {
                match self.fetch(issuer, keys, now).await {
                    Ok(l) => w.list = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, url = %self.url, "revocation list refresh failed");
                        w.next_try = now + 1;
                    }
                }
            }
        }
        let guard = self.held.read().await;
        let list = match guard.list.as_ref() {
            Some(l) if now - l.fetched_at <= self.max_staleness => l,
            _ => {
                return Err(RevocationError::Unavailable(
                    "no revocation list younger than max_staleness".into(),
                ));
            }
        };
        // A key revoked in an emergency may still sit in a cached JWKS.
        if kid.is_some_and(|k| list.kids.iter().any(|r| r == k)) {
            return Err(RevocationError::Revoked);
        }
        // The token, or any token it was narrowed from.
        if std::iter::once(&token.jti)
            .chain(&token.ferry.ancestors)
            .filter_map(|j| list.jtis.get(j))
            .any(|exp| *exp >= now)
        {
            return Err(RevocationError::Revoked);
        }
        let hit = list.rules.iter().any(|r| {
            let named = match r.kind.as_str() {
                "subject" => token.names_subject(&r.value),
                "provider" => token.names_provider(&r.value),
                "client" => token.client_id == r.value,
                _ => false,
            };
            now <= r.until && issued_at <= r.before && named
        });
        if hit {
            return Err(RevocationError::Revoked);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::ClientCredentials;
    use base64::Engine;

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let c = ClientCredentials::new("rs:1", "s3cr+t");
        let b64 = c.basic().strip_prefix("Basic ").unwrap().to_owned();
        let pair = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(pair).unwrap(), "rs%3A1:s3cr%2Bt");
        assert!(
            !format!("{c:?}").contains("s3cr"),
            "the secret never prints"
        );
    }
}
