//! A client certificate forwarded by a TLS-terminating proxy in a request header, in the
//! three forms proxies send: Envoy's `X-Forwarded-Client-Cert` ([`Format::Xfcc`]),
//! nginx's `$ssl_client_escaped_cert` ([`Format::PemUrlencoded`]) and Traefik's
//! `PassTLSClientCert` ([`Format::DerBase64`]). Pure functions: whether the peer that
//! sent the header may set it is the caller's decision (Ferry's `client_cert_header.
//! trusted_peers`, a relying service's own list), taken before this is called.
//!
//! The result is the chain, leaf first, as DER. Nothing here validates the chain: the
//! proxy proved the client holds the leaf's key, and what the certificate is good for is
//! decided where it is used (a bound token's `x5t#S256`, a client's registration).

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// The largest header accepted, all its lines together.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The most certificates one header may carry (leaf and chain).
pub const MAX_CERTIFICATES: usize = 10;

/// How the proxy writes the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Envoy's `X-Forwarded-Client-Cert` with exactly one element (the proxy next to
    /// Ferry replaces the header: `SANITIZE_SET`): its `Cert` (URL-encoded PEM of the
    /// leaf), optional `Chain` (URL-encoded PEM, leaf first) and `Hash`.
    Xfcc,
    /// The URL-encoded PEM of the leaf (nginx `$ssl_client_escaped_cert`).
    PemUrlencoded,
    /// Comma-separated base64 DER certificates, leaf first (Traefik `PassTLSClientCert`
    /// with `pem: true`; older Traefik URL-escapes each; an RFC 9440 `:…:` byte sequence
    /// is read too).
    DerBase64,
}

impl Format {
    /// The configuration name: `xfcc`, `pem-urlencoded` or `der-base64`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "xfcc" => Some(Self::Xfcc),
            "pem-urlencoded" => Some(Self::PemUrlencoded),
            "der-base64" => Some(Self::DerBase64),
            _ => None,
        }
    }
}

/// Why a header was refused. The messages are fixed: they never echo the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertHeaderError {
    /// Over [`MAX_HEADER_BYTES`].
    #[error("the client certificate header is too large")]
    TooLarge,
    /// Not the configured format; the reason is fixed text.
    #[error("the client certificate header is malformed: {0}")]
    Malformed(&'static str),
}

fn malformed(why: &'static str) -> CertHeaderError {
    CertHeaderError::Malformed(why)
}

/// The certificate chain (DER, leaf first) in a header's `values` (each line of it, in
/// order); `Ok(None)` when there is no header or it is empty (the proxy's client
/// presented no certificate).
pub fn parse(format: Format, values: &[&[u8]]) -> Result<Option<Vec<Vec<u8>>>, CertHeaderError> {
    let total: usize = values.iter().map(|v| v.len()).sum();
    if total > MAX_HEADER_BYTES {
        return Err(CertHeaderError::TooLarge);
    }
    let mut lines = Vec::with_capacity(values.len());
    for v in values {
        let text = std::str::from_utf8(v).map_err(|_| malformed("not ASCII"))?;
        if !text.is_ascii() {
            return Err(malformed("not ASCII"));
        }
        if !text.trim().is_empty() {
            lines.push(text.trim());
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let chain = match format {
        // RFC 9110 §5.3: several lines of a list header are one comma-separated list.
        Format::Xfcc => xfcc(&lines.join(","))?,
        Format::DerBase64 => der_base64(&lines.join(","))?,
        Format::PemUrlencoded => match lines.as_slice() {
            [one] => pem_chain(&percent_decode(one)?)?,
            _ => return Err(malformed("more than one header line")),
        },
    };
    if chain.len() > MAX_CERTIFICATES {
        return Err(malformed("too many certificates"));
    }
    Ok(Some(chain))
}

/// `%XX` escapes decoded; every other character kept as it is (`+` included: it is a
/// base64 character, never a space, in a PEM).
fn percent_decode(s: &str) -> Result<Vec<u8>, CertHeaderError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |c: Option<u8>| {
            c.and_then(|c| char::from(c).to_digit(16))
                .ok_or(malformed("bad percent escape"))
        };
        let (hi, lo) = (hex(bytes.next())?, hex(bytes.next())?);
        out.push(u8::try_from(hi * 16 + lo).map_err(|_| malformed("bad percent escape"))?);
    }
    Ok(out)
}

/// Whether `der` is one DER SEQUENCE filling it exactly (a certificate's outer shape).
fn is_der_sequence(der: &[u8]) -> bool {
    let (Some(&0x30), Some(&first)) = (der.first(), der.get(1)) else {
        return false;
    };
    let (len, header) = match first {
        0..=0x7f => (usize::from(first), 2),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let Some(len_bytes) = der.get(2..2 + n) else {
                return false;
            };
            (
                len_bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                2 + n,
            )
        }
        _ => return false,
    };
    header.checked_add(len) == Some(der.len())
}

fn certificate(der: Vec<u8>) -> Result<Vec<u8>, CertHeaderError> {
    if is_der_sequence(&der) {
        Ok(der)
    } else {
        Err(malformed("not a DER certificate"))
    }
}

/// Every `CERTIFICATE` block of a PEM text, in order; at least one.
fn pem_chain(pem: &[u8]) -> Result<Vec<Vec<u8>>, CertHeaderError> {
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        let c = c.map_err(|_| malformed("not PEM"))?;
        chain.push(certificate(c.to_vec())?);
        if chain.len() > MAX_CERTIFICATES {
            return Err(malformed("too many certificates"));
        }
    }
    if chain.is_empty() {
        return Err(malformed("no PEM certificate"));
    }
    Ok(chain)
}

fn der_base64(list: &str) -> Result<Vec<Vec<u8>>, CertHeaderError> {
    let mut chain = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let item = item
            .strip_prefix(':')
            .and_then(|i| i.strip_suffix(':'))
            .unwrap_or(item);
        let text = percent_decode(item)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .map_err(|_| malformed("not base64"))?;
        chain.push(certificate(der)?);
        if chain.len() > MAX_CERTIFICATES {
            return Err(malformed("too many certificates"));
        }
    }
    Ok(chain)
}

/// Splits `s` at `sep` outside double quotes (a backslash escapes the next character
/// inside them). `None`: an unterminated quote.
fn split_unquoted(s: &str, sep: char) -> Option<Vec<&str>> {
    let (mut parts, mut start) = (Vec::new(), 0);
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(s.get(start..i)?);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted || escaped {
        return None;
    }
    parts.push(s.get(start..)?);
    Some(parts)
}

/// One XFCC value: a quoted string (`\"` and `\\` unescaped) or a bare token, which may
/// not contain a quote.
fn xfcc_value(v: &str) -> Result<String, CertHeaderError> {
    let v = v.trim();
    let Some(inner) = v.strip_prefix('"') else {
        return if v.contains('"') {
            Err(malformed("stray quote"))
        } else {
            Ok(v.to_owned())
        };
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or(malformed("text after a quoted value"))?;
    let (mut out, mut escaped) = (String::with_capacity(inner.len()), false);
    for c in inner.chars() {
        match c {
            _ if escaped => {
                out.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => return Err(malformed("text after a quoted value")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Envoy's header: exactly one element (the proxy next to Ferry must replace, not append:
/// `forward_client_cert_details: SANITIZE_SET`), its `Cert` and optional `Chain` (which
/// starts with the leaf), and its `Hash`, when present, the SHA-256 of that `Cert`.
///
/// One element, because Envoy writes `URI=` and `DNS=` values unquoted and unescaped: a
/// client whose own certificate carries the URI `urn:x,Cert="<someone else's>"` would
/// otherwise append an element of its choosing, and "the last element" would be the
/// attacker's text. With one element allowed, that header has two and is refused.
fn xfcc(header: &str) -> Result<Vec<Vec<u8>>, CertHeaderError> {
    let elements = split_unquoted(header, ',').ok_or(malformed("unterminated quote"))?;
    let [element] = elements.as_slice() else {
        return Err(malformed(
            "more than one element (the proxy must replace the header, not append to it)",
        ));
    };
    let (mut cert, mut chain, mut hash) = (None, None, None);
    for pair in split_unquoted(element, ';').ok_or(malformed("unterminated quote"))? {
        if pair.trim().is_empty() {
            continue;
        }
        let (key, value) = pair
            .split_once('=')
            .ok_or(malformed("a pair without '='"))?;
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "cert" => &mut cert,
            "chain" => &mut chain,
            "hash" => &mut hash,
            _ => {
                xfcc_value(value)?;
                continue;
            }
        };
        if slot.replace(xfcc_value(value)?).is_some() {
            return Err(malformed("a repeated Cert, Chain or Hash"));
        }
    }
    let cert = cert.ok_or(malformed("no Cert in the element"))?;
    let mut one = pem_chain(&percent_decode(&cert)?)?;
    let leaf = match (one.pop(), one.is_empty()) {
        (Some(leaf), true) => leaf,
        _ => return Err(malformed("Cert holds other than one certificate")),
    };
    if let Some(h) = hash {
        let want: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !h.eq_ignore_ascii_case(&want) {
            return Err(malformed("Hash is not the SHA-256 of Cert"));
        }
    }
    match chain {
        None => Ok(vec![leaf]),
        Some(c) => {
            let chain = pem_chain(&percent_decode(&c)?)?;
            if chain.first() == Some(&leaf) {
                Ok(chain)
            } else {
                Err(malformed("Chain does not start with Cert"))
            }
        }
    }
}

#[cfg(test)]
#[path = "cert_header_tests.rs"]
mod tests;
