//! Signing JWTs with Ferry's keys. A signer holds its parsed private key (or a handle to
//! it in an HSM); nothing is parsed per request.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// A key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Stored key material could not be parsed.
    #[error("stored key material is not a valid {0} key")]
    InvalidKey(&'static str),
    /// Signing failed.
    #[error("signing failed")]
    Sign,
    /// Key generation failed.
    #[error("key generation failed")]
    Generate,
    /// No configured key-encryption key opens the stored key.
    #[error(
        "no configured key-encryption key opens key {0}: the key-encryption key is wrong or missing"
    )]
    WrongKek(String),
    /// This replica cannot sign: it cannot unseal the active key (named).
    #[error("this replica cannot unseal the active signing key {0}")]
    CannotSign(String),
    /// The key store refused or failed.
    #[error("key store: {0}")]
    Store(String),
    /// The HSM refused or failed.
    #[error("HSM: {0}")]
    Hsm(String),
    /// Reading or writing the key store failed.
    #[error("key store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising failed.
    #[error("serialising: {0}")]
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

/// The algorithms Ferry signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    /// ECDSA P-256 (the default).
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSA-2048 PKCS#1 v1.5: widely supported, several times slower to sign.
    Rs256,
}

/// The signers are Ferry's token profile's algorithms, one for one.
impl From<SigningAlg> for ferry_token::SigningAlgorithm {
    fn from(a: SigningAlg) -> Self {
        match a {
            SigningAlg::Es256 => Self::ES256,
            SigningAlg::EdDsa => Self::EdDSA,
            SigningAlg::Rs256 => Self::RS256,
        }
    }
}

impl From<ferry_token::SigningAlgorithm> for SigningAlg {
    fn from(a: ferry_token::SigningAlgorithm) -> Self {
        match a {
            ferry_token::SigningAlgorithm::ES256 => Self::Es256,
            ferry_token::SigningAlgorithm::EdDSA => Self::EdDsa,
            ferry_token::SigningAlgorithm::RS256 => Self::Rs256,
        }
    }
}

impl SigningAlg {
    /// Parses a JWS `alg` name.
    pub fn from_name(name: &str) -> Option<Self> {
        ferry_token::SigningAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .map(Self::from)
    }

    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        ferry_token::SigningAlgorithm::from(self).name()
    }
}

/// The RFC 7638 thumbprint of a public JWK (the one relying services compute too).
pub use ferry_verify::dpop::thumbprint;

/// Completes a public JWK with its thumbprint `kid`, `alg` and `use`.
pub fn finish_jwk(mut jwk: Value, alg: &str) -> (String, Value) {
    let kid = thumbprint(&jwk);
    if let Some(o) = jwk.as_object_mut() {
        o.insert("kid".into(), json!(kid));
        o.insert("alg".into(), json!(alg));
        o.insert("use".into(), json!("sig"));
    }
    (kid, jwk)
}

/// The public JWK of an uncompressed P-256 point (`04 || x || y`).
pub fn p256_jwk(point: &[u8]) -> Option<Value> {
    let (x, y) = point
        .split_first()
        .filter(|(tag, xy)| **tag == 4 && xy.len() == 64)
        .and_then(|(_, xy)| xy.split_at_checked(32))?;
    Some(json!({"kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}))
}

enum Inner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// A key held in process memory, parsed once.
pub struct SoftwareSigner {
    kid: String,
    alg: SigningAlg,
    inner: Inner,
    jwk: Value,
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl SoftwareSigner {
    /// Generates a new key, returning the signer and its PKCS#8 encoding.
    pub fn generate(alg: SigningAlg) -> Result<(Self, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let der = match alg {
            SigningAlg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generate)?
                    .as_ref()
                    .to_vec()
            }
            SigningAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            SigningAlg::Rs256 => {
                let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
                AsDer::<Pkcs8V1Der>::as_der(&kp)
                    .map_err(|_| KeyError::Generate)?
                    .as_ref()
                    .to_vec()
            }
        };
        Ok((Self::from_pkcs8(alg, &der)?, der))
    }

    /// Loads a key from PKCS#8 DER.
    pub fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<Self, KeyError> {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let (inner, jwk) = match alg {
            SigningAlg::Es256 => {
                let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| KeyError::InvalidKey("P-256"))?;
                let jwk = p256_jwk(k.public_key().as_ref()).ok_or(KeyError::InvalidKey("P-256"))?;
                (Inner::Es256(k), jwk)
            }
            SigningAlg::EdDsa => {
                let k =
                    Ed25519KeyPair::from_pkcs8(der).map_err(|_| KeyError::InvalidKey("Ed25519"))?;
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b(k.public_key().as_ref())});
                (Inner::EdDsa(k), jwk)
            }
            SigningAlg::Rs256 => {
                let k = RsaKeyPair::from_pkcs8(der).map_err(|_| KeyError::InvalidKey("RSA"))?;
                let pk = k.public_key();
                let jwk = json!({"kty": "RSA",
                    "n": b(pk.modulus().big_endian_without_leading_zero()),
                    "e": b(pk.exponent().big_endian_without_leading_zero())});
                (Inner::Rs256(k), jwk)
            }
        };
        let (kid, jwk) = finish_jwk(jwk, alg.name());
        Ok(Self {
            kid,
            alg,
            inner,
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
        self.alg.name()
    }
    fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            Inner::Es256(k) => k
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Inner::EdDsa(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Inner::Rs256(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
        }
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

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let rfc = json!({"kty": "RSA", "e": "AQAB", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            thumbprint(&rfc),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn software_signers_pass_the_conformance_suite() {
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
            let (signer, der) = SoftwareSigner::generate(alg).unwrap();
            crate::conformance::check_signer(&signer);
            let again = SoftwareSigner::from_pkcs8(alg, &der).unwrap();
            assert_eq!(
                again.kid(),
                signer.kid(),
                "{alg:?}: reloading keeps the kid"
            );
        }
    }

    #[test]
    fn signing_algorithms_are_the_token_profiles() {
        for a in ferry_token::SigningAlgorithm::ALL {
            let signer = SigningAlg::from(a);
            assert_eq!(signer.name(), a.name());
            assert_eq!(SigningAlg::from_name(a.name()), Some(signer));
            assert_eq!(ferry_token::SigningAlgorithm::from(signer), a);
        }
        for bad in ["HS256", "none", "es256", ""] {
            assert_eq!(SigningAlg::from_name(bad), None, "{bad}");
        }
    }
}
