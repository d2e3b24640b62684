//! Signing JWTs with Ferry's keys. A signer holds its parsed private key; nothing is
//! parsed per request.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// A key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The stored key could not be parsed.
    #[error("stored key is not a valid P-256 PKCS#8 key")]
    InvalidKey,
    /// Signing failed.
    #[error("signing failed")]
    Sign,
    /// Key generation failed.
    #[error("key generation failed")]
    Generate,
    /// Reading or writing the key store failed.
    #[error("key store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising claims failed.
    #[error("serialising claims: {0}")]
    Json(#[from] serde_json::Error),
}

/// Something that signs with one key.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The key id (RFC 7638 thumbprint).
    fn kid(&self) -> &str;
    /// The JWS `alg`.
    fn alg(&self) -> &'static str;
    /// The public JWK, with `kid`, `alg` and `use: sig`.
    fn public_jwk(&self) -> Value;
    /// Signs `msg`, returning the JWS signature bytes.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// An ES256 key held in process memory.
pub struct SoftwareSigner {
    kid: String,
    key: EcdsaKeyPair,
    jwk: Value,
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The RFC 7638 thumbprint of a public JWK: base64url(SHA-256) of the required members
/// in lexicographic order, without whitespace.
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

impl SoftwareSigner {
    /// Generates a new key, returning the signer and its PKCS#8 encoding.
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError::Generate)?;
        let der = doc.as_ref().to_vec();
        Ok((Self::from_pkcs8(&der)?, der))
    }

    /// Loads a P-256 key from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| KeyError::InvalidKey)?;
        let p = key.public_key().as_ref();
        if p.len() != 65 {
            return Err(KeyError::InvalidKey);
        }
        let mut jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&p[33..65]),
        });
        let kid = thumbprint(&jwk);
        if let Some(o) = jwk.as_object_mut() {
            o.insert("kid".into(), json!(kid));
            o.insert("alg".into(), json!("ES256"));
            o.insert("use".into(), json!("sig"));
        }
        Ok(Self {
            kid,
            key,
            jwk,
            rng: SystemRandom::new(),
        })
    }
}

impl Signer for SoftwareSigner {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn alg(&self) -> &'static str {
        "ES256"
    }
    fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.key
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Sign)
    }
}

/// Signs `claims` as a compact JWS with header `{alg, kid, typ}`.
pub fn sign_jwt(
    signer: &dyn Signer,
    typ: &str,
    claims: &Map<String, Value>,
) -> Result<String, KeyError> {
    let header = json!({"alg": signer.alg(), "kid": signer.kid(), "typ": typ});
    let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
    let sig = signer.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn signs_verifiable_jwts_and_kid_is_the_rfc7638_thumbprint() {
        let (s, der) = SoftwareSigner::generate().unwrap();
        let again = SoftwareSigner::from_pkcs8(&der).unwrap();
        assert_eq!(s.kid(), again.kid());
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("x"));
        let jwt = sign_jwt(&s, "at+jwt", &claims).unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let jwk = s.public_jwk();
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        // RFC 7638 §3.1 example key and thumbprint.
        let rfc = json!({"kty": "RSA", "e": "AQAB", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            thumbprint(&rfc),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
