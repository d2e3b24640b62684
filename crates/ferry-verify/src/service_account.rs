//! Direct API authentication with service-account keys: a service account signs a short
//! JWT whose `aud` is the API itself and presents it there, with no Ferry token in
//! between (as Google's self-signed service-account JWTs do). The API trusts the
//! service accounts it names, each with its public keys — fetched from Ferry's
//! `GET /service-accounts/{id}/jwks` and cached like Ferry's own `/jwks`, or given.
//!
//! Rules, each beside the attack it stops:
//!
//! 1. Only the accounts the API names: an unknown `iss` is refused before any key is
//!    fetched, so junk tokens cannot make the API fetch, or remember, anything.
//! 2. `typ` none or `JWT` (RFC 8725 §3.11): a Ferry access token (`at+jwt`), a derived
//!    token, a DPoP proof or a client assertion is never taken for one.
//! 3. `alg` from the account's keys, asymmetric only: no `none`, no HMAC keyed with a
//!    public key.
//! 4. `iss` == `sub` == the account (RFC 7523 §3 shape).
//! 5. `aud` one string, exactly the API's audience: an assertion meant for Ferry's
//!    token endpoint, or for another API, is refused here.
//! 6. `iat` required, not in the future beyond the clock skew; `exp - iat` at most 1 h
//!    (Google's limit) by default.
//! 7. `jti` required and single use: remembered until `exp` plus the clock skew in a
//!    bounded cache; when full (live ids only), tokens are refused, never a live id
//!    forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::error::VerifyError;
use crate::net::Http;
use crate::relying::DiscoverError;
use crate::remote::{CacheSettings, Endpoint, RemoteKeys};
use crate::replay_cache::{ReplayCache, Spent};
use crate::rules::Rules;
use crate::source::KeySource;
use crate::time::MonoTime;

/// How a self-signed assertion (RFC 7523 §3: a service account's, a client's) falls
/// short of its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeError {
    /// `sub` is not the issuer.
    Subject,
    /// `aud` is not one string (an array could name another party that accepts it too).
    Audience,
    /// No `jti` of 1 to 256 bytes.
    Jti,
}

/// The shape every self-signed assertion Ferry or a relying service accepts must have:
/// `sub` equal to `issuer`, one `aud` string, a `jti` of 1 to 256 bytes (returned). Ferry's
/// jwt-bearer grant and client assertions, and [`ServiceAccountVerifier`], check it alike.
pub fn self_signed_shape<'a>(
    claims: &'a Map<String, Value>,
    issuer: &str,
) -> Result<&'a str, ShapeError> {
    if claims.get("sub").and_then(Value::as_str) != Some(issuer) {
        return Err(ShapeError::Subject);
    }
    if !claims.get("aud").is_some_and(Value::is_string) {
        return Err(ShapeError::Audience);
    }
    claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(ShapeError::Jti)
}

/// The algorithms a service account may sign with (those `ferry sa create` makes and
/// Google's keys use).
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];

/// A verified service-account JWT.
#[derive(Debug, Clone)]
pub struct ServiceAccountToken {
    /// The service account (`iss` and `sub`).
    pub account: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// Every claim.
    pub claims: Map<String, Value>,
}

/// Why a service-account JWT was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceAccountError {
    /// No usable `Authorization: Bearer` header.
    #[error("missing or malformed Authorization header")]
    NoToken,
    /// `iss` names no service account this API accepts.
    #[error("the token names no service account this service accepts")]
    UnknownAccount,
    /// The token did not verify (signature, `typ`, `alg`, `aud`, time).
    #[error("invalid token: {0}")]
    Token(#[from] VerifyError),
    /// `sub` is not the account.
    #[error("sub is not the service account")]
    Subject,
    /// `aud` is not one string.
    #[error("aud is not a single string")]
    Audience,
    /// No `iat`.
    #[error("iat is required")]
    IssuedAt,
    /// No usable `jti`.
    #[error("jti is required")]
    Jti,
    /// The `jti` was used before.
    #[error("token replayed")]
    Replayed,
    /// The replay cache holds only live ids and is full.
    #[error("replay cache full")]
    ReplayCacheFull,
}

/// Verifies service accounts' self-signed JWTs for one API audience.
#[derive(Debug)]
pub struct ServiceAccountVerifier {
    audience: String,
    /// Each account's keys and the rules its tokens are verified by (built once).
    accounts: HashMap<String, (KeySource, Rules)>,
    max_lifetime: Duration,
    skew: Duration,
    replay: Mutex<ReplayCache>,
}

impl ServiceAccountVerifier {
    /// A verifier for JWTs whose `aud` is `audience`, accepting no account yet: 1 h
    /// longest lifetime, 60 s clock skew, 100 000 remembered ids (10 000 per account).
    pub fn new(audience: &str) -> Self {
        Self {
            audience: audience.to_owned(),
            accounts: HashMap::new(),
            max_lifetime: Duration::from_secs(3_600),
            skew: Duration::from_secs(60),
            replay: Mutex::new(ReplayCache::new(100_000, 10_000)),
        }
    }

    /// Accepts the service account `id`, verified with `keys`.
    #[must_use]
    pub fn with_account(mut self, id: &str, keys: KeySource) -> Self {
        let rules = self.rules(id);
        self.accounts.insert(id.to_owned(), (keys, rules));
        self
    }

    /// The strict rules of account `id`'s tokens: `typ`, `alg`, `iss`, `aud`, times.
    fn rules(&self, id: &str) -> Rules {
        Rules::new(id.to_owned(), vec![self.audience.clone()])
            .set_allowed_algorithms(ALGORITHMS)
            .allow_lifetime_up_to(self.max_lifetime)
            .allow_clock_skew(self.skew)
    }

    /// Rebuilds every account's rules after a setting changed.
    fn rebuild_rules(mut self) -> Self {
        let ids: Vec<String> = self.accounts.keys().cloned().collect();
        for id in ids {
            let rules = self.rules(&id);
            if let Some(entry) = self.accounts.get_mut(&id) {
                entry.1 = rules;
            }
        }
        self
    }

    /// Accepts the service accounts `ids`, each with its keys from Ferry's
    /// `<ferry_issuer>/service-accounts/<id>/jwks`, cached (honouring `Cache-Control`,
    /// refetched once on an unknown `kid`, stale-if-error) as Ferry's own `/jwks` is.
    pub fn from_ferry<I, S>(
        ferry_issuer: &str,
        audience: &str,
        ids: I,
        http: &Http,
        time: &Arc<dyn MonoTime>,
    ) -> Result<Self, DiscoverError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut me = Self::new(audience);
        for id in ids {
            let id = id.as_ref();
            let url = account_jwks_url(ferry_issuer, id)?;
            http.policy().check_url(&url)?;
            let keys = RemoteKeys::new(
                id,
                Endpoint::Jwks(url),
                ALGORITHMS.to_vec(),
                http.clone(),
                None,
                CacheSettings::default(),
                time.clone(),
            );
            me = me.with_account(id, KeySource::Remote(keys));
        }
        Ok(me)
    }

    /// Sets the longest lifetime (`exp - iat`) accepted; default 1 h.
    #[must_use]
    pub fn allow_lifetime_up_to(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = lifetime;
        self.rebuild_rules()
    }

    /// Sets the clock skew tolerated on `exp`, `nbf` and `iat`; default 60 s.
    #[must_use]
    pub fn allow_clock_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self.rebuild_rules()
    }

    /// Sets how many `jti`s are remembered, in all and per account.
    #[must_use]
    pub fn with_replay_capacity(self, total: usize, per_account: usize) -> Self {
        Self {
            replay: Mutex::new(ReplayCache::new(total, per_account)),
            ..self
        }
    }

    /// Verifies the `Authorization: Bearer` header of a request.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        now: i64,
    ) -> Result<ServiceAccountToken, ServiceAccountError> {
        let (scheme, token) = authorization
            .and_then(|a| a.split_once(' '))
            .ok_or(ServiceAccountError::NoToken)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ServiceAccountError::NoToken);
        }
        self.verify_token(token.trim(), now).await
    }

    /// Verifies one service-account JWT (the steps of the module documentation).
    pub async fn verify_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<ServiceAccountToken, ServiceAccountError> {
        let parsed = crate::unverified::parse(token)?;
        // 1. Only the accounts this API names; nothing is fetched for another.
        let (account, (keys, rules)) = parsed
            .issuer()
            .and_then(|iss| self.accounts.get_key_value(iss))
            .ok_or(ServiceAccountError::UnknownAccount)?;
        // 2, 3, 5, 6: `typ`, `alg`, signature, `iss`, `aud`, time, by the strict rules.
        let v = parsed.verify(rules, keys, now).await?;
        // 4, 5, 7: sub == iss, one audience, a `jti` (the shape Ferry's assertions have).
        let jti = self_signed_shape(&v.claims, account).map_err(|e| match e {
            ShapeError::Subject => ServiceAccountError::Subject,
            ShapeError::Audience => ServiceAccountError::Audience,
            ShapeError::Jti => ServiceAccountError::Jti,
        })?;
        // 6. `iat` required: without it the lifetime is unknown.
        if !v.claims.get("iat").is_some_and(Value::is_number) {
            return Err(ServiceAccountError::IssuedAt);
        }
        // 7. The `jti`, single use until the token can no longer verify anywhere.
        let until = v.exp.saturating_add(rules.leeway());
        let spent = self
            .replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .spend(account, jti, until, now);
        match spent {
            Spent::Fresh => Ok(ServiceAccountToken {
                account: account.clone(),
                expires_at: v.exp,
                claims: v.claims,
            }),
            Spent::Replayed => Err(ServiceAccountError::Replayed),
            Spent::Full => Err(ServiceAccountError::ReplayCacheFull),
        }
    }
}

/// `<ferry_issuer>/service-accounts/<id>/jwks`, the id one percent-encoded path segment.
pub fn account_jwks_url(ferry_issuer: &str, id: &str) -> Result<Url, DiscoverError> {
    let mut url = Url::parse(ferry_issuer).map_err(|_| DiscoverError::IssuerNotUrl)?;
    url.path_segments_mut()
        .map_err(|()| DiscoverError::IssuerNotUrl)?
        .pop_if_empty()
        .extend(["service-accounts", id, "jwks"]);
    Ok(url)
}

/// An axum extractor: `ServiceAccountAuth(token)` in a handler whose state provides an
/// `Arc<ServiceAccountVerifier>` (via `FromRef`). Refusals are `401` with
/// `WWW-Authenticate`; a full replay cache is `503`.
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub struct ServiceAccountAuth(pub ServiceAccountToken);

#[cfg(feature = "axum")]
impl<S> axum::extract::FromRequestParts<S> for ServiceAccountAuth
where
    S: Send + Sync,
    Arc<ServiceAccountVerifier>: axum::extract::FromRef<S>,
{
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::FromRef;
        let verifier = Arc::<ServiceAccountVerifier>::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        verifier
            .verify(header, crate::time::unix_now())
            .await
            .map(ServiceAccountAuth)
            .map_err(|e| refusal(&e))
    }
}

/// The response to a refused service-account JWT: a fixed body, the reason logged.
#[cfg(feature = "axum")]
pub fn refusal(e: &ServiceAccountError) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    tracing::info!(error = %e, "service-account JWT refused");
    if matches!(e, ServiceAccountError::ReplayCacheFull) {
        return (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable").into_response();
    }
    let mut r = (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    r
}

#[cfg(test)]
#[path = "service_account_tests.rs"]
mod tests;
