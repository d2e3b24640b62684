//! DPoP proofs (RFC 9449): checking that a request was made by the holder of a key, and
//! that a bound token is presented by that key's holder. Used by Ferry at `/token` and
//! by relying services.
//!
//! A proof is accepted when (RFC 9449 §4.3):
//! 1. it is a JWS whose header has `typ: dpop+jwt`, an asymmetric `alg` from the
//!    allowlist, no `crit`, and a public `jwk` (a JWK with private members is refused);
//! 2. its signature verifies with that `jwk`;
//! 3. `htm` is the request's method and `htu` the request's URL (scheme, host, port and
//!    path; query and fragment ignored) as the verifier knows it — never from `Host`;
//! 4. `iat` is within the window, and `jti` is present (the caller records it: single use);
//! 5. `ath` is the hash of the access token presented with it, when one is;
//! 6. `nonce` equals the server's nonce, when the server requires one.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::alg::Algorithm;
use crate::jwks::parse_single;
use crate::jws::{decode_object, split};

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Not a well-formed proof.
    #[error("malformed DPoP proof: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof typ must be dpop+jwt")]
    Type,
    /// `alg` not allowed.
    #[error("DPoP proof algorithm not allowed")]
    Algorithm,
    /// The header carries `crit`: no extension is understood (RFC 7515 §4.1.11).
    #[error("DPoP proof critical header parameters are not supported")]
    Critical,
    /// `jwk` missing, private, or unusable.
    #[error("DPoP proof jwk: {0}")]
    Key(crate::jwks::JwkError),
    /// Bad signature.
    #[error("DPoP proof signature does not verify")]
    Signature,
    /// `htm` or `htu` do not match the request.
    #[error("DPoP proof is for another request ({0})")]
    Target(&'static str),
    /// `iat` outside the window.
    #[error("DPoP proof iat outside the accepted window")]
    Stale,
    /// `ath` missing or not the access token's hash.
    #[error("DPoP proof ath does not match the access token")]
    AccessTokenHash,
    /// The server's nonce is missing or wrong.
    #[error("DPoP nonce required")]
    Nonce,
    /// The proof's key is not the key the token is bound to.
    #[error("DPoP proof key is not the key the token is bound to")]
    Binding,
    /// The proof was used before.
    #[error("DPoP proof replayed")]
    Replayed,
    /// A bound token came without a proof.
    #[error("DPoP proof required for a bound token")]
    Missing,
}

/// What a verified proof says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// RFC 7638 thumbprint of the proof's key (`cnf.jkt` of a bound token).
    pub jkt: String,
    /// The proof's `jti`, for single use.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: i64,
    /// The proof's `nonce`, if any.
    pub nonce: Option<String>,
}

/// What a proof must match.
#[derive(Debug, Clone)]
pub struct DpopCheck<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request URL as the verifier is configured to know it.
    pub url: &'a str,
    /// Now, seconds since the epoch.
    pub now: i64,
    /// Accepted distance of `iat` from now, seconds.
    pub window: i64,
    /// The access token presented with the proof, if any (`ath`).
    pub access_token: Option<&'a str>,
    /// The nonce the server requires, if any.
    pub nonce: Option<&'a str>,
    /// Accepted algorithms.
    pub algorithms: &'a [Algorithm],
}

/// The algorithms accepted for proofs by default.
pub const DEFAULT_DPOP_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];

/// The RFC 7638 thumbprint of a public JWK.
pub fn thumbprint(jwk: &Value) -> String {
    let get = |k: &str| jwk.get(k).and_then(Value::as_str).unwrap_or_default();
    let canonical = match get("kty") {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            get("crv"),
            get("x"),
            get("y")
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, get("e"), get("n")),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            get("crv"),
            get("x")
        ),
        _ => String::new(),
    };
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// `ath`: base64url SHA-256 of the access token (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// `scheme://host[:port]/path` with scheme and host lowercased, the default port dropped,
/// query and fragment removed (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2–6.2.3).
pub fn normalize_htu(u: &str) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    let mut out = format!(
        "{}://{}",
        url.scheme(),
        url.host_str()?.to_ascii_lowercase()
    );
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    Some(out)
}

/// Verifies a proof (see the module documentation).
pub fn verify_proof(proof: &str, check: &DpopCheck<'_>) -> Result<DpopProof, DpopError> {
    // 1. Shape, typ, alg, jwk.
    let parts = split(proof).map_err(|_| DpopError::Malformed("not a compact JWS"))?;
    if !parts
        .header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(DpopError::Type);
    }
    let alg = Algorithm::from_name(&parts.header.alg)
        .filter(|a| check.algorithms.contains(a))
        .ok_or(DpopError::Algorithm)?;
    // A recipient that does not understand every `crit` extension must refuse the JWS
    // (RFC 7515 §4.1.11); Ferry understands none.
    if parts.header.crit {
        return Err(DpopError::Critical);
    }
    let header_b64 = parts.signing_input.split('.').next().unwrap_or_default();
    let header = decode_object(header_b64, "header").map_err(|_| DpopError::Malformed("header"))?;
    let jwk = header
        .get("jwk")
        .filter(|j| j.is_object())
        .ok_or_else(|| DpopError::Key("missing".into()))?;
    if crate::jwks::has_private_material(jwk) {
        return Err(DpopError::Key("carries private key material".into()));
    }
    let key = parse_single(jwk, alg).map_err(DpopError::Key)?;
    // 2. Signature.
    if !key.verify(parts.signing_input.as_bytes(), &parts.signature) {
        return Err(DpopError::Signature);
    }
    let claims =
        decode_object(parts.payload_b64, "payload").map_err(|_| DpopError::Malformed("payload"))?;
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    // 3. The request.
    if s("htm") != Some(check.method) {
        return Err(DpopError::Target("htm"));
    }
    let want = normalize_htu(check.url).ok_or(DpopError::Target("htu"))?;
    if s("htu").and_then(normalize_htu).as_deref() != Some(want.as_str()) {
        return Err(DpopError::Target("htu"));
    }
    // 4. Freshness and identity of the proof.
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::Malformed("iat"))?;
    // `iat` is the sender's number: `abs_diff` cannot overflow at i64::MIN or MAX.
    if check.now.abs_diff(iat) > u64::try_from(check.window).unwrap_or(0) {
        return Err(DpopError::Stale);
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(DpopError::Malformed("jti"))?;
    // 5. The access token it accompanies.
    if let Some(at) = check.access_token
        && s("ath") != Some(access_token_hash(at).as_str())
    {
        return Err(DpopError::AccessTokenHash);
    }
    // 6. The server's nonce.
    if let Some(n) = check.nonce
        && s("nonce") != Some(n)
    {
        return Err(DpopError::Nonce);
    }
    Ok(DpopProof {
        jkt: thumbprint(jwk),
        jti: jti.to_owned(),
        iat,
        nonce: s("nonce").map(str::to_owned),
    })
}

/// The `cnf.jkt` a token is bound to, if any.
pub fn bound_jkt(claims: &serde_json::Map<String, Value>) -> Option<&str> {
    claims
        .get("cnf")
        .and_then(|c| c.get("jkt"))
        .and_then(Value::as_str)
}
