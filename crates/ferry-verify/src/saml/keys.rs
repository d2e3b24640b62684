//! An identity provider's signing certificates: from its SAML metadata
//! (`EntityDescriptor` → `IDPSSODescriptor` → `KeyDescriptor` for signing) or from PEM
//! given in configuration. Only the public key is used: no chain, no validity dates
//! (SAML metadata pins the key, as every IdP's documentation says).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::SamlError;
use super::xml::{DS, attr, elements, is, parse, text_of};

/// The SAML 2.0 metadata namespace.
const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// The most certificates one provider may publish.
const MAX_CERTIFICATES: usize = 16;

/// The signature algorithms of XML signatures Ferry verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    /// `rsa-sha1`, only with the provider's opt-in.
    RsaSha1,
    /// `rsa-sha256`.
    RsaSha256,
    /// `rsa-sha384`.
    RsaSha384,
    /// `rsa-sha512`.
    RsaSha512,
    /// `ecdsa-sha256`.
    EcdsaSha256,
    /// `ecdsa-sha384`.
    EcdsaSha384,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
}

/// One trusted signing certificate, its public key read once.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    kind: KeyKind,
    /// RSA: the `RSAPublicKey`; EC: the uncompressed point.
    public_key: Vec<u8>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// A certificate from its DER encoding.
    pub fn from_der(der: &[u8]) -> Result<Self, SamlError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| SamlError::Certificate)?;
        let spki = cert.public_key();
        let (kind, public_key) = match spki.parsed().map_err(|_| SamlError::Certificate)? {
            PublicKey::RSA(_) => (KeyKind::Rsa, spki.subject_public_key.data.to_vec()),
            PublicKey::EC(point) => match point.data().len() {
                65 => (KeyKind::P256, point.data().to_vec()),
                97 => (KeyKind::P384, point.data().to_vec()),
                _ => return Err(SamlError::Certificate),
            },
            _ => return Err(SamlError::Certificate),
        };
        Ok(Self {
            der: der.to_vec(),
            kind,
            public_key,
        })
    }

    /// The certificate's DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn algorithm(&self, alg: SigAlg) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match (self.kind, alg) {
            (KeyKind::Rsa, SigAlg::RsaSha1) => {
                &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
            }
            (KeyKind::Rsa, SigAlg::RsaSha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (KeyKind::Rsa, SigAlg::RsaSha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (KeyKind::Rsa, SigAlg::RsaSha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (KeyKind::P256, SigAlg::EcdsaSha256) => &signature::ECDSA_P256_SHA256_FIXED,
            (KeyKind::P384, SigAlg::EcdsaSha384) => &signature::ECDSA_P384_SHA384_FIXED,
            _ => return None,
        })
    }

    /// Whether `sig` is this key's `alg` signature over `message`.
    pub fn verify(&self, alg: SigAlg, message: &[u8], sig: &[u8]) -> bool {
        self.algorithm(alg).is_some_and(|a| {
            UnparsedPublicKey::new(a, &self.public_key)
                .verify(message, sig)
                .is_ok()
        })
    }
}

fn push(out: &mut Vec<Certificate>, cert: Certificate) -> Result<(), SamlError> {
    if out.iter().any(|c| c.der == cert.der) {
        return Ok(());
    }
    if out.len() >= MAX_CERTIFICATES {
        return Err(SamlError::Certificate);
    }
    out.push(cert);
    Ok(())
}

/// The signing certificates of the identity provider `entity_id` in a metadata document
/// (an `EntityDescriptor`, or an `EntitiesDescriptor` holding it).
pub fn from_metadata(xml: &[u8], entity_id: &str) -> Result<Vec<Certificate>, SamlError> {
    let xml = std::str::from_utf8(xml).map_err(|_| SamlError::Malformed)?;
    let doc = parse(xml)?;
    let entity = doc
        .descendants()
        .find(|n| is(*n, MD, "EntityDescriptor") && attr(*n, "entityID") == Some(entity_id))
        .ok_or(SamlError::MetadataEntity)?;
    let mut out = Vec::new();
    for idp in elements(entity).filter(|n| is(*n, MD, "IDPSSODescriptor")) {
        for kd in elements(idp).filter(|n| is(*n, MD, "KeyDescriptor")) {
            // `use` absent means both signing and encryption.
            if attr(kd, "use").is_some_and(|u| u != "signing") {
                continue;
            }
            for c in kd.descendants().filter(|n| is(*n, DS, "X509Certificate")) {
                let b64: String = text_of(c)?
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                let der = STANDARD.decode(b64).map_err(|_| SamlError::Certificate)?;
                push(&mut out, Certificate::from_der(&der)?)?;
            }
        }
    }
    if out.is_empty() {
        return Err(SamlError::MetadataEntity);
    }
    Ok(out)
}

/// Certificates from PEM text (one or more `CERTIFICATE` blocks).
pub fn from_pem(pem: &[u8]) -> Result<Vec<Certificate>, SamlError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|_| SamlError::Certificate)?;
        if block.label != "CERTIFICATE" {
            return Err(SamlError::Certificate);
        }
        push(&mut out, Certificate::from_der(&block.contents)?)?;
    }
    if out.is_empty() {
        return Err(SamlError::Certificate);
    }
    Ok(out)
}
