//! SAML 2.0 assertions as subject tokens: the document admitted and parsed with limits,
//! its shape checked, every signature in it verified with the provider's certificates,
//! and the one assertion read from inside a verified signature's element only.
//!
//! The shape accepted is the one identity providers send: a `samlp:Response` holding
//! exactly one `saml:Assertion` as a direct child, or the `saml:Assertion` alone;
//! signatures only as direct children of those two; `ID`s unique. With that shape, the
//! reference of each signature pointing at its own parent, and the assertion read from
//! the node that was digested (never looked up again), the signature-wrapping family
//! (XSW1–8) has nowhere to put a second assertion or a moved signature.

mod assertion;
mod c14n;
mod dsig;
mod keys;
pub mod sign;
mod xml;

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use roxmltree::{Document, Node, NodeId};

use crate::keys_error::KeysError;

pub use assertion::date_time;
pub use c14n::{Mode as Canonicalization, canonicalize};
pub use keys::{Certificate, SigAlg, from_metadata, from_pem};
pub use xml::{MAX_DEPTH, MAX_XML_BYTES};

/// The SAML 2.0 assertion namespace.
pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// The SAML 2.0 protocol namespace.
pub const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// Why an assertion is refused. Messages are fixed: they never echo the document.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SamlError {
    /// Not base64 of UTF-8 XML.
    #[error("the SAML token is not base64-encoded XML")]
    Encoding,
    /// Over the size or node limit.
    #[error("the SAML document is too large")]
    TooLarge,
    /// Nested too deeply.
    #[error("the SAML document is nested too deeply")]
    TooDeep,
    /// Too many namespace bindings in scope at an element.
    #[error("the SAML document declares too many namespaces")]
    TooManyNamespaces,
    /// A DTD or entity declaration.
    #[error("the SAML document has a DTD; DTDs and entities are refused")]
    Dtd,
    /// A processing instruction.
    #[error("the SAML document has a processing instruction")]
    ProcessingInstruction,
    /// Not well-formed XML.
    #[error("the SAML document is not well-formed XML")]
    Malformed,
    /// An encrypted assertion, identifier or attribute.
    #[error(
        "encrypted SAML assertions are not supported: configure the identity provider to sign, not encrypt, assertions for Ferry"
    )]
    Encrypted,
    /// The document's shape is not one Ferry accepts.
    #[error("the SAML document's structure is refused: {0}")]
    Structure(&'static str),
    /// The same `ID` twice.
    #[error("the SAML document has duplicate IDs")]
    DuplicateId,
    /// No signature covers the assertion.
    #[error("the SAML assertion is not signed")]
    Unsigned,
    /// A reference to anything but the signature's own parent.
    #[error("a signature's reference does not name the element it signs")]
    Reference,
    /// Transforms other than enveloped-signature and one canonicalization.
    #[error("a signature uses a transform or canonicalization Ferry does not accept")]
    Transform,
    /// A signature or digest algorithm outside the allowlist.
    #[error("a signature uses an algorithm Ferry does not accept")]
    Algorithm,
    /// SHA-1 without the provider's opt-in.
    #[error("a signature uses SHA-1, which this provider does not allow")]
    Sha1,
    /// The digest does not match the signed element.
    #[error("a signed element was modified (digest mismatch)")]
    Digest,
    /// The signature does not verify with the provider's certificates.
    #[error("a signature does not verify with the identity provider's certificates")]
    Signature,
    /// `KeyInfo` names a certificate the provider does not trust.
    #[error("the signing certificate is not one of the identity provider's")]
    UntrustedCertificate,
    /// A certificate cannot be read.
    #[error("a certificate cannot be read")]
    Certificate,
    /// The metadata does not describe the entity, or has no signing certificate.
    #[error("the metadata has no signing certificate for the identity provider")]
    MetadataEntity,
    /// `Issuer` is not the provider's entity id.
    #[error("the assertion's issuer is not the identity provider")]
    Issuer,
    /// No `NameID`.
    #[error("the assertion has no subject NameID")]
    NoSubject,
    /// No usable bearer confirmation.
    #[error("the assertion has no bearer subject confirmation")]
    NoBearer,
    /// The recipient is not Ferry.
    #[error("the assertion's recipient is not this token endpoint")]
    Recipient,
    /// The audience is not Ferry.
    #[error("the assertion is not addressed to an accepted audience")]
    Audience,
    /// Past `NotOnOrAfter`.
    #[error("the assertion has expired")]
    Expired,
    /// Before `NotBefore`.
    #[error("the assertion is not yet valid")]
    NotYetValid,
    /// Valid further into the future than the provider allows.
    #[error("the assertion is valid for longer than the provider allows")]
    Lifetime,
    /// A time value cannot be read.
    #[error("a time in the assertion is not an xs:dateTime")]
    Time,
    /// The response reports no success.
    #[error("the SAML response does not report success")]
    Status,
    /// The provider's certificates cannot be obtained.
    #[error("identity provider certificates unavailable: {0}")]
    KeysUnavailable(KeysError),
}

/// What an assertion must satisfy, from the provider's configuration.
#[derive(Debug, Clone, Copy)]
pub struct SamlPolicy<'a> {
    /// The identity provider's entity id (`Issuer`).
    pub entity_id: &'a str,
    /// Ferry's SP entity ids (`Audience`).
    pub audiences: &'a [String],
    /// Accepted `Recipient`s.
    pub recipients: &'a [String],
    /// Clock leeway, seconds.
    pub leeway: i64,
    /// Whether SHA-1 signatures and digests are accepted.
    pub allow_sha1: bool,
    /// The longest an assertion may still be valid for, seconds: bounds how long a
    /// single-use `ID` is held.
    pub max_lifetime: i64,
}

/// A verified assertion, as the mapping sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The assertion's `ID`.
    pub id: String,
    /// `Issuer`.
    pub issuer: String,
    /// `Subject/NameID`.
    pub subject: String,
    /// `NameID@Format`.
    pub name_id_format: Option<String>,
    /// Attribute name to values.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// When the assertion ends (`Conditions@NotOnOrAfter`, else the confirmation's).
    pub not_on_or_after: i64,
    /// The bearer confirmation's `NotOnOrAfter`.
    pub confirmed_until: i64,
    /// Whether `Conditions` has `OneTimeUse`.
    pub one_time_use: bool,
}

/// The claims a SAML provider's mapping reads as `assertion`, in Google's names:
/// `subject` (NameID), `attributes` (name to list of values), `issuer`, and
/// `name_id_format` when the NameID has one.
pub fn claims(a: &Assertion) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{Value, json};
    let mut m = serde_json::Map::new();
    m.insert("subject".into(), Value::String(a.subject.clone()));
    m.insert("issuer".into(), Value::String(a.issuer.clone()));
    m.insert("attributes".into(), json!(a.attributes));
    if let Some(f) = &a.name_id_format {
        m.insert("name_id_format".into(), Value::String(f.clone()));
    }
    m
}

/// Decodes a SAML document given as a `…:saml2` token, or as raw XML (files users
/// keep for `ferry explain` and `ferry test`).
pub fn decode_or_xml(text: &str) -> Result<String, SamlError> {
    let t = text.trim();
    if t.starts_with('<') {
        return Ok(t.to_owned());
    }
    decode(t)
}

/// Decodes a `…:saml2` subject token: base64 in the standard or URL-safe alphabet,
/// padded or not, line breaks ignored; a space is read as the `+` a form encoding lost.
pub fn decode(token: &str) -> Result<String, SamlError> {
    let cleaned: String = token
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let alphabet = if cleaned.contains(['-', '_']) {
        &alphabet::URL_SAFE
    } else {
        &alphabet::STANDARD
    };
    if cleaned.len() > MAX_XML_BYTES / 3 * 4 + 4 {
        return Err(SamlError::TooLarge);
    }
    let bytes = GeneralPurpose::new(alphabet, config)
        .decode(cleaned)
        .map_err(|_| SamlError::Encoding)?;
    String::from_utf8(bytes).map_err(|_| SamlError::Encoding)
}

/// A parsed SAML document whose shape has been checked; not yet verified.
#[derive(Debug)]
pub struct SamlDocument<'a> {
    doc: Document<'a>,
    assertion: NodeId,
}

fn shape(doc: &Document<'_>) -> Result<NodeId, SamlError> {
    let root = doc.root_element();
    let response = xml::is(root, SAMLP, "Response");
    if !response && !xml::is(root, SAML, "Assertion") {
        return Err(SamlError::Structure(
            "the document is neither a Response nor an Assertion",
        ));
    }
    let mut ids = HashSet::new();
    let mut assertions = Vec::new();
    for n in doc.descendants().filter(Node::is_element) {
        if xml::attr(n, "ID").is_some_and(|id| !ids.insert(id)) {
            return Err(SamlError::DuplicateId);
        }
        if xml::is(n, SAML, "EncryptedAssertion") {
            return Err(SamlError::Encrypted);
        }
        if xml::is(n, SAML, "Assertion") {
            assertions.push(n);
        }
        if xml::is(n, SAMLP, "Response") && n != root {
            return Err(SamlError::Structure("a response inside a response"));
        }
    }
    let [assertion] = assertions.as_slice() else {
        return Err(SamlError::Structure(
            "the document must hold exactly one assertion",
        ));
    };
    if response && assertion.parent() != Some(root) {
        return Err(SamlError::Structure(
            "the assertion is not a child of the response",
        ));
    }
    let mut signed_parents = Vec::with_capacity(2);
    for s in doc
        .descendants()
        .filter(|n| xml::is(*n, dsig::DS, "Signature"))
    {
        let parent = s.parent();
        if parent != Some(root) && parent != Some(*assertion) {
            return Err(SamlError::Structure(
                "a signature is not on the response or the assertion",
            ));
        }
        // One signature per element: each costs a canonicalization of its whole element.
        if signed_parents.contains(&parent) {
            return Err(SamlError::Structure(
                "an element carries more than one signature",
            ));
        }
        signed_parents.push(parent);
    }
    if response {
        let status = xml::only_child(root, SAMLP, "Status")?
            .and_then(|s| xml::only_child(s, SAMLP, "StatusCode").ok().flatten())
            .and_then(|c| xml::attr(c, "Value"));
        // The schema requires a Status in every response; success is the only one taken.
        if status != Some(SUCCESS) {
            return Err(SamlError::Status);
        }
    }
    Ok(assertion.id())
}

impl<'a> SamlDocument<'a> {
    /// Parses decoded XML and checks its shape.
    pub fn parse(xml: &'a str) -> Result<Self, SamlError> {
        let doc = xml::parse(xml)?;
        let assertion = shape(&doc)?;
        Ok(Self { doc, assertion })
    }

    fn assertion(&self) -> Result<Node<'_, 'a>, SamlError> {
        self.doc
            .get_node(self.assertion)
            .ok_or(SamlError::Malformed)
    }

    /// The assertion's `Issuer`, unverified: only to choose the provider.
    pub fn issuer(&self) -> Result<String, SamlError> {
        let issuer =
            xml::only_child(self.assertion()?, SAML, "Issuer")?.ok_or(SamlError::Issuer)?;
        Ok(xml::text_of(issuer)?
            .trim_matches(xml::XML_SPACE)
            .to_owned())
    }

    /// The assertion's issuer, subject and attributes, NOT verified: for authoring
    /// policies offline (`ferry test`), never for accepting a token.
    pub fn read_unverified(&self) -> Result<Assertion, SamlError> {
        assertion::read_unchecked(self.assertion()?)
    }

    /// Verifies every signature with `certificates`, then reads the assertion from a
    /// signed element and checks it against `policy` at `now`.
    pub fn verify_with(
        &self,
        certificates: &[Certificate],
        policy: &SamlPolicy<'_>,
        now: i64,
    ) -> Result<Assertion, SamlError> {
        let root = self.doc.root_element();
        let assertion = self.assertion()?;
        let mut signed = Vec::new();
        for s in self
            .doc
            .descendants()
            .filter(|n| xml::is(*n, dsig::DS, "Signature"))
        {
            signed.push(dsig::verify(s, certificates, policy.allow_sha1)?);
        }
        // The assertion read is the node a verified signature digested, or a child of it.
        if !signed.contains(&assertion.id()) && !signed.contains(&root.id()) {
            return Err(SamlError::Unsigned);
        }
        if xml::is(root, SAMLP, "Response") {
            if let Some(issuer) = xml::only_child(root, SAML, "Issuer")?
                && xml::text_of(issuer)?.trim_matches(xml::XML_SPACE) != policy.entity_id
            {
                return Err(SamlError::Issuer);
            }
            if xml::attr(root, "Destination")
                .is_some_and(|d| !policy.recipients.iter().any(|r| r == d))
            {
                return Err(SamlError::Recipient);
            }
        }
        assertion::read(assertion, policy, now)
    }
}

#[cfg(test)]
mod tests;
