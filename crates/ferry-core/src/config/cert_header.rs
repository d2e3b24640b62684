//! `client_cert_header`: behind a TLS-terminating proxy (Envoy, nginx, Traefik), the
//! client certificate arrives in a request header. Only peers in `trusted_peers` — the
//! connection's own address, never a forwarded one — may set it; the list is required
//! and separate from (usually narrower than) `trusted_proxies`, since naming a client's
//! certificate is a stronger claim than naming its address.

use ipnet::IpNet;

use super::errors::ConfigErrors;
use super::raw::RawClientCertHeader;

/// How the proxy writes the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertHeaderFormat {
    /// Envoy's `X-Forwarded-Client-Cert`.
    Xfcc,
    /// nginx's `$ssl_client_escaped_cert`: the URL-encoded PEM of the leaf.
    PemUrlencoded,
    /// Traefik's `PassTLSClientCert`: comma-separated base64 DER, leaf first.
    DerBase64,
}

/// The validated `client_cert_header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertHeader {
    /// The header's name, lower case.
    pub name: String,
    /// Its format.
    pub format: ClientCertHeaderFormat,
    /// The peers (connection addresses) whose header is read.
    pub trusted_peers: Vec<IpNet>,
}

/// Headers Ferry reads for something else: a proxy header by one of these names would
/// be both.
const RESERVED: &[&str] = &[
    "authorization",
    "content-type",
    "content-length",
    "cookie",
    "dpop",
    "forwarded",
    "host",
    "traceparent",
    "transfer-encoding",
    "x-forwarded-for",
    "x-request-id",
];

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn format(errs: &mut ConfigErrors, raw: Option<&str>) -> Option<ClientCertHeaderFormat> {
    match raw {
        Some("xfcc") => Some(ClientCertHeaderFormat::Xfcc),
        Some("pem-urlencoded") => Some(ClientCertHeaderFormat::PemUrlencoded),
        Some("der-base64") => Some(ClientCertHeaderFormat::DerBase64),
        Some(_) => {
            errs.push(
                "client_cert_header.format",
                "must be xfcc, pem-urlencoded or der-base64",
            );
            None
        }
        None => {
            errs.push(
                "client_cert_header.format",
                "is required (xfcc, pem-urlencoded or der-base64)",
            );
            None
        }
    }
}

fn name(
    errs: &mut ConfigErrors,
    raw: Option<&str>,
    format: Option<ClientCertHeaderFormat>,
) -> Option<String> {
    let name = match (raw, format) {
        (Some(n), _) => n.trim().to_ascii_lowercase(),
        (None, Some(ClientCertHeaderFormat::Xfcc)) => "x-forwarded-client-cert".to_owned(),
        (None, Some(ClientCertHeaderFormat::DerBase64)) => "x-forwarded-tls-client-cert".to_owned(),
        (None, Some(ClientCertHeaderFormat::PemUrlencoded)) => {
            errs.push(
                "client_cert_header.name",
                "is required with pem-urlencoded (the header nginx's proxy_set_header names)",
            );
            return None;
        }
        (None, None) => return None,
    };
    if !is_token(&name) {
        errs.push("client_cert_header.name", "is not an HTTP header name");
        return None;
    }
    if RESERVED.contains(&name.as_str()) {
        errs.push(
            "client_cert_header.name",
            "is a header Ferry reads for something else",
        );
        return None;
    }
    Some(name)
}

/// Validates `client_cert_header`.
pub(super) fn client_cert_header(
    errs: &mut ConfigErrors,
    raw: Option<&RawClientCertHeader>,
) -> Option<ClientCertHeader> {
    let raw = raw?;
    let format = format(errs, raw.format.as_deref());
    let name = name(errs, raw.name.as_deref(), format);
    let mut trusted_peers = Vec::new();
    match raw.trusted_peers.as_deref() {
        None | Some([]) => errs.push(
            "client_cert_header.trusted_peers",
            "is required: the addresses of the proxies that set the header",
        ),
        Some(list) => {
            for (i, entry) in list.iter().enumerate() {
                let path = format!("client_cert_header.trusted_peers[{i}]");
                match super::proxies::parse(entry) {
                    None => errs.push(path, "is not an IP address or CIDR range"),
                    Some(n) if n.prefix_len() == 0 => errs.push(
                        path,
                        "trusts every address: name the proxies' own addresses or ranges",
                    ),
                    Some(n) => trusted_peers.push(n),
                }
            }
        }
    }
    Some(ClientCertHeader {
        name: name?,
        format: format?,
        trusted_peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (Option<ClientCertHeader>, Vec<String>) {
        let raw: RawClientCertHeader = serde_saphyr::from_str(yaml).unwrap();
        let mut errs = ConfigErrors::default();
        let h = client_cert_header(&mut errs, Some(&raw));
        (
            h,
            errs.0
                .into_iter()
                .map(|(p, m)| format!("{p}: {m}"))
                .collect(),
        )
    }

    #[test]
    #[allow(clippy::too_many_lines, reason = "one table")]
    fn a_header_needs_a_format_and_trusted_peers() {
        let (h, errs) = run("{format: xfcc, trusted_peers: [10.0.0.0/8, 192.0.2.7]}");
        assert!(errs.is_empty(), "{errs:?}");
        let h = h.unwrap();
        assert_eq!(h.name, "x-forwarded-client-cert");
        assert_eq!(h.format, ClientCertHeaderFormat::Xfcc);
        assert_eq!(h.trusted_peers.len(), 2);
        let (h, _) = run("{format: der-base64, trusted_peers: [10.0.0.1]}");
        assert_eq!(h.unwrap().name, "x-forwarded-tls-client-cert");
        let (h, errs) =
            run("{name: X-SSL-Client-Cert, format: pem-urlencoded, trusted_peers: [10.0.0.1]}");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(h.unwrap().name, "x-ssl-client-cert");

        for (yaml, want) in [
            ("{format: xfcc}", "trusted_peers: is required"),
            (
                "{format: xfcc, trusted_peers: []}",
                "trusted_peers: is required",
            ),
            (
                "{format: xfcc, trusted_peers: [0.0.0.0/0]}",
                "trusts every address",
            ),
            (
                "{format: xfcc, trusted_peers: [proxy.local]}",
                "not an IP address",
            ),
            ("{trusted_peers: [10.0.0.1]}", "format: is required"),
            ("{format: pem, trusted_peers: [10.0.0.1]}", "must be xfcc"),
            (
                "{format: pem-urlencoded, trusted_peers: [10.0.0.1]}",
                "name: is required",
            ),
            (
                "{name: 'a b', format: xfcc, trusted_peers: [10.0.0.1]}",
                "not an HTTP header",
            ),
            (
                "{name: Authorization, format: xfcc, trusted_peers: [10.0.0.1]}",
                "something else",
            ),
        ] {
            let (h, errs) = run(yaml);
            assert!(h.is_none() || !errs.is_empty(), "{yaml}");
            assert!(errs.iter().any(|e| e.contains(want)), "{yaml}: {errs:?}");
        }
    }
}
