//! A SAML identity provider for tests and the development issuer: a signing key with a
//! self-signed certificate, IdP metadata, and assertions built and signed on request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ferry_verify::saml::sign::{SamlSigner, sign_element};

/// The SAML assertion namespace.
pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// The SAML protocol namespace.
pub const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";

/// A SAML identity provider's signing identity.
pub struct SamlIdp {
    /// Its entity id (`Issuer`).
    pub entity_id: String,
    /// Its certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Its certificate, PEM.
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Its private key, PKCS#8 DER (what [`SamlIdp::from_pkcs8`] takes back).
    pub key_der: Vec<u8>,
    signer: SamlSigner,
}

impl std::fmt::Debug for SamlIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlIdp")
            .field("entity_id", &self.entity_id)
            .finish_non_exhaustive()
    }
}

/// The key type of a [`SamlIdp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamlKey {
    /// RSA 2048, rsa-sha256.
    Rsa,
    /// P-256, ecdsa-sha256.
    EcdsaP256,
}

impl SamlIdp {
    /// A new identity provider with a fresh key and self-signed certificate.
    pub fn new(entity_id: &str, key: SamlKey) -> anyhow::Result<Self> {
        let alg = match key {
            SamlKey::Rsa => &rcgen::PKCS_RSA_SHA256,
            SamlKey::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let pair = rcgen::KeyPair::generate_for(alg)?;
        let mut params = rcgen::CertificateParams::new(vec!["idp.example.test".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ferry test SAML IdP");
        let cert = params.self_signed(&pair)?;
        Self::from_pkcs8(entity_id, &pair.serialize_der(), cert.der())
    }

    /// An identity provider whose key (PKCS#8 DER, RSA or P-256) and certificate (DER)
    /// were kept from an earlier [`SamlIdp::new`]: the development issuer's key survives
    /// its restarts this way, so the assertions it minted keep verifying.
    pub fn from_pkcs8(
        entity_id: &str,
        key_der: &[u8],
        certificate_der: &[u8],
    ) -> anyhow::Result<Self> {
        let signer = SamlSigner::from_pkcs8(key_der, certificate_der.to_vec())
            .map_err(|e| anyhow::anyhow!("not an RSA or P-256 PKCS#8 key: {e}"))?;
        Ok(Self {
            entity_id: entity_id.to_owned(),
            certificate_pem: pem("CERTIFICATE", certificate_der),
            certificate_der: certificate_der.to_vec(),
            key_pem: pem("PRIVATE KEY", key_der),
            key_der: key_der.to_vec(),
            signer,
        })
    }

    /// IdP metadata naming this provider and its signing certificate.
    pub fn metadata(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{e}\">\
             <md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
             <md:KeyDescriptor use=\"signing\"><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\
             <ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
             </md:KeyDescriptor></md:IDPSSODescriptor></md:EntityDescriptor>\n",
            e = escape(&self.entity_id),
            c = STANDARD.encode(&self.certificate_der),
        )
    }

    /// Signs the element whose `ID` is `id` in `xml`.
    pub fn sign(&self, xml: &str, id: &str) -> anyhow::Result<String> {
        sign_element(xml, id, &self.signer).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// An assertion from this provider with sensible defaults, to adjust and render.
    pub fn assertion(&self, subject: &str, audience: &str, recipient: &str, now: i64) -> Assertion {
        Assertion {
            id: format!("_a{}", random_hex()),
            issuer: self.entity_id.clone(),
            subject: subject.to_owned(),
            audience: audience.to_owned(),
            recipient: Some(recipient.to_owned()),
            attributes: Vec::new(),
            issue_instant: now,
            not_before: now - 60,
            not_on_or_after: now + 300,
            confirm_until: now + 300,
            one_time_use: false,
        }
    }
}

/// An assertion's content, rendered as a `saml:`-prefixed `Assertion`.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// `ID`.
    pub id: String,
    /// `Issuer`.
    pub issuer: String,
    /// `NameID`.
    pub subject: String,
    /// The one `Audience`.
    pub audience: String,
    /// `SubjectConfirmationData@Recipient`.
    pub recipient: Option<String>,
    /// Attributes, name to values.
    pub attributes: Vec<(String, Vec<String>)>,
    /// `IssueInstant`.
    pub issue_instant: i64,
    /// `Conditions@NotBefore`.
    pub not_before: i64,
    /// `Conditions@NotOnOrAfter`.
    pub not_on_or_after: i64,
    /// `SubjectConfirmationData@NotOnOrAfter`.
    pub confirm_until: i64,
    /// Whether `Conditions` has `OneTimeUse`.
    pub one_time_use: bool,
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    // An id, not a secret: a failed fill leaves zeros, which only makes ids repeat.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `der` as PEM with `label`, in 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Unix seconds as an `xs:dateTime` in UTC.
pub fn xs_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

impl Assertion {
    /// The unsigned `saml:Assertion` element.
    pub fn xml(&self) -> String {
        let recipient = self
            .recipient
            .as_ref()
            .map(|r| format!(" Recipient=\"{}\"", escape(r)))
            .unwrap_or_default();
        let mut attrs = String::new();
        for (name, values) in &self.attributes {
            attrs.push_str(&format!("<saml:Attribute Name=\"{}\">", escape(name)));
            for v in values {
                attrs.push_str(&format!(
                    "<saml:AttributeValue>{}</saml:AttributeValue>",
                    escape(v)
                ));
            }
            attrs.push_str("</saml:Attribute>");
        }
        let statement = if attrs.is_empty() {
            String::new()
        } else {
            format!("<saml:AttributeStatement>{attrs}</saml:AttributeStatement>")
        };
        format!(
            "<saml:Assertion xmlns:saml=\"{SAML}\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{ii}\">\
             <saml:Issuer>{iss}</saml:Issuer>\
             <saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified\">{sub}</saml:NameID>\
             <saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">\
             <saml:SubjectConfirmationData NotOnOrAfter=\"{cu}\"{recipient}/></saml:SubjectConfirmation></saml:Subject>\
             <saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{na}\"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience>\
             </saml:AudienceRestriction>{otu}</saml:Conditions>\
             <saml:AuthnStatement AuthnInstant=\"{ii}\"><saml:AuthnContext><saml:AuthnContextClassRef>\
             urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>\
             </saml:AuthnStatement>{statement}</saml:Assertion>",
            id = escape(&self.id),
            ii = xs_time(self.issue_instant),
            iss = escape(&self.issuer),
            sub = escape(&self.subject),
            cu = xs_time(self.confirm_until),
            nb = xs_time(self.not_before),
            na = xs_time(self.not_on_or_after),
            aud = escape(&self.audience),
            otu = if self.one_time_use {
                "<saml:OneTimeUse/>"
            } else {
                ""
            },
        )
    }

    /// A `samlp:Response` holding `assertion_xml` (signed or not), with `ID` `response_id`.
    pub fn response(&self, assertion_xml: &str, response_id: &str) -> String {
        format!(
            "<samlp:Response xmlns:samlp=\"{SAMLP}\" xmlns:saml=\"{SAML}\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{ii}\">\
             <saml:Issuer>{iss}</saml:Issuer><samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/>\
             </samlp:Status>{assertion_xml}</samlp:Response>",
            rid = escape(response_id),
            ii = xs_time(self.issue_instant),
            iss = escape(&self.issuer),
        )
    }
}

/// A SAML document as a `…:saml2` subject token: base64url without padding.
pub fn token(xml: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(xml)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A provider rebuilt from its stored key and certificate is the same signer: same
    /// metadata, and (RSA PKCS#1 v1.5 being deterministic) the same signed document.
    #[test]
    fn a_provider_rebuilt_from_its_stored_key_signs_as_before() {
        let idp = SamlIdp::new("https://idp.example.test/saml", SamlKey::Rsa).unwrap();
        let again =
            SamlIdp::from_pkcs8(&idp.entity_id, &idp.key_der, &idp.certificate_der).unwrap();
        assert_eq!(again.metadata(), idp.metadata());
        assert_eq!(again.certificate_pem, idp.certificate_pem);
        let a = idp.assertion(
            "alice",
            "https://sp.example.test",
            "https://sp.example.test/token",
            1_700_000_000,
        );
        assert_eq!(
            again.sign(&a.xml(), &a.id).unwrap(),
            idp.sign(&a.xml(), &a.id).unwrap()
        );
        let ec = SamlIdp::new("e", SamlKey::EcdsaP256).unwrap();
        assert!(SamlIdp::from_pkcs8("e", &ec.key_der, &ec.certificate_der).is_ok());
        assert!(SamlIdp::from_pkcs8("e", b"not a key", &ec.certificate_der).is_err());
    }
}
