//! What a mapping sees of a validated leaf, under Google's names for X.509 federation:
//! `subject.dn.{cn,o,ou}`, `issuer.dn.{cn,o,ou}`, `san.dns` and `san.uri` (the first of
//! each), `sha256Fingerprint` (standard base64 of the DER's SHA-256) and
//! `serialNumberHex`; plus `spiffe_id`, the certificate's one SPIFFE ID, checked against
//! the SPIFFE X.509-SVID rules.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate, X509Name};

use super::X509Error;

/// Longest SPIFFE ID (SPIFFE-ID §2.3: URIs up to 2048 bytes).
const MAX_SPIFFE_ID: usize = 2048;
/// Longest trust domain name (SPIFFE-ID §2.1).
const MAX_TRUST_DOMAIN: usize = 255;

/// A SPIFFE ID (`spiffe://trust-domain/path`), valid per SPIFFE-ID §2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId {
    /// The whole ID.
    pub id: String,
    /// Its trust domain.
    pub trust_domain: String,
}

impl SpiffeId {
    /// Parses a SPIFFE ID; the error names the rule broken (never the input).
    pub fn parse(uri: &str) -> Result<Self, &'static str> {
        if uri.len() > MAX_SPIFFE_ID {
            return Err("longer than 2048 bytes");
        }
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or("the scheme must be spiffe:// in lower case")?;
        let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if td.is_empty() || td.len() > MAX_TRUST_DOMAIN {
            return Err("the trust domain must be 1 to 255 characters");
        }
        if !td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(
                "the trust domain takes lower-case letters, digits, '.', '-' and '_' only (no port, user info or upper case)",
            );
        }
        if let Some(path) = path.strip_prefix('/') {
            for segment in path.split('/') {
                if segment.is_empty() {
                    return Err("empty path segment or trailing slash");
                }
                if segment == "." || segment == ".." {
                    return Err("'.' or '..' path segment");
                }
                if !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(
                        "the path takes letters, digits, '.', '-' and '_' only (no query, fragment or percent-encoding)",
                    );
                }
            }
        }
        Ok(Self {
            id: uri.to_owned(),
            trust_domain: td.to_owned(),
        })
    }
}

/// A validated leaf as the mapping sees it.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The `assertion` claims.
    pub claims: Map<String, Value>,
    /// The subject DN (RFC 4514 string), empty when the DN is.
    pub subject_dn: String,
    /// The issuer DN (RFC 4514 string).
    pub issuer_dn: String,
    /// The SPIFFE ID, when the certificate has one.
    pub spiffe_id: Option<SpiffeId>,
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, X509Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(X509Error::Malformed),
    }
}

/// A certificate's `notAfter`, Unix seconds.
pub(super) fn not_after(der: &[u8]) -> Option<i64> {
    parse(der).ok().map(|c| c.validity().not_after.timestamp())
}

/// `cn`, `o`, `ou` of a DN: the last (most specific) value of each, when it is a string.
fn dn(name: &X509Name<'_>) -> Value {
    let mut m = Map::new();
    let mut put = |key: &str, values: Vec<&str>| {
        if let Some(v) = values.last() {
            m.insert(key.to_owned(), Value::String((*v).to_owned()));
        }
    };
    put(
        "cn",
        name.iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect(),
    );
    put(
        "o",
        name.iter_organization()
            .filter_map(|a| a.as_str().ok())
            .collect(),
    );
    put(
        "ou",
        name.iter_organizational_unit()
            .filter_map(|a| a.as_str().ok())
            .collect(),
    );
    let mut out = Map::new();
    out.insert("dn".into(), Value::Object(m));
    Value::Object(out)
}

/// The DNS names and URIs of the subject alternative names.
fn sans<'a>(cert: &'a X509Certificate<'_>) -> Result<(Vec<&'a str>, Vec<&'a str>), X509Error> {
    let mut dns = Vec::new();
    let mut uris = Vec::new();
    let ext = cert
        .subject_alternative_name()
        .map_err(|_| X509Error::Malformed)?;
    for name in ext.iter().flat_map(|e| e.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => dns.push(*d),
            GeneralName::URI(u) => uris.push(*u),
            _ => {}
        }
    }
    Ok((dns, uris))
}

/// The one SPIFFE ID among `uris` (those with the `spiffe` scheme, in any case): none,
/// or exactly one that is valid; several are refused (X.509-SVID §2).
fn spiffe(uris: &[&str]) -> Result<Option<SpiffeId>, X509Error> {
    let mut found = uris.iter().filter(|u| {
        u.split_once(':')
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("spiffe"))
    });
    let Some(first) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(X509Error::SeveralSpiffeIds);
    }
    SpiffeId::parse(first)
        .map(Some)
        .map_err(X509Error::BadSpiffeId)
}

/// Reads a validated leaf; with `trust_domain`, its SPIFFE ID must be in it.
pub fn read_leaf(der: &[u8], trust_domain: Option<&str>) -> Result<Leaf, X509Error> {
    let cert = parse(der)?;
    let (dns, uris) = sans(&cert)?;
    let spiffe_id = spiffe(&uris)?;
    if let Some(td) = trust_domain
        && spiffe_id.as_ref().map(|s| s.trust_domain.as_str()) != Some(td)
    {
        return Err(X509Error::TrustDomain);
    }
    // A CN that reads as a SPIFFE ID, on a certificate without one, would map (by the
    // default subject, CN when there is no SPIFFE ID) to a workload it is not.
    if spiffe_id.is_none()
        && cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .any(|cn| {
                cn.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("spiffe:"))
            })
    {
        return Err(X509Error::SpiffeLookalike);
    }
    let mut claims = Map::new();
    claims.insert("subject".into(), dn(cert.subject()));
    claims.insert("issuer".into(), dn(cert.issuer()));
    let mut san = Map::new();
    if let Some(d) = dns.first() {
        san.insert("dns".into(), Value::String((*d).to_owned()));
    }
    if let Some(u) = uris.first() {
        san.insert("uri".into(), Value::String((*u).to_owned()));
    }
    claims.insert("san".into(), Value::Object(san));
    let fingerprint = STANDARD.encode(digest::digest(&digest::SHA256, der));
    claims.insert("sha256Fingerprint".into(), Value::String(fingerprint));
    claims.insert(
        "serialNumberHex".into(),
        Value::String(serial_hex(cert.raw_serial())),
    );
    if let Some(s) = &spiffe_id {
        claims.insert("spiffe_id".into(), Value::String(s.id.clone()));
    }
    Ok(Leaf {
        claims,
        subject_dn: cert.subject().to_string(),
        issuer_dn: cert.issuer().to_string(),
        spiffe_id,
    })
}

/// The serial number in lower-case hex, without leading zeros (`0` for zero).
pub(super) fn serial_hex(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}
