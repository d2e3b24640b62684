//! Table tests of the three header formats, with two certificates made by `openssl req
//! -x509` (P-256, self-signed).

use base64::Engine as _;

use super::*;

const A: &str = "-----BEGIN CERTIFICATE-----
MIIBcDCCARWgAwIBAgIUR3HRgFYJgv0t1K+G4OewCUqrDPAwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBYTAgFw0yNjEyMDcwMTQzMTFaGA8yMTI2MTExMzAxNDMxMVow
DDEKMAgGA1UEAwwBYTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEEkMP/YS2ia
TCGghsZuEb7v5+Q2JxyhdaOVZWFT+gpMvF+WSXJ0AVuG0OGK96EQV0HGcuHb8NGe
4E3zylGFZGWjUzBRMB0GA1UdDgQWBBSKD/xsGhVCT3TabLwPk9pRpFvPYzAfBgNV
HSMEGDAWgBSKD/xsGhVCT3TabLwPk9pRpFvPYzAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0kAMEYCIQC7gocFoWdNL31ntbi8fu5Fft4CXzeBQ8z6hqgAWluK
qgIhAL2BXWc3hfoY0vxXAroMM8HnDQ/vlbxYLSpKuEpV9pkT
-----END CERTIFICATE-----
";

const B: &str = "-----BEGIN CERTIFICATE-----
MIIBbjCCARWgAwIBAgIUdg0hk7y9LzXF/2X1o316VCPf6hkwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBYjAgFw0yNjEyMDcwMTQzMTFaGA8yMTI2MTExMzAxNDMxMVow
DDEKMAgGA1UEAwwBYjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABExllGE6Eapw
umODniaeqz+3LjrzRhaX+Z/k3DEnn0yRIQc5eyHMIQjuyselxdWIi6ictYVWivla
L1VKhtSqT7mjUzBRMB0GA1UdDgQWBBRMRlWSWn6gWBZ02ChnkZ2G9Q7bUDAfBgNV
HSMEGDAWgBRMRlWSWn6gWBZ02ChnkZ2G9Q7bUDAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0cAMEQCIAcOfZGqLrucObl3M+gHGydVMD9k76y4G6Liu4CoOdzP
AiBY43Q34ZlVPJ0ckrVnXDLpsZdAb3LBMO1u9FSxEni7Hw==
-----END CERTIFICATE-----
";

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Percent-encodes every byte but letters and digits, as Envoy and nginx do (more or less).
fn escaped(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// nginx escapes less: letters, digits and `+/=` stay.
fn escaped_lightly(s: &str) -> String {
    s.replace('-', "%2D")
        .replace('\n', "%0A")
        .replace(' ', "%20")
}

fn b64(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(der(pem))
}

fn run(format: Format, header: &str) -> Result<Option<Vec<Vec<u8>>>, CertHeaderError> {
    parse(format, &[header.as_bytes()])
}

#[test]
#[allow(clippy::too_many_lines, reason = "one table")]
fn each_format_yields_the_chain_leaf_first() {
    let (a, b) = (der(A), der(B));
    let ab = format!("{A}{B}");
    let cases: Vec<(&str, Format, String, Vec<Vec<u8>>)> = vec![
        ("nginx", Format::PemUrlencoded, escaped(A), vec![a.clone()]),
        (
            "nginx, light escaping",
            Format::PemUrlencoded,
            escaped_lightly(A),
            vec![a.clone()],
        ),
        ("traefik, one", Format::DerBase64, b64(A), vec![a.clone()]),
        (
            "traefik, chain",
            Format::DerBase64,
            format!("{},{}", b64(A), b64(B)),
            vec![a.clone(), b.clone()],
        ),
        (
            "traefik v2, escaped",
            Format::DerBase64,
            format!("{}, {}", escaped(&b64(A)), escaped(&b64(B))),
            vec![a.clone(), b.clone()],
        ),
        (
            "rfc 9440 byte sequence",
            Format::DerBase64,
            format!(":{}:", b64(A)),
            vec![a.clone()],
        ),
        (
            "envoy, Cert",
            Format::Xfcc,
            format!("By=spiffe://ferry;Hash={};Cert=\"{}\"", hash(A), escaped(A)),
            vec![a.clone()],
        ),
        (
            "envoy, unquoted Cert",
            Format::Xfcc,
            format!("Cert={}", escaped(A)),
            vec![a.clone()],
        ),
        (
            "envoy, Cert and Chain",
            Format::Xfcc,
            format!("cert=\"{}\";CHAIN=\"{}\"", escaped(A), escaped(&ab)),
            vec![a.clone(), b.clone()],
        ),
        // Quoted values may hold ',', ';', '=' and escaped quotes.
        (
            "envoy, quoted subject",
            Format::Xfcc,
            format!(
                "Subject=\"CN=x, O=\\\"a;b\\\",C=US\";Cert=\"{}\";URI=spiffe://td/w;DNS=a.example",
                escaped(A)
            ),
            vec![a.clone()],
        ),
    ];
    for (name, format, header, want) in cases {
        assert_eq!(run(format, &header), Ok(Some(want)), "{name}");
    }
    // Two header lines of a list header are one list: two elements, refused.
    let lines = [
        format!("Cert=\"{}\"", escaped(B)),
        format!("Cert=\"{}\"", escaped(A)),
    ];
    let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    assert!(parse(Format::Xfcc, &lines).is_err());
}

/// The hex SHA-256 of a PEM certificate's DER, as Envoy writes `Hash`.
fn hash(pem: &str) -> String {
    let der = super::pem_chain(pem.as_bytes()).unwrap().remove(0);
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An attacker's own certificate with the URI `urn:x,Cert="<victim>"`: Envoy writes URI
/// values unquoted, so the header gains a second element holding the victim's
/// certificate. Refused (one element only); so are a Chain without Cert and a Hash of
/// another certificate. Twins: the honest single element, with and without its Hash.
#[test]
fn an_element_smuggled_through_an_unquoted_uri_is_refused() {
    let injected = format!(
        "Hash={};Cert=\"{}\";URI=urn:x,Cert=\"{}\"",
        hash(B),
        escaped(B),
        escaped(A)
    );
    assert!(run(Format::Xfcc, &injected).is_err());
    let honest = format!("Hash={};Cert=\"{}\";URI=urn:x", hash(B), escaped(B));
    assert!(run(Format::Xfcc, &honest).is_ok());
    let two_hops = format!("By=a;Cert=\"{}\",By=b;Cert=\"{}\"", escaped(B), escaped(A));
    assert!(run(Format::Xfcc, &two_hops).is_err());
    let chain_only = format!("Chain=\"{}\"", escaped(A));
    assert!(run(Format::Xfcc, &chain_only).is_err());
    let wrong_hash = format!("Hash={};Cert=\"{}\"", hash(B), escaped(A));
    assert!(run(Format::Xfcc, &wrong_hash).is_err());
    let right_hash = format!("Hash={};Cert=\"{}\"", hash(A), escaped(A));
    assert!(run(Format::Xfcc, &right_hash).is_ok());
}

#[test]
fn no_header_or_an_empty_one_is_no_certificate() {
    for format in [Format::Xfcc, Format::PemUrlencoded, Format::DerBase64] {
        assert_eq!(parse(format, &[]), Ok(None));
        assert_eq!(run(format, "  "), Ok(None));
    }
}

#[test]
#[allow(clippy::too_many_lines, reason = "one table")]
fn garbage_is_malformed_never_a_certificate() {
    let a = escaped(A);
    let cases: Vec<(&str, Format, String)> = vec![
        ("nginx, not PEM", Format::PemUrlencoded, "hello".into()),
        (
            "nginx, bad escape",
            Format::PemUrlencoded,
            format!("{a}%zz"),
        ),
        (
            "nginx, truncated escape",
            Format::PemUrlencoded,
            format!("{a}%4"),
        ),
        (
            "nginx, PEM of garbage",
            Format::PemUrlencoded,
            escaped("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"),
        ),
        ("traefik, not base64", Format::DerBase64, "!!!".into()),
        (
            "traefik, base64 of garbage",
            Format::DerBase64,
            "aGVsbG8=".into(),
        ),
        (
            "traefik, empty item",
            Format::DerBase64,
            format!("{},", b64(A)),
        ),
        ("envoy, no Cert", Format::Xfcc, "By=a;Hash=00".into()),
        (
            "envoy, Cert only in an earlier hop",
            Format::Xfcc,
            format!("Cert=\"{a}\",By=b;Hash=00"),
        ),
        (
            "envoy, unterminated quote",
            Format::Xfcc,
            format!("Cert=\"{a}"),
        ),
        ("envoy, stray quote", Format::Xfcc, format!("Cert=x\"{a}\"")),
        (
            "envoy, text after quote",
            Format::Xfcc,
            format!("Cert=\"{a}\"x"),
        ),
        (
            "envoy, pair without =",
            Format::Xfcc,
            format!("Cert=\"{a}\";junk"),
        ),
        (
            "envoy, repeated Cert",
            Format::Xfcc,
            format!("Cert=\"{a}\";Cert=\"{a}\""),
        ),
        (
            "envoy, Chain not starting with Cert",
            Format::Xfcc,
            format!("Cert=\"{a}\";Chain=\"{}\"", escaped(B)),
        ),
        (
            "envoy, two certificates in Cert",
            Format::Xfcc,
            format!("Cert=\"{}\"", escaped(&format!("{A}{B}"))),
        ),
    ];
    for (name, format, header) in cases {
        assert!(
            matches!(run(format, &header), Err(CertHeaderError::Malformed(_))),
            "{name}: {:?}",
            run(format, &header)
        );
    }
    assert!(matches!(
        parse(Format::PemUrlencoded, &[a.as_bytes(), a.as_bytes()]),
        Err(CertHeaderError::Malformed(_))
    ));
    assert!(matches!(
        parse(Format::PemUrlencoded, &["caf\u{e9}".as_bytes()]),
        Err(CertHeaderError::Malformed(_))
    ));
    let many = vec![b64(A); MAX_CERTIFICATES + 1].join(",");
    assert!(matches!(
        run(Format::DerBase64, &many),
        Err(CertHeaderError::Malformed(_))
    ));
    let ten = vec![b64(A); MAX_CERTIFICATES].join(",");
    assert!(run(Format::DerBase64, &ten).is_ok());
}

#[test]
fn an_oversized_header_is_refused_before_it_is_read() {
    let big = "x".repeat(MAX_HEADER_BYTES + 1);
    for format in [Format::Xfcc, Format::PemUrlencoded, Format::DerBase64] {
        assert_eq!(run(format, &big), Err(CertHeaderError::TooLarge));
    }
    let half = "x".repeat(MAX_HEADER_BYTES / 2 + 1);
    assert_eq!(
        parse(Format::DerBase64, &[half.as_bytes(), half.as_bytes()]),
        Err(CertHeaderError::TooLarge)
    );
}

#[test]
fn format_names() {
    assert_eq!(Format::from_name("xfcc"), Some(Format::Xfcc));
    assert_eq!(
        Format::from_name("pem-urlencoded"),
        Some(Format::PemUrlencoded)
    );
    assert_eq!(Format::from_name("der-base64"), Some(Format::DerBase64));
    assert_eq!(Format::from_name("pem"), None);
}
