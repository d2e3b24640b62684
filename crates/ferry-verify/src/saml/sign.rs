//! Signing a SAML element with an enveloped signature, in the shape [`super`] verifies:
//! for Ferry's development issuer and for tests. Production Ferry never signs XML.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use roxmltree::Node;

use super::SamlError;
use super::c14n::{Mode, canonicalize};
use super::dsig::DS;
use super::xml::{elements, is, parse};

const DIGEST_SLOT: &str = "@@FERRY-DIGEST@@";
const SIGNATURE_SLOT: &str = "@@FERRY-SIGNATURE@@";

/// A signing key with its certificate.
pub enum SamlSigner {
    /// RSA (PKCS#1 v1.5 with SHA-256).
    Rsa(RsaKeyPair, Vec<u8>),
    /// ECDSA P-256 with SHA-256.
    EcdsaP256(EcdsaKeyPair, Vec<u8>),
}

impl std::fmt::Debug for SamlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rsa(..) => "SamlSigner::Rsa",
            Self::EcdsaP256(..) => "SamlSigner::EcdsaP256",
        })
    }
}

impl SamlSigner {
    /// A signer from a PKCS#8 private key (RSA or P-256) and its certificate's DER.
    pub fn from_pkcs8(pkcs8: &[u8], certificate_der: Vec<u8>) -> Result<Self, SamlError> {
        if let Ok(k) = RsaKeyPair::from_pkcs8(pkcs8) {
            return Ok(Self::Rsa(k, certificate_der));
        }
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map(|k| Self::EcdsaP256(k, certificate_der))
            .map_err(|_| SamlError::Certificate)
    }

    fn method(&self) -> &'static str {
        match self {
            Self::Rsa(..) => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            Self::EcdsaP256(..) => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        }
    }

    fn certificate(&self) -> &[u8] {
        match self {
            Self::Rsa(_, c) | Self::EcdsaP256(_, c) => c,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SamlError> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(k, _) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| SamlError::Signature)?;
                Ok(out)
            }
            Self::EcdsaP256(k, _) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SamlError::Signature),
        }
    }

    /// The public key's bytes (for tests comparing keys).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            Self::Rsa(k, _) => k.public_key().as_ref().to_vec(),
            Self::EcdsaP256(k, _) => k.public_key().as_ref().to_vec(),
        }
    }
}

fn by_id<'a, 'i>(doc: &'a roxmltree::Document<'i>, id: &str) -> Option<Node<'a, 'i>> {
    doc.descendants()
        .find(|n| n.is_element() && n.attribute("ID") == Some(id))
}

/// Signs the element whose `ID` is `id`: an enveloped signature (exclusive
/// canonicalization, SHA-256) placed after the element's `Issuer`, as SAML's schema
/// orders it, carrying the signer's certificate in `KeyInfo`.
pub fn sign_element(xml: &str, id: &str, signer: &SamlSigner) -> Result<String, SamlError> {
    const EXC: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
    let at = {
        let doc = parse(xml)?;
        let el = by_id(&doc, id).ok_or(SamlError::Reference)?;
        match elements(el).find(|n| n.tag_name().name() == "Issuer") {
            Some(issuer) => issuer.range().end,
            None => {
                let first = el
                    .first_child()
                    .ok_or(SamlError::Structure("nothing to sign"))?;
                first.range().start
            }
        }
    };
    let signature = format!(
        "<ds:Signature xmlns:ds=\"{DS}\"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC}\"/>\
         <ds:SignatureMethod Algorithm=\"{method}\"/><ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"{EXC}\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
         <ds:DigestValue>{DIGEST_SLOT}</ds:DigestValue></ds:Reference></ds:SignedInfo>\
         <ds:SignatureValue>{SIGNATURE_SLOT}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>\
         <ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>",
        method = signer.method(),
        cert = STANDARD.encode(signer.certificate()),
    );
    let mut out = String::with_capacity(xml.len() + signature.len() + 512);
    out.push_str(xml.get(..at).unwrap_or_default());
    out.push_str(&signature);
    out.push_str(xml.get(at..).unwrap_or_default());

    let digest_value = {
        let doc = parse(&out)?;
        let el = by_id(&doc, id).ok_or(SamlError::Reference)?;
        let sig = elements(el)
            .find(|n| is(*n, DS, "Signature"))
            .ok_or(SamlError::Reference)?;
        let c = canonicalize(el, Some(sig.id()), &Mode::Exclusive(Vec::new()));
        STANDARD.encode(digest::digest(&digest::SHA256, &c))
    };
    out = out.replacen(DIGEST_SLOT, &digest_value, 1);
    let signature_value = {
        let doc = parse(&out)?;
        let info = doc
            .descendants()
            .find(|n| {
                is(*n, DS, "SignedInfo")
                    && n.parent()
                        .and_then(|s| s.parent())
                        .and_then(|p| p.attribute("ID"))
                        == Some(id)
            })
            .ok_or(SamlError::Reference)?;
        STANDARD.encode(signer.sign(&canonicalize(info, None, &Mode::Exclusive(Vec::new())))?)
    };
    Ok(out.replacen(SIGNATURE_SLOT, &signature_value, 1))
}
