//! The verifier against assertions signed by the test kit's IdP, and the smallest
//! tamperings of them. The black-box corpus (tests/blackbox/saml.rs) covers the rest.

use ferry_testkit::saml::{SamlIdp, SamlKey, token};

use super::*;

const ENTITY: &str = "https://idp.example.test/saml";
const AUD: &str = "https://ferry.example.test/sp";
const RCPT: &str = "https://ferry.example.test/token";
const NOW: i64 = 1_796_605_323;

fn idp(key: SamlKey) -> (SamlIdp, Vec<Certificate>) {
    let idp = SamlIdp::new(ENTITY, key).unwrap();
    let certs = from_pem(idp.certificate_pem.as_bytes()).unwrap();
    (idp, certs)
}

fn check(xml: &str, certs: &[Certificate]) -> Result<Assertion, SamlError> {
    let audiences = [AUD.to_owned()];
    let recipients = [RCPT.to_owned()];
    let policy = SamlPolicy {
        entity_id: ENTITY,
        audiences: &audiences,
        recipients: &recipients,
        leeway: 60,
        allow_sha1: false,
        max_lifetime: 86_400,
    };
    SamlDocument::parse(xml)?.verify_with(certs, &policy, NOW)
}

#[test]
fn a_signed_assertion_verifies_alone_in_a_response_and_doubly_signed() {
    for key in [SamlKey::Rsa, SamlKey::EcdsaP256] {
        let (idp, certs) = idp(key);
        let mut a = idp.assertion("alice@example.test", AUD, RCPT, NOW);
        a.attributes = vec![("groups".into(), vec!["dev".into(), "ops".into()])];
        let signed = idp.sign(&a.xml(), &a.id).unwrap();
        let got = check(&signed, &certs).unwrap();
        assert_eq!(got.subject, "alice@example.test");
        assert_eq!(got.attributes["groups"], vec!["dev", "ops"]);
        // Through the token encoding, as Ferry receives it.
        let decoded = decode(&token(&signed)).unwrap();
        assert_eq!(
            check(&decoded, &certs).unwrap().subject,
            "alice@example.test"
        );

        let response = a.response(&signed, "_r1");
        assert_eq!(
            check(&response, &certs).unwrap().subject,
            "alice@example.test"
        );
        let both = idp.sign(&response, "_r1").unwrap();
        assert_eq!(check(&both, &certs).unwrap().subject, "alice@example.test");
        let outer_only = idp.sign(&a.response(&a.xml(), "_r2"), "_r2").unwrap();
        assert_eq!(
            check(&outer_only, &certs).unwrap().subject,
            "alice@example.test"
        );
    }
}

#[test]
fn a_change_after_signing_breaks_the_digest_and_an_unsigned_assertion_is_refused() {
    let (idp, certs) = idp(SamlKey::Rsa);
    let a = idp.assertion("alice@example.test", AUD, RCPT, NOW);
    let signed = idp.sign(&a.xml(), &a.id).unwrap();
    let forged = signed.replace("alice@example.test", "admin@example.test");
    assert!(matches!(check(&forged, &certs), Err(SamlError::Digest)));
    assert!(matches!(check(&a.xml(), &certs), Err(SamlError::Unsigned)));
    assert!(matches!(
        check(&a.response(&a.xml(), "_r"), &certs),
        Err(SamlError::Unsigned)
    ));
}

#[test]
fn a_comment_cannot_shorten_the_name_id() {
    let (idp, certs) = idp(SamlKey::Rsa);
    let a = idp.assertion("user@evil.com.example", AUD, RCPT, NOW);
    let signed = idp.sign(&a.xml(), &a.id).unwrap();
    let commented = signed.replace("user@evil.com.example", "user@evil.com<!---->.example");
    assert_eq!(
        check(&commented, &certs).unwrap().subject,
        "user@evil.com.example"
    );
}

#[test]
fn another_providers_key_does_not_verify() {
    let (idp, _) = idp(SamlKey::Rsa);
    let (_, other) = self::idp(SamlKey::Rsa);
    let a = idp.assertion("alice@example.test", AUD, RCPT, NOW);
    let signed = idp.sign(&a.xml(), &a.id).unwrap();
    // The signature carries its own certificate, which is not the configured one.
    assert!(matches!(
        check(&signed, &other),
        Err(SamlError::UntrustedCertificate)
    ));
}

#[test]
fn metadata_yields_the_signing_certificate() {
    let (idp, _) = idp(SamlKey::EcdsaP256);
    let certs = from_metadata(idp.metadata().as_bytes(), ENTITY).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].der(), idp.certificate_der.as_slice());
    assert!(matches!(
        from_metadata(idp.metadata().as_bytes(), "https://other.example.test"),
        Err(SamlError::MetadataEntity)
    ));
}

#[test]
fn limits_apply_before_parsing() {
    let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
    assert!(matches!(
        SamlDocument::parse(&deep),
        Err(SamlError::TooDeep)
    ));
    let dtd = "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>";
    assert!(matches!(SamlDocument::parse(dtd), Err(SamlError::Dtd)));
    assert!(matches!(
        SamlDocument::parse("<a><?pi x?></a>"),
        Err(SamlError::ProcessingInstruction)
    ));
    let big = format!("<a>{}</a>", "x".repeat(MAX_XML_BYTES));
    assert!(matches!(
        SamlDocument::parse(&big),
        Err(SamlError::TooLarge)
    ));
}

#[test]
fn tokens_decode_in_either_alphabet_padded_or_not() {
    let xml = "<a>??>>~~</a>";
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for e in [
        STANDARD.encode(xml),
        URL_SAFE.encode(xml),
        URL_SAFE_NO_PAD.encode(xml),
        STANDARD_NO_PAD.encode(xml),
    ] {
        assert_eq!(decode(&e).unwrap(), xml, "{e}");
    }
    assert_eq!(
        decode(&STANDARD.encode(xml).replace('+', " ")).unwrap(),
        xml
    );
    assert!(matches!(decode("<a/>"), Err(SamlError::Encoding)));
}
