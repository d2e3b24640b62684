//! Mutual-TLS client authentication (RFC 8705 §2) as registered: which certificate name a
//! `tls_client_auth` client is matched by (§2.1.2's metadata names), and its subject DN
//! parsed from RFC 4514's string form once, at load.
//!
//! Subject DNs are compared as parsed RDN sequences, never as strings: attribute types by
//! OID (`CN` and `2.5.4.3` are the same type), values with the X.500 `caseIgnoreMatch`
//! rule the usual DN attributes carry, as RFC 5280 §7.1 and Java's `X500Principal`
//! canonical form apply it: case-insensitive, leading and trailing spaces removed, inner
//! runs of spaces collapsed to one. The RDNs must be the same, in the same order (an RDN
//! with several values, `CN=a+UID=b`, compares as a set).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::client_auth::ClientAuth;
use super::errors::ConfigErrors;
use super::raw::RawClient;

/// One attribute of a distinguished name: its type (a dotted OID) and its value in the
/// comparison form ([`normalize_value`]).
pub type Attribute = (String, String);

/// A distinguished name as parsed, most significant RDN first (the order of the
/// certificate's `Name`, the reverse of RFC 4514's string form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinguishedName(Vec<Vec<Attribute>>);

/// What a `tls_client_auth` client's certificate must carry (RFC 8705 §2.1.2): exactly
/// one of the subject DN or a subjectAltName of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateName {
    /// `tls_client_auth_subject_dn`.
    SubjectDn(DistinguishedName),
    /// `tls_client_auth_san_dns`: a dNSName entry, compared case-insensitively.
    SanDns(String),
    /// `tls_client_auth_san_uri`: a uniformResourceIdentifier entry, compared exactly.
    SanUri(String),
    /// `tls_client_auth_san_ip`: an iPAddress entry.
    SanIp(IpAddr),
    /// `tls_client_auth_san_email`: an rfc822Name entry; the domain compared
    /// case-insensitively, the local part exactly (RFC 5280 §4.2.1.6).
    SanEmail(String),
}

/// The comparison form of an attribute value: case folded, leading and trailing spaces
/// removed, inner runs of white space collapsed to one space.
pub fn normalize_value(v: &str) -> String {
    v.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// RFC 4514 §3 short names, and the few others certificates commonly carry.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("cn", "2.5.4.3"),
    ("sn", "2.5.4.4"),
    ("surname", "2.5.4.4"),
    ("serialnumber", "2.5.4.5"),
    ("c", "2.5.4.6"),
    ("l", "2.5.4.7"),
    ("st", "2.5.4.8"),
    ("street", "2.5.4.9"),
    ("o", "2.5.4.10"),
    ("ou", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("postalcode", "2.5.4.17"),
    ("gn", "2.5.4.42"),
    ("givenname", "2.5.4.42"),
    ("organizationidentifier", "2.5.4.97"),
    ("dc", "0.9.2342.19200300.100.1.25"),
    ("uid", "0.9.2342.19200300.100.1.1"),
    ("emailaddress", "1.2.840.113549.1.9.1"),
    ("e", "1.2.840.113549.1.9.1"),
];

fn attribute_type(t: &str) -> Option<String> {
    let t = t.trim();
    let lower = t.to_ascii_lowercase();
    if let Some((_, oid)) = SHORT_NAMES.iter().find(|(n, _)| *n == lower) {
        return Some((*oid).to_owned());
    }
    let oid = lower.strip_prefix("oid.").unwrap_or(&lower);
    let numeric = !oid.is_empty()
        && oid
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    (numeric && oid.contains('.')).then(|| oid.to_owned())
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Splits `s` at the unescaped `sep` bytes; `\x` escapes are kept for [`unescape`].
fn split_unescaped(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == sep {
            parts.push(s.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// An RFC 4514 §2.4 string value: `\` before a special character or a hex pair.
fn unescape(v: &str) -> Option<String> {
    let mut out = Vec::with_capacity(v.len());
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let next = bytes.next()?;
        match hex_digit(next) {
            Some(hi) => out.push(hi * 16 + hex_digit(bytes.next()?)?),
            None if b" \"#+,;<=>\\".contains(&next) => out.push(next),
            None => return None,
        }
    }
    String::from_utf8(out).ok()
}

impl DistinguishedName {
    /// Parses RFC 4514's string form (`CN=client,O=Example,C=US`). Spaces around the
    /// separators are tolerated (RFC 2253's readers accept them); hex-encoded values
    /// (`#04…`) are not supported.
    pub fn parse(s: &str) -> Option<Self> {
        if s.trim().is_empty() {
            return None;
        }
        let mut rdns = Vec::new();
        for rdn in split_unescaped(s, b',') {
            let mut set = Vec::new();
            for atv in split_unescaped(rdn, b'+') {
                let (t, v) = atv.split_once('=')?;
                let v = v.trim_start();
                if v.starts_with('#') {
                    return None;
                }
                let value = normalize_value(&unescape(v)?);
                set.push((attribute_type(t)?, value));
            }
            set.sort();
            rdns.push(set);
        }
        // The string form lists the last RDN first (RFC 4514 §2.1).
        rdns.reverse();
        Some(Self(rdns))
    }

    /// Whether a certificate's subject, its RDNs in the certificate's order, each an
    /// attribute's OID and string value as encoded (`None` for a value that is not a
    /// string Ferry reads), is this name.
    pub fn matches(&self, subject: Vec<Vec<(String, Option<String>)>>) -> bool {
        if subject.len() != self.0.len() {
            return false;
        }
        subject.into_iter().zip(&self.0).all(|(rdn, want)| {
            let Some(mut got) = rdn
                .into_iter()
                .map(|(t, v)| v.map(|v| (t, normalize_value(&v))))
                .collect::<Option<Vec<_>>>()
            else {
                return false;
            };
            got.sort();
            &got == want
        })
    }
}

impl CertificateName {
    /// Whether an rfc822Name entry is this name's e-mail address.
    pub fn email_matches(want: &str, got: &str) -> bool {
        match (want.rsplit_once('@'), got.rsplit_once('@')) {
            (Some((wl, wd)), Some((gl, gd))) => wl == gl && wd.eq_ignore_ascii_case(gd),
            _ => false,
        }
    }
}

fn certificate_name(errs: &mut ConfigErrors, path: &str, c: &RawClient) -> Option<CertificateName> {
    let given: Vec<(&str, &String)> = [
        ("tls_client_auth_subject_dn", &c.tls_client_auth_subject_dn),
        ("tls_client_auth_san_dns", &c.tls_client_auth_san_dns),
        ("tls_client_auth_san_uri", &c.tls_client_auth_san_uri),
        ("tls_client_auth_san_ip", &c.tls_client_auth_san_ip),
        ("tls_client_auth_san_email", &c.tls_client_auth_san_email),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
    .collect();
    let [(field, value)] = given.as_slice() else {
        errs.push(
            path,
            "tls_client_auth needs exactly one of tls_client_auth_subject_dn, \
             tls_client_auth_san_dns, tls_client_auth_san_uri, tls_client_auth_san_ip or \
             tls_client_auth_san_email (RFC 8705 §2.1.2)",
        );
        return None;
    };
    let at = format!("{path}.{field}");
    let name = match *field {
        "tls_client_auth_subject_dn" => DistinguishedName::parse(value)
            .map(CertificateName::SubjectDn)
            .ok_or(
                "is not an RFC 4514 distinguished name Ferry reads (TYPE=value,…; no #hex values)",
            ),
        "tls_client_auth_san_dns" if !value.is_empty() && value.is_ascii() => {
            Ok(CertificateName::SanDns(value.to_ascii_lowercase()))
        }
        "tls_client_auth_san_uri" if value.contains(':') => {
            Ok(CertificateName::SanUri((*value).clone()))
        }
        "tls_client_auth_san_ip" => value
            .parse()
            .map(CertificateName::SanIp)
            .map_err(|_| "is not an IP address"),
        "tls_client_auth_san_email" if value.contains('@') => {
            Ok(CertificateName::SanEmail((*value).clone()))
        }
        "tls_client_auth_san_dns" => Err("must be a DNS name (ASCII; IDNs in A-label form)"),
        "tls_client_auth_san_uri" => Err("must be an absolute URI"),
        _ => Err("must be an e-mail address"),
    };
    name.map_err(|m| errs.push(at, m)).ok()
}

/// A client's certificate settings: the name a `tls_client_auth` client is matched by and
/// its own CA bundle. `default_ca`: `tls.client_ca_file` is set.
pub(super) fn client_certificate(
    errs: &mut ConfigErrors,
    path: &str,
    c: &RawClient,
    auth: ClientAuth,
    base: &Path,
    default_ca: bool,
) -> (Option<CertificateName>, Option<PathBuf>) {
    if auth != ClientAuth::TlsClientAuth {
        let any_name = c.tls_client_auth_subject_dn.is_some()
            || c.tls_client_auth_san_dns.is_some()
            || c.tls_client_auth_san_uri.is_some()
            || c.tls_client_auth_san_ip.is_some()
            || c.tls_client_auth_san_email.is_some();
        if any_name || c.ca_file.is_some() {
            errs.push(
                path,
                "tls_client_auth_* and ca_file are only for auth: tls_client_auth",
            );
        }
        return (None, None);
    }
    let name = certificate_name(errs, path, c);
    if c.ca_file.is_none() && !default_ca {
        errs.push(
            format!("{path}.ca_file"),
            "is required for tls_client_auth unless tls.client_ca_file is set",
        );
    }
    (name, c.ca_file.as_ref().map(|f| base.join(f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(rdns: &[&[(&str, &str)]]) -> Vec<Vec<(String, Option<String>)>> {
        rdns.iter()
            .map(|r| {
                r.iter()
                    .map(|(t, v)| ((*t).to_owned(), Some((*v).to_owned())))
                    .collect()
            })
            .collect()
    }

    const CN: &str = "2.5.4.3";
    const O: &str = "2.5.4.10";
    const C: &str = "2.5.4.6";

    #[test]
    fn dn_matches_the_same_rdns_in_certificate_order() {
        let cert = subject(&[&[(C, "US")], &[(O, "Example  Corp")], &[(CN, "client-a")]]);
        for s in [
            "CN=client-a,O=Example Corp,C=US",
            "cn=CLIENT-A, o=example corp, c=us",
            "2.5.4.3=client-a,OID.2.5.4.10=Example Corp,C=US",
        ] {
            let dn = DistinguishedName::parse(s).unwrap();
            assert!(dn.matches(cert.clone()), "{s}");
        }
        // Twins differing in one attacked part: a value, the order, an extra RDN, a type.
        for s in [
            "CN=client-b,O=Example Corp,C=US",
            "C=US,O=Example Corp,CN=client-a",
            "CN=client-a,OU=x,O=Example Corp,C=US",
            "UID=client-a,O=Example Corp,C=US",
            "CN=client-a,O=Example Corp",
        ] {
            let dn = DistinguishedName::parse(s).unwrap();
            assert!(!dn.matches(cert.clone()), "{s}");
        }
    }

    #[test]
    fn dn_escapes_and_multi_valued_rdns() {
        let dn = DistinguishedName::parse(r"CN=Doe\, John+UID=jd,O=A\2bB").unwrap();
        let cert = subject(&[
            &[(O, "A+B")],
            &[("0.9.2342.19200300.100.1.1", "jd"), (CN, "Doe, John")],
        ]);
        assert!(dn.matches(cert));
        // A value Ferry cannot read as a string never matches.
        let unreadable = vec![vec![(O.to_owned(), None)], vec![(CN.to_owned(), None)]];
        assert!(!dn.matches(unreadable));
    }

    #[test]
    fn dn_parse_refuses_what_it_cannot_read() {
        for s in [
            "",
            "CN",
            "XX=a",
            "CN=#0403616263",
            r"CN=a\q",
            "CN=a,,O=b",
            "1=a",
        ] {
            assert!(DistinguishedName::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn email_local_part_exact_domain_case_insensitive() {
        assert!(CertificateName::email_matches(
            "a.b@Example.com",
            "a.b@example.COM"
        ));
        assert!(!CertificateName::email_matches(
            "a.b@example.com",
            "A.b@example.com"
        ));
        assert!(!CertificateName::email_matches(
            "a.b@example.com",
            "a.b@example.org"
        ));
    }

    /// A configuration with `clients` (a YAML list) and `tls` (a flow mapping's inside).
    fn load(tls: &str, clients: &str) -> Result<super::super::Config, ConfigErrors> {
        let text = format!(
            "issuer: https://ferry.example.com\n\
             tls: {{ cert_file: c.pem, key_file: k.pem, {tls} }}\n\
             providers:\n  - {{ id: p, issuer: https://idp.example.com, audiences: [https://ferry.example.com], jwks: {{ file: k.json }} }}\n\
             audiences:\n  - {{ audience: https://a.example.com, rules: [{{ allow: 'true' }}] }}\n\
             clients:\n{clients}"
        );
        super::super::parse(&text, Path::new("/etc/ferry"))
    }

    fn problems(tls: &str, clients: &str) -> Vec<String> {
        match load(tls, clients) {
            Ok(_) => vec![],
            Err(e) => e.0.into_iter().map(|(p, m)| format!("{p}: {m}")).collect(),
        }
    }

    #[test]
    fn registrations_load_with_exactly_one_name_and_a_ca() {
        let ca = "client_auth: optional, client_ca_file: ca.pem";
        let ok = "  - { id: a, auth: tls_client_auth, tls_client_auth_san_dns: A.example.com }\n\
                  - { id: b, auth: tls_client_auth, tls_client_auth_san_ip: '::1', ca_file: b.pem }\n\
                  - { id: c, auth: self_signed_tls_client_auth, jwks: { file: c.json } }\n";
        let config = load(ca, &ok.replace("\n-", "\n  -")).unwrap();
        let a = &config.clients[0];
        assert_eq!(a.auth, ClientAuth::TlsClientAuth);
        assert_eq!(
            a.certificate,
            Some(CertificateName::SanDns("a.example.com".into()))
        );
        assert_eq!(
            config.clients[1].ca_file,
            Some(PathBuf::from("/etc/ferry/b.pem"))
        );
        // Twins, each differing in the refused part.
        for (tls, client, want) in [
            (ca, "{ id: a, auth: tls_client_auth }", "exactly one of"),
            (
                ca,
                "{ id: a, auth: tls_client_auth, tls_client_auth_san_dns: a, tls_client_auth_san_uri: 'x:y' }",
                "exactly one of",
            ),
            (
                "client_auth: optional",
                "{ id: a, auth: tls_client_auth, tls_client_auth_san_dns: a }",
                "clients[0].ca_file: is required",
            ),
            (
                ca,
                "{ id: a, auth: tls_client_auth, tls_client_auth_subject_dn: 'CN' }",
                "tls_client_auth_subject_dn: is not",
            ),
            (
                ca,
                "{ id: a, auth: tls_client_auth, tls_client_auth_san_ip: a.example.com }",
                "not an IP address",
            ),
            (
                ca,
                "{ id: a, auth: private_key_jwt, jwks: { file: a.json }, ca_file: a.pem }",
                "only for auth: tls_client_auth",
            ),
            (
                ca,
                "{ id: a, auth: self_signed_tls_client_auth, jwks: { uri: 'https://x.example.com/j' } }",
                "takes a jwks file or inline set",
            ),
            (
                ca,
                "{ id: a, auth: self_signed_tls_client_auth }",
                "clients[0].jwks: is required",
            ),
        ] {
            let got = problems(tls, &format!("  - {client}\n"));
            assert!(got.iter().any(|p| p.contains(want)), "{client}: {got:?}");
        }
    }
}
