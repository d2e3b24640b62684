//! One enveloped XML signature, verified in the single shape SAML identity providers
//! use, and nothing else: a `ds:Signature` that is a child of the element it signs;
//! `SignedInfo` with exclusive (or inclusive 1.0) canonicalization, an allowed
//! signature method and exactly one `Reference`, whose URI is `#` + the parent's `ID`;
//! transforms `enveloped-signature` then at most one canonicalization; an allowed
//! digest; no `Object`, no `Manifest`. The key is one of the provider's certificates;
//! a certificate in `KeyInfo` only chooses among them and must be one of them.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use roxmltree::{Node, NodeId};

use super::SamlError;
use super::c14n::{Mode, canonicalize};
use super::keys::{Certificate, SigAlg};
use super::xml::{attr, elements, is, only_child, text_of};

pub use super::xml::DS;
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const C14N_10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

fn signature_method(uri: &str, allow_sha1: bool) -> Result<SigAlg, SamlError> {
    Ok(match uri {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => SigAlg::RsaSha256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => SigAlg::RsaSha384,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => SigAlg::RsaSha512,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => SigAlg::EcdsaSha256,
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => SigAlg::EcdsaSha384,
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1" if allow_sha1 => SigAlg::RsaSha1,
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1" => return Err(SamlError::Sha1),
        _ => return Err(SamlError::Algorithm),
    })
}

fn digest_method(uri: &str, allow_sha1: bool) -> Result<&'static digest::Algorithm, SamlError> {
    Ok(match uri {
        "http://www.w3.org/2001/04/xmlenc#sha256" => &digest::SHA256,
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => &digest::SHA384,
        "http://www.w3.org/2001/04/xmlenc#sha512" => &digest::SHA512,
        "http://www.w3.org/2000/09/xmldsig#sha1" if allow_sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        "http://www.w3.org/2000/09/xmldsig#sha1" => return Err(SamlError::Sha1),
        _ => return Err(SamlError::Algorithm),
    })
}

fn algorithm_of<'a>(node: Node<'a, '_>) -> Result<&'a str, SamlError> {
    attr(node, "Algorithm").ok_or(SamlError::Structure("an algorithm is not named"))
}

/// A canonicalization method element (`CanonicalizationMethod` or a `Transform`) as a
/// [`Mode`]; anything else is refused.
fn c14n_mode(node: Node<'_, '_>) -> Result<Mode, SamlError> {
    match algorithm_of(node)? {
        EXC_C14N => {
            let mut listed = Vec::new();
            for child in elements(node) {
                if !is(child, EXC_C14N, "InclusiveNamespaces") {
                    return Err(SamlError::Transform);
                }
                for p in attr(child, "PrefixList")
                    .unwrap_or("")
                    .split_ascii_whitespace()
                {
                    listed.push(if p == "#default" {
                        String::new()
                    } else {
                        p.to_owned()
                    });
                }
            }
            Ok(Mode::Exclusive(listed))
        }
        C14N_10 if elements(node).next().is_none() => Ok(Mode::Inclusive),
        _ => Err(SamlError::Transform),
    }
}

/// The canonicalization a `Reference`'s transforms end in: `enveloped-signature`
/// first, then at most one canonicalization (Canonical XML 1.0 when none is named).
fn transforms(reference: Node<'_, '_>) -> Result<Mode, SamlError> {
    let list = only_child(reference, DS, "Transforms")?.ok_or(SamlError::Transform)?;
    let mut steps = elements(list);
    let first = steps.next().ok_or(SamlError::Transform)?;
    if !is(first, DS, "Transform") || algorithm_of(first)? != ENVELOPED {
        return Err(SamlError::Transform);
    }
    let mode = match steps.next() {
        None => Mode::Inclusive,
        Some(t) if is(t, DS, "Transform") => c14n_mode(t)?,
        Some(_) => return Err(SamlError::Transform),
    };
    if steps.next().is_some() {
        return Err(SamlError::Transform);
    }
    Ok(mode)
}

fn base64_of(node: Node<'_, '_>) -> Result<Vec<u8>, SamlError> {
    let text: String = text_of(node)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(text)
        .map_err(|_| SamlError::Structure("a base64 value does not decode"))
}

/// The certificates a signature may be checked with: the one its `KeyInfo` names, which
/// must be configured, or every configured one.
fn keys_for<'k>(
    signature: Node<'_, '_>,
    configured: &'k [Certificate],
) -> Result<Vec<&'k Certificate>, SamlError> {
    let named = signature
        .descendants()
        .filter(|n| is(*n, DS, "X509Certificate"))
        .map(base64_of)
        .collect::<Result<Vec<_>, _>>()?;
    if named.is_empty() {
        return Ok(configured.iter().collect());
    }
    let chosen: Vec<&Certificate> = configured
        .iter()
        .filter(|c| named.iter().any(|n| c.der() == n.as_slice()))
        .collect();
    if chosen.is_empty() {
        return Err(SamlError::UntrustedCertificate);
    }
    Ok(chosen)
}

/// The parts of a `ds:Signature`, in the only order and number accepted.
struct Parts<'a, 'i> {
    signed_info: Node<'a, 'i>,
    value: Node<'a, 'i>,
}

fn parts<'a, 'i>(signature: Node<'a, 'i>) -> Result<Parts<'a, 'i>, SamlError> {
    let mut children = elements(signature);
    let signed_info = children.next().filter(|n| is(*n, DS, "SignedInfo"));
    let value = children.next().filter(|n| is(*n, DS, "SignatureValue"));
    let (Some(signed_info), Some(value)) = (signed_info, value) else {
        return Err(SamlError::Structure(
            "a signature is not SignedInfo, SignatureValue, KeyInfo",
        ));
    };
    for rest in children {
        // KeyInfo only: an Object (and a Manifest in it) is where wrapping attacks
        // hide the signed content.
        if !is(rest, DS, "KeyInfo") {
            return Err(SamlError::Structure("a signature holds more than KeyInfo"));
        }
    }
    Ok(Parts { signed_info, value })
}

/// Verifies one enveloped signature; returns the element it covers (its parent).
pub fn verify(
    signature: Node<'_, '_>,
    configured: &[Certificate],
    allow_sha1: bool,
) -> Result<NodeId, SamlError> {
    let signed = signature
        .parent()
        .filter(Node::is_element)
        .ok_or(SamlError::Structure("a signature has no parent element"))?;
    let id = attr(signed, "ID")
        .filter(|id| !id.is_empty())
        .ok_or(SamlError::Structure("a signed element has no ID"))?;
    let Parts { signed_info, value } = parts(signature)?;

    let mut info = elements(signed_info);
    let c14n = info
        .next()
        .filter(|n| is(*n, DS, "CanonicalizationMethod"))
        .ok_or(SamlError::Structure(
            "SignedInfo has no CanonicalizationMethod",
        ))?;
    let method = info
        .next()
        .filter(|n| is(*n, DS, "SignatureMethod"))
        .ok_or(SamlError::Structure("SignedInfo has no SignatureMethod"))?;
    let reference = info
        .next()
        .filter(|n| is(*n, DS, "Reference"))
        .ok_or(SamlError::Structure("SignedInfo has no Reference"))?;
    if info.next().is_some() {
        return Err(SamlError::Structure(
            "a signature has more than one reference",
        ));
    }
    if elements(method).next().is_some() {
        return Err(SamlError::Structure("SignatureMethod has parameters"));
    }
    let info_mode = c14n_mode(c14n)?;
    let alg = signature_method(algorithm_of(method)?, allow_sha1)?;

    // The reference names the element the signature sits in, and nothing else.
    if attr(reference, "URI").and_then(|u| u.strip_prefix('#')) != Some(id) {
        return Err(SamlError::Reference);
    }
    let mode = transforms(reference)?;
    let digest_alg = digest_method(
        algorithm_of(
            only_child(reference, DS, "DigestMethod")?
                .ok_or(SamlError::Structure("a reference has no DigestMethod"))?,
        )?,
        allow_sha1,
    )?;
    let expected = base64_of(
        only_child(reference, DS, "DigestValue")?
            .ok_or(SamlError::Structure("a reference has no DigestValue"))?,
    )?;
    // The signature over SignedInfo first: it is small, and a forged document is refused
    // before the (larger) signed element is canonicalized and digested.
    let message = canonicalize(signed_info, None, &info_mode);
    let signature_value = base64_of(value)?;
    let keys = keys_for(signature, configured)?;
    if !keys
        .iter()
        .any(|k| k.verify(alg, &message, &signature_value))
    {
        return Err(SamlError::Signature);
    }
    let actual = digest::digest(
        digest_alg,
        &canonicalize(signed, Some(signature.id()), &mode),
    );
    if actual.as_ref() != expected.as_slice() {
        return Err(SamlError::Digest);
    }
    Ok(signed.id())
}
