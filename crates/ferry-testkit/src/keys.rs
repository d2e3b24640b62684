//! Signing keys for tests and the development issuer: RSA-2048, P-256 and Ed25519,
//! generated fresh or loaded from PKCS#8.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A private key with its `kid`.
pub struct TestKey {
    /// `kid`
    pub kid: String,
    inner: Inner,
    pkcs8: Vec<u8>,
}

enum Inner {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({}, {})", self.kid, self.alg())
    }
}

impl TestKey {
    /// A new RSA-2048 key (RS256).
    pub fn rsa(kid: &str) -> Self {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp)
            .unwrap()
            .as_ref()
            .to_vec();
        Self {
            kid: kid.into(),
            inner: Inner::Rsa(kp),
            pkcs8,
        }
    }

    /// A new P-256 key (ES256).
    pub fn ec(kid: &str) -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        Self {
            kid: kid.into(),
            inner: Inner::Ec(kp),
            pkcs8: doc.as_ref().to_vec(),
        }
    }

    /// A new Ed25519 key (EdDSA).
    pub fn ed(kid: &str) -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        Self {
            kid: kid.into(),
            inner: Inner::Ed(kp),
            pkcs8: doc.as_ref().to_vec(),
        }
    }

    /// Loads a key from PKCS#8 DER, trying RSA, P-256 and Ed25519.
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> anyhow::Result<Self> {
        let inner = if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            Inner::Rsa(k)
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            Inner::Ec(k)
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8(der) {
            Inner::Ed(k)
        } else {
            anyhow::bail!("not an RSA, P-256 or Ed25519 PKCS#8 key");
        };
        Ok(Self {
            kid: kid.into(),
            inner,
            pkcs8: der.to_vec(),
        })
    }

    /// The private key as PKCS#8 DER.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The JWS algorithm.
    pub fn alg(&self) -> &'static str {
        match self.inner {
            Inner::Rsa(_) => "RS256",
            Inner::Ec(_) => "ES256",
            Inner::Ed(_) => "EdDSA",
        }
    }

    /// Signs `msg` with the key's algorithm (JWS signature bytes).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.inner {
            Inner::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    msg,
                    &mut sig,
                )
                .unwrap();
                sig
            }
            Inner::Ec(k) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Inner::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }

    /// The public JWK, with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> Value {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match &self.inner {
            Inner::Rsa(k) => {
                let pk = k.public_key();
                json!({"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                       "n": b(pk.modulus().big_endian_without_leading_zero()),
                       "e": b(pk.exponent().big_endian_without_leading_zero())})
            }
            Inner::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                       "x": b(&p[1..33]), "y": b(&p[33..65])})
            }
            Inner::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA",
                                   "use": "sig", "x": b(k.public_key().as_ref())}),
        }
    }

    /// The RSA public key as PKCS#1 DER bytes (for the HS256 key-confusion attack).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.inner {
            Inner::Rsa(k) => k.public_key().as_ref().to_vec(),
            Inner::Ec(k) => k.public_key().as_ref().to_vec(),
            Inner::Ed(k) => k.public_key().as_ref().to_vec(),
        }
    }
}

/// A JWK Set of these keys' public halves.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()})
}
