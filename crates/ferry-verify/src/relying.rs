//! Verifying Ferry's own tokens in a relying service: Ferry's metadata discovered once,
//! `/jwks` cached with the same machinery as inbound issuer keys (refetch on an unknown
//! `kid`, stale-if-error), RFC 9068 checks (`typ: at+jwt`, `iss`, `aud`, `exp`, `alg`),
//! and DPoP for bound tokens: a token carrying `cnf.jkt` is accepted only with the
//! `DPoP` scheme and a proof by that key for this request (`htm`, `htu`, `ath`), used
//! once. A bound token presented as a bearer token is refused. A token bound to a client
//! certificate (`cnf.x5t#S256`, RFC 8705 §3) is accepted only on a request whose TLS
//! client certificate is that one ([`ClientCertificate`], put in the request by the
//! service's TLS layer or by a middleware reading a trusted proxy's header).

use std::sync::{Arc, Mutex};

use reqwest::Url;
use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::dpop::{DEFAULT_DPOP_ALGORITHMS, DpopCheck, DpopError, verify_proof};
use crate::net::Http;
use crate::remote::{CacheSettings, Endpoint, RemoteKeys};
use crate::source::KeySource;
use crate::time::MonoTime;
use crate::{error::VerifyError, rules::Rules};
use ferry_token::AccessClaims;

/// A verified Ferry token.
#[derive(Debug, Clone)]
pub struct FerryToken {
    /// `sub`: the mapped subject.
    pub subject: String,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `scope`, split.
    pub scopes: Vec<String>,
    /// `groups`.
    pub groups: Vec<String>,
    /// `attributes`.
    pub attributes: Map<String, Value>,
    /// The key the token is bound to (`cnf.jkt`), if any.
    pub bound_jkt: Option<String>,
    /// The claims, read as Ferry's token profile (for a derived token, its effective
    /// claims: the narrowed chain's `aud`, `scope`, `exp`, `cnf` and boundaries).
    pub profile: AccessClaims,
    /// Every claim.
    pub claims: Map<String, Value>,
}

impl FerryToken {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the token's access boundaries (if any) allow `access`. A token without
    /// `access_boundaries` allows it; one whose boundaries do not parse allows nothing.
    #[cfg(feature = "access-boundary")]
    pub fn boundary_allows(&self, access: &crate::boundary::ResourceAccess<'_>) -> bool {
        match crate::boundary::AccessBoundaries::from_token(&self.profile) {
            Ok(None) => true,
            Ok(Some(b)) => b.allows(access),
            Err(_) => false,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelyingError {
    /// No usable `Authorization` header.
    #[error("missing or malformed Authorization header")]
    NoToken,
    /// The token did not verify.
    #[error("invalid token: {0}")]
    Token(#[from] VerifyError),
    /// A locally derived token did not verify.
    #[error("invalid derived token: {0}")]
    Derived(#[from] crate::derive::DeriveError),
    /// The DPoP proof is missing or invalid.
    #[error("{0}")]
    Dpop(#[from] DpopError),
    /// Revoked, or no current revocation list (with revocation polling on).
    #[error("{0}")]
    Revocation(#[from] crate::revocation::RevocationError),
    /// Verified, but its claims do not fit Ferry's token profile (`ferry_token`).
    #[error("the token's claims are not a Ferry access token's")]
    Claims,
    /// The token is bound to a client certificate the request did not present.
    #[error("the token is bound to a client certificate this request did not present")]
    Certificate,
}

/// A request's TLS client certificate (the leaf, DER), as the relying service's TLS layer
/// (or a middleware trusting its proxy's client-certificate header) saw it. Put it in the
/// request's extensions for [`FerryAuth`], or pass it to
/// [`FerryVerifier::verify_with_certificate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Vec<u8>);

/// RFC 8705 §3.2: a certificate-bound token needs the request's certificate to be the one
/// whose SHA-256 thumbprint it names.
fn check_certificate(
    profile: &AccessClaims,
    certificate: Option<&[u8]>,
) -> Result<(), RelyingError> {
    use base64::Engine as _;
    let Some(bound) = profile.cnf.as_ref().and_then(|c| c.x5t_s256.as_deref()) else {
        return Ok(());
    };
    let presented = certificate.map(|der| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
    });
    if presented.as_deref() == Some(bound) {
        Ok(())
    } else {
        Err(RelyingError::Certificate)
    }
}

impl RelyingError {
    /// Whether the client should retry with the DPoP scheme.
    pub fn is_dpop(&self) -> bool {
        matches!(self, Self::Dpop(_))
    }
}

/// Why Ferry's metadata could not be discovered ([`FerryVerifier::discover`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// The issuer given is not a URL.
    #[error("issuer is not a URL")]
    IssuerNotUrl,
    /// The metadata could not be fetched.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// The metadata is not JSON.
    #[error("metadata is not JSON")]
    NotJson,
    /// The metadata's `issuer` is not the one asked for (RFC 8414 §3.3).
    #[error("metadata names another issuer")]
    OtherIssuer,
    /// The metadata has no usable `jwks_uri`.
    #[error("metadata has no jwks_uri")]
    NoJwksUri,
    /// The `jwks_uri` is refused by the outbound policy.
    #[error(transparent)]
    JwksUriRefused(#[from] crate::net::NetError),
}

/// Verifies Ferry tokens for one audience.
#[derive(Debug)]
pub struct FerryVerifier {
    rules: Rules,
    keys: KeySource,
    /// The service's public base URL (proofs' `htu` are matched against it plus the
    /// request path; the `Host` header is never trusted).
    public_url: String,
    dpop_window: i64,
    /// Spent DPoP proofs, per key: bounded (100,000 in all, 10,000 per key), a live one
    /// never forgotten to make room.
    seen: Mutex<crate::replay_cache::ReplayCache>,
    revocations: Option<crate::revocation::RevocationPoller>,
}

impl FerryVerifier {
    /// A verifier with the given keys.
    pub fn new(issuer: &str, audience: &str, public_url: &str, keys: KeySource) -> Self {
        // RFC 9068 §4: `aud` must name this service; a token Ferry issued for several
        // audiences names others too.
        let rules = Rules::new(issuer, vec![audience.to_owned()])
            .require_type(ferry_token::ACCESS_TOKEN_TYPE)
            .set_allowed_algorithms(Algorithm::ferry())
            .accept_other_audiences()
            .allow_lifetime_up_to(std::time::Duration::from_secs(86_400));
        Self {
            rules,
            keys,
            public_url: public_url.trim_end_matches('/').to_owned(),
            dpop_window: 60,
            seen: Mutex::new(crate::replay_cache::ReplayCache::new(100_000, 10_000)),
            revocations: None,
        }
    }

    /// Checks every token against Ferry's signed revocation list (`GET /revocations`
    /// under the issuer), fetched as `client` (registered at Ferry with `revocations:
    /// true`) whenever the copy held is older than `interval`: a revocation takes effect
    /// here within `interval`. Without a list younger than three intervals — wrong
    /// credentials included — every token is refused.
    pub fn with_revocations(
        mut self,
        http: Http,
        interval: std::time::Duration,
        client: crate::revocation::ClientCredentials,
    ) -> Self {
        let url = format!("{}/revocations", self.rules.issuer().trim_end_matches('/'));
        if let Ok(url) = Url::parse(&url) {
            self.revocations = Some(crate::revocation::RevocationPoller::new(
                url, http, interval, client,
            ));
        }
        self
    }

    /// Discovers Ferry's metadata at `issuer` and caches its `/jwks`.
    pub async fn discover(
        issuer: &str,
        audience: &str,
        public_url: &str,
        http: Http,
        time: Arc<dyn MonoTime>,
    ) -> Result<Self, DiscoverError> {
        let meta_url = Url::parse(&format!(
            "{}/.well-known/oauth-authorization-server",
            issuer.trim_end_matches('/')
        ))
        .map_err(|_| DiscoverError::IssuerNotUrl)?;
        let doc = crate::fetch::get(&http, &meta_url, None).await?;
        let doc: Value = serde_json::from_slice(&doc.body).map_err(|_| DiscoverError::NotJson)?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(DiscoverError::OtherIssuer);
        }
        let jwks = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok())
            .ok_or(DiscoverError::NoJwksUri)?;
        http.policy().check_url(&jwks)?;
        let keys = RemoteKeys::new(
            "ferry",
            Endpoint::Jwks(jwks),
            Algorithm::ferry(),
            http,
            None,
            CacheSettings::default(),
            time,
        );
        Ok(Self::new(
            issuer,
            audience,
            public_url,
            KeySource::Remote(keys),
        ))
    }

    /// Spends a DPoP proof's `jti` for its key: true the first time. A cache full of live
    /// proofs refuses (as a replay) rather than forget one.
    fn consume(&self, jkt: &str, jti: &str, until: i64, now: i64) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.spend(jkt, jti, until, now) == crate::replay_cache::Spent::Fresh
    }

    /// Verifies the request's token (and DPoP proof): `authorization` is the
    /// `Authorization` header, `dpop` the `DPoP` header, `path` the request path. A
    /// certificate-bound token is refused here (no certificate is given): see
    /// [`Self::verify_with_certificate`].
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        dpop: Option<&str>,
        method: &str,
        path: &str,
        now: i64,
    ) -> Result<FerryToken, RelyingError> {
        self.verify_with_certificate(authorization, dpop, method, path, None, now)
            .await
    }

    /// [`Self::verify`] for a request that came with a TLS client certificate (the
    /// leaf's DER), which a certificate-bound token must name.
    pub async fn verify_with_certificate(
        &self,
        authorization: Option<&str>,
        dpop: Option<&str>,
        method: &str,
        path: &str,
        certificate: Option<&[u8]>,
        now: i64,
    ) -> Result<FerryToken, RelyingError> {
        let auth = authorization.ok_or(RelyingError::NoToken)?;
        let (scheme, token) = auth.split_once(' ').ok_or(RelyingError::NoToken)?;
        let token = token.trim();
        // A token derived locally by a holder (`typ: ferry-derived+jwt`) is verified
        // down to its Ferry root; its effective claims are then treated like a Ferry
        // token's (bound if its outermost layer names a key).
        let (claims, kid) = if crate::derive::is_derived(token) {
            let claims = crate::derive::verify_derived(token, &self.rules, &self.keys, now).await?;
            let kid = claims
                .get("root_kid")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (claims, kid)
        } else {
            let v = crate::unverified::parse(token)?
                .verify(&self.rules, &self.keys, now)
                .await?;
            (v.claims, v.header.kid)
        };
        let profile = AccessClaims::from_map(&claims).map_err(|_| RelyingError::Claims)?;
        if let Some(r) = &self.revocations {
            // A derived token carries its root's `iat` as `root_iat` (see `verify_derived`):
            // revocation rules look at when the root was issued.
            let issued_at = claims
                .get("root_iat")
                .and_then(Value::as_i64)
                .unwrap_or(profile.iat);
            r.check(
                &profile,
                issued_at,
                kid.as_deref(),
                self.rules.issuer(),
                &self.keys,
                now,
            )
            .await?;
        }
        check_certificate(&profile, certificate)?;
        let bound = profile.bound_jkt().map(str::to_owned);
        match (scheme.to_ascii_lowercase().as_str(), &bound) {
            ("bearer", None) => {}
            // RFC 9449 §7.1: a bound token is never a bearer token.
            ("bearer", Some(_)) => return Err(DpopError::Missing.into()),
            ("dpop", Some(jkt)) => {
                let proof = dpop.ok_or(DpopError::Missing)?;
                let url = format!("{}{}", self.public_url, path);
                let check = DpopCheck {
                    method,
                    url: &url,
                    now,
                    window: self.dpop_window,
                    access_token: Some(token),
                    nonce: None,
                    algorithms: DEFAULT_DPOP_ALGORITHMS,
                };
                let p = verify_proof(proof, &check)?;
                if &p.jkt != jkt {
                    return Err(DpopError::Binding.into());
                }
                if !self.consume(&p.jkt, &p.jti, p.iat.saturating_add(self.dpop_window), now) {
                    return Err(DpopError::Replayed.into());
                }
            }
            _ => return Err(RelyingError::NoToken),
        }
        Ok(FerryToken {
            subject: profile.sub.clone(),
            client_id: Some(profile.client_id.clone()),
            scopes: profile.scope.0.clone(),
            groups: profile.groups.clone(),
            attributes: profile
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            bound_jkt: bound,
            profile,
            claims,
        })
    }
}

/// An axum extractor: `FerryAuth(token)` in a handler whose state provides an
/// `Arc<FerryVerifier>` (via `FromRef`). Refusals are `401` with `WWW-Authenticate`.
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub struct FerryAuth(pub FerryToken);

#[cfg(feature = "axum")]
impl<S> axum::extract::FromRequestParts<S> for FerryAuth
where
    S: Send + Sync,
    Arc<FerryVerifier>: axum::extract::FromRef<S>,
{
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::FromRef;
        use axum::response::IntoResponse;
        let verifier = Arc::<FerryVerifier>::from_ref(state);
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let now = crate::time::unix_now();
        let certificate = parts
            .extensions
            .get::<ClientCertificate>()
            .map(|c| c.0.as_slice());
        match verifier
            .verify_with_certificate(
                header("authorization"),
                header("dpop"),
                parts.method.as_str(),
                parts.uri.path(),
                certificate,
                now,
            )
            .await
        {
            Ok(t) => Ok(FerryAuth(t)),
            Err(e) => {
                tracing::info!(error = %e, "request refused");
                let challenge = if e.is_dpop() {
                    "DPoP error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA RS256 PS256\""
                } else {
                    "Bearer error=\"invalid_token\""
                };
                let mut r = (axum::http::StatusCode::UNAUTHORIZED, "unauthorized").into_response();
                r.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static(challenge),
                );
                Err(r)
            }
        }
    }
}
