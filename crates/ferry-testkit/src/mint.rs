//! Minting subject tokens, good and deliberately broken.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::keys::TestKey;

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// An issuer: an `iss` and the key it signs with.
#[derive(Debug)]
pub struct Issuer {
    /// `iss`
    pub iss: String,
    /// The signing key.
    pub key: TestKey,
}

impl Issuer {
    /// A new issuer.
    pub fn new(iss: impl Into<String>, key: TestKey) -> Self {
        Self {
            iss: iss.into(),
            key,
        }
    }

    /// Standard claims for `aud` and `sub`, valid for five minutes from `now`, plus
    /// `extra` (which may override any of them).
    pub fn claims(&self, aud: &str, sub: &str, now: i64, extra: Value) -> Value {
        let mut c = json!({"iss": self.iss, "aud": aud, "sub": sub, "iat": now, "nbf": now,
                           "exp": now + 300, "jti": format!("jti-{now}-{sub}")});
        if let (Some(base), Value::Object(more)) = (c.as_object_mut(), extra) {
            for (k, v) in more {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    base.insert(k, v);
                }
            }
        }
        c
    }

    /// Signs `claims` with the standard header (`alg`, `kid`, `typ: JWT`).
    pub fn token(&self, claims: &Value) -> String {
        self.token_with_header(
            &json!({"alg": self.key.alg(), "kid": self.key.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// Signs `claims` under a header of the caller's choosing.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Signs raw header and payload JSON text (for duplicate-member attacks).
    pub fn token_raw(&self, header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// An unsigned token (`alg: none`, RFC 7519 §6).
pub fn alg_none(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// The key-confusion attack: HS256 with the issuer's public key bytes as the secret.
pub fn hs256_with_public_key(key: &TestKey, claims: &Value) -> String {
    let header = json!({"alg": "HS256", "kid": key.kid, "typ": "JWT"});
    let input = format!("{}.{}", b64(&header), b64(claims));
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key.public_key_bytes());
    let tag = hmac::sign(&k, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Replaces the signature with another's: a valid shape, a bad signature.
pub fn tamper_payload(token: &str, claims: &Value) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = b64(claims);
    parts[1] = &forged;
    parts.join(".")
}

/// Decodes a token's payload without verifying it.
pub fn payload(token: &str) -> Map<String, Value> {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// Decodes a token's header without verifying it.
pub fn header(token: &str) -> Map<String, Value> {
    let p = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

/// A DPoP proof (RFC 9449 §4.2) signed by `key`, whose header carries `jwk`.
#[allow(clippy::too_many_arguments)]
pub fn dpop_proof_with_jwk(
    key: &TestKey,
    jwk: &Value,
    htm: &str,
    htu: &str,
    iat: i64,
    jti: &str,
    ath: Option<&str>,
    nonce: Option<&str>,
) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": jwk});
    let mut claims = json!({"htm": htm, "htu": htu, "iat": iat, "jti": jti});
    if let Some(a) = ath {
        claims["ath"] = json!(a);
    }
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A DPoP proof by `key` carrying its own public JWK.
pub fn dpop_proof(
    key: &TestKey,
    htm: &str,
    htu: &str,
    iat: i64,
    jti: &str,
    ath: Option<&str>,
    nonce: Option<&str>,
) -> String {
    dpop_proof_with_jwk(key, &key.public_jwk(), htm, htu, iat, jti, ath, nonce)
}
