//! Public keys compared by value: a self-signed client certificate's key against the keys
//! the client registered (RFC 8705 §2.2). A JWK with `x5c` stands for its first
//! certificate's SubjectPublicKeyInfo; one without, for its public parameters. Both sides
//! are reduced to the same form, so an RSA modulus with or without its leading zero, or a
//! JWK and the certificate of the same key, compare equal.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A public key in the form keys are compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKeyParams {
    /// RSA: modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An elliptic curve point (SEC 1 uncompressed: `04 ‖ x ‖ y`) on a JOSE curve.
    Ec { crv: &'static str, point: Vec<u8> },
    /// An Edwards curve key (RFC 8037 `OKP`).
    Okp { crv: &'static str, x: Vec<u8> },
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";
const CURVES: &[(&str, &str)] = &[
    ("1.2.840.10045.3.1.7", "P-256"),
    ("1.3.132.0.34", "P-384"),
    ("1.3.132.0.35", "P-521"),
];

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default().to_vec()
}

fn curve(name: &str) -> Option<&'static str> {
    CURVES.iter().map(|(_, n)| *n).find(|n| *n == name)
}

/// The key of a certificate's SubjectPublicKeyInfo; `None` for other key types.
pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Option<PublicKeyParams> {
    let alg = spki.algorithm.algorithm.to_id_string();
    let data = spki.subject_public_key.data.as_ref();
    match alg.as_str() {
        OID_RSA => match spki.parsed().ok()? {
            PublicKey::RSA(k) => Some(PublicKeyParams::Rsa {
                n: strip_zeros(k.modulus),
                e: strip_zeros(k.exponent),
            }),
            _ => None,
        },
        OID_EC => {
            let named = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            let named = named.to_id_string();
            let crv = CURVES.iter().find(|(o, _)| *o == named).map(|(_, n)| *n)?;
            Some(PublicKeyParams::Ec {
                crv,
                point: data.to_vec(),
            })
        }
        OID_ED25519 => Some(PublicKeyParams::Okp {
            crv: "Ed25519",
            x: data.to_vec(),
        }),
        OID_ED448 => Some(PublicKeyParams::Okp {
            crv: "Ed448",
            x: data.to_vec(),
        }),
        _ => None,
    }
}

fn b64url(jwk: &Value, member: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(jwk.get(member)?.as_str()?.trim_end_matches('='))
        .ok()
}

/// A JWK's key: its first `x5c` certificate's when it has one (RFC 7517 §4.7), else its
/// public parameters. `None` for a JWK that holds no key Ferry compares.
pub fn from_jwk(jwk: &Value) -> Option<PublicKeyParams> {
    if let Some(x5c) = jwk.get("x5c") {
        let der = STANDARD.decode(x5c.as_array()?.first()?.as_str()?).ok()?;
        let (_, cert) = X509Certificate::from_der(&der).ok()?;
        return from_spki(cert.public_key());
    }
    match jwk.get("kty")?.as_str()? {
        "RSA" => Some(PublicKeyParams::Rsa {
            n: strip_zeros(&b64url(jwk, "n")?),
            e: strip_zeros(&b64url(jwk, "e")?),
        }),
        "EC" => {
            let crv = curve(jwk.get("crv")?.as_str()?)?;
            let mut point = vec![0x04];
            point.extend(b64url(jwk, "x")?);
            point.extend(b64url(jwk, "y")?);
            Some(PublicKeyParams::Ec { crv, point })
        }
        "OKP" => {
            let crv = match jwk.get("crv")?.as_str()? {
                "Ed25519" => "Ed25519",
                "Ed448" => "Ed448",
                _ => return None,
            };
            Some(PublicKeyParams::Okp {
                crv,
                x: b64url(jwk, "x")?,
            })
        }
        _ => None,
    }
}

/// The keys of a JWKS document Ferry compares (others are skipped); at least one.
pub fn from_jwks(text: &str) -> Result<Vec<PublicKeyParams>, &'static str> {
    let doc: Value = serde_json::from_str(text).map_err(|_| "is not JSON")?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("has no keys array")?;
    let found: Vec<_> = keys.iter().filter_map(from_jwk).collect();
    if found.is_empty() {
        return Err("holds no RSA, EC (P-256, P-384, P-521) or OKP (Ed25519, Ed448) public key");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_testkit::TestKey;

    /// A self-signed certificate for a test key, and the key's public JWK.
    fn cert_and_jwk(key: &TestKey) -> (Vec<u8>, Value) {
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(key.pkcs8().to_vec());
        let pair = rcgen::KeyPair::try_from(&der).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        (cert.der().to_vec(), key.public_jwk())
    }

    #[test]
    fn a_certificate_and_the_jwk_of_its_key_compare_equal() {
        let others = [TestKey::rsa("o"), TestKey::ec("o"), TestKey::ed("o")];
        for key in [TestKey::rsa("k"), TestKey::ec("k"), TestKey::ed("k")] {
            let (der, jwk) = cert_and_jwk(&key);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let from_cert = from_spki(cert.public_key()).unwrap();
            assert_eq!(from_jwk(&jwk), Some(from_cert.clone()), "{}", key.alg());
            // The same key given as x5c.
            let x5c = serde_json::json!({"kty": "EC", "x5c": [STANDARD.encode(&der)]});
            assert_eq!(from_jwk(&x5c), Some(from_cert.clone()));
            // Twin: a key of the same type, another value.
            for other in &others {
                assert_ne!(from_jwk(&other.public_jwk()), Some(from_cert.clone()));
            }
        }
    }

    #[test]
    fn an_rsa_modulus_compares_with_or_without_its_leading_zero() {
        let key = TestKey::rsa("k");
        let mut jwk = key.public_jwk();
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        let padded = [&[0u8][..], &n].concat();
        jwk["n"] = URL_SAFE_NO_PAD.encode(padded).into();
        assert_eq!(from_jwk(&jwk), from_jwk(&key.public_jwk()));
    }

    #[test]
    fn a_jwks_without_a_comparable_key_is_refused() {
        assert!(from_jwks(r#"{"keys": [{"kty": "oct", "k": "AA"}]}"#).is_err());
        assert!(from_jwks("[]").is_err());
        assert!(
            from_jwks(r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#).is_ok()
        );
    }
}
