//! Chain decoding, leeway, SPIFFE IDs and the mapping variables, with certificates made
//! by rcgen (the black-box tests use the openssl command line).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType, date_time_ymd,
};
use rustls_pki_types::CertificateDer;
use serde_json::json;

use super::*;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca() -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, "Root");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let pem = p.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(p, key),
        pem,
    }
}

/// A leaf valid on 2027-01-01 only, with these URI SANs and the clientAuth EKU.
fn leaf(ca: &Ca, uris: &[&str]) -> CertificateDer<'static> {
    let mut p = CertificateParams::new(vec!["api.example.org".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "api");
    p.distinguished_name.push(DnType::OrganizationName, "Acme");
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "platform");
    for u in uris {
        p.subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = date_time_ymd(2027, 1, 1);
    p.not_after = date_time_ymd(2027, 1, 2);
    let key = KeyPair::generate().unwrap();
    p.signed_by(&key, &ca.issuer).unwrap().der().clone()
}

fn store(ca: &Ca) -> TrustStore {
    TrustStore::from_pem(&[ca.pem.clone().into_bytes()], &[]).unwrap()
}

fn chain(leaf: CertificateDer<'static>) -> Chain {
    Chain {
        leaf,
        intermediates: Vec::new(),
    }
}

#[test]
fn validity_with_leeway_either_side() {
    let ca = ca();
    let store = store(&ca);
    let c = chain(leaf(&ca, &[]));
    let start = date_time_ymd(2027, 1, 1).unix_timestamp();
    let end = date_time_ymd(2027, 1, 2).unix_timestamp();
    // Inside the window: no leeway needed.
    assert_eq!(store.verify(&c, start + 10, 0).unwrap(), end);
    // 30 s after notAfter: refused without leeway, accepted with 60 s.
    assert!(matches!(
        store.verify(&c, end + 30, 0),
        Err(X509Error::Untrusted(webpki::Error::CertExpired { .. }))
    ));
    assert_eq!(store.verify(&c, end + 30, 60).unwrap(), end);
    assert!(store.verify(&c, end + 61, 60).is_err());
    // 30 s before notBefore: the same.
    assert!(store.verify(&c, start - 30, 0).is_err());
    assert!(store.verify(&c, start - 30, 60).is_ok());
    assert!(store.verify(&c, start - 61, 60).is_err());
    // Another root of the same name: refused whatever the time.
    let other = TrustStore::from_pem(&[self::ca().pem.into_bytes()], &[]).unwrap();
    assert!(matches!(
        other.verify(&c, start + 10, 60),
        Err(X509Error::Untrusted(_))
    ));
}

#[test]
fn google_variables_and_the_spiffe_id() {
    let ca = ca();
    let der = leaf(
        &ca,
        &["spiffe://example.org/ns/prod/sa/api", "https://x.test/a"],
    );
    let l = read_leaf(&der, Some("example.org")).unwrap();
    let fp = STANDARD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der));
    let serial = l.claims["serialNumberHex"].as_str().unwrap().to_owned();
    assert!(
        serial
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        serde_json::Value::Object(l.claims.clone()),
        json!({
            "subject": {"dn": {"cn": "api", "o": "Acme", "ou": "platform"}},
            "issuer": {"dn": {"cn": "Root"}},
            "san": {"dns": "api.example.org", "uri": "spiffe://example.org/ns/prod/sa/api"},
            "sha256Fingerprint": fp,
            "serialNumberHex": serial,
            "spiffe_id": "spiffe://example.org/ns/prod/sa/api",
        })
    );
    assert_eq!(l.issuer_dn, "CN=Root");
    // Twins: another trust domain required; two SPIFFE IDs; a malformed one; none.
    assert!(matches!(
        read_leaf(&der, Some("example.com")),
        Err(X509Error::TrustDomain)
    ));
    let two = leaf(&ca, &["spiffe://example.org/a", "spiffe://example.org/b"]);
    assert!(matches!(
        read_leaf(&two, None),
        Err(X509Error::SeveralSpiffeIds)
    ));
    let bad = leaf(&ca, &["SPIFFE://example.org/a"]);
    assert!(matches!(
        read_leaf(&bad, None),
        Err(X509Error::BadSpiffeId(_))
    ));
    let none = leaf(&ca, &[]);
    let l = read_leaf(&none, None).unwrap();
    assert!(!l.claims.contains_key("spiffe_id"));
    assert!(matches!(
        read_leaf(&none, Some("example.org")),
        Err(X509Error::TrustDomain)
    ));
}

#[test]
fn spiffe_id_rules() {
    let ok = [
        "spiffe://example.org",
        "spiffe://example.org/ns/prod/sa/api",
        "spiffe://my-td_1.example/a.b-c_D",
    ];
    for id in ok {
        assert!(SpiffeId::parse(id).is_ok(), "{id}");
    }
    let bad = [
        "spiffe://",
        "spiffe:///path",
        "spiffe://Example.org/a",
        "spiffe://example.org:8443/a",
        "spiffe://user@example.org/a",
        "spiffe://example.org/a?q=1",
        "spiffe://example.org/a#f",
        "spiffe://example.org/a/",
        "spiffe://example.org//a",
        "spiffe://example.org/./a",
        "spiffe://example.org/a/..",
        "spiffe://example.org/a%20b",
        "https://example.org/a",
    ];
    for id in bad {
        assert!(SpiffeId::parse(id).is_err(), "{id}");
    }
    assert_eq!(
        SpiffeId::parse("spiffe://td.example/x")
            .unwrap()
            .trust_domain,
        "td.example"
    );
}

#[test]
fn decoding_the_subject_token() {
    let ca = ca();
    let der = leaf(&ca, &[]);
    let b64 = STANDARD.encode(&der);
    let c = decode_chain(&json!([b64, b64]).to_string()).unwrap();
    assert_eq!(c.leaf, der);
    assert_eq!(c.intermediates.len(), 1);
    // Unpadded, and a '+' a form encoding turned into a space.
    let spaced = b64.trim_end_matches('=').replace('+', " ");
    assert_eq!(
        decode_chain(&json!([spaced]).to_string()).unwrap().leaf,
        der
    );
    for bad in ["", "[]", "{}", "[1]", "[\"%%%\"]", "not json"] {
        assert!(decode_chain(bad).is_err(), "{bad}");
    }
    let many = vec![b64.clone(); MAX_CHAIN + 1];
    assert!(matches!(
        decode_chain(&json!(many).to_string()),
        Err(X509Error::TooLarge)
    ));
    // A certificate that does not parse is refused when read, never a panic.
    assert!(matches!(
        read_leaf(b"junk", None),
        Err(X509Error::Malformed)
    ));
    assert_eq!(names_serial("00ff"), "ff");
    assert_eq!(names_serial("00"), "0");
}

fn names_serial(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    super::names::serial_hex(&bytes)
}

/// A CN reading as a SPIFFE ID on a certificate without a SPIFFE URI SAN would become
/// that SPIFFE ID by the default subject mapping (CN): refused. Twins: the same CN with
/// the SPIFFE ID as its URI SAN, and an ordinary CN without one.
#[test]
fn a_cn_posing_as_a_spiffe_id_is_refused() {
    let ca = ca();
    let with_cn = |cn: &str, uris: &[&str]| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        for u in uris {
            p.subject_alt_names
                .push(SanType::URI((*u).try_into().unwrap()));
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, &ca.issuer).unwrap().der().clone()
    };
    let id = "spiffe://prod.example.org/ns/ci/sa/deployer";
    assert!(matches!(
        read_leaf(&with_cn(id, &[]), None),
        Err(X509Error::SpiffeLookalike)
    ));
    assert!(matches!(
        read_leaf(&with_cn("SPIFFE://prod.example.org/x", &[]), None),
        Err(X509Error::SpiffeLookalike)
    ));
    assert!(read_leaf(&with_cn(id, &[id]), None).is_ok());
    assert!(read_leaf(&with_cn("deployer", &[]), None).is_ok());
}
