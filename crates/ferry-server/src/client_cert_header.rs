//! The client certificate behind a TLS-terminating proxy (`client_cert_header`). For
//! each request, before anything else reads it:
//!
//! 1. From a connection whose own address (the TCP peer: never a forwarded address, nor
//!    one a PROXY protocol header named) is in `trusted_peers`, the header *is* the
//!    request's client certificate: parsed ([`ferry_verify::cert_header`]), it replaces
//!    whatever certificate the TLS handshake gave (that one is the proxy's own). No
//!    header, or an empty one: no client certificate. A malformed header: 400. One over
//!    64 KiB: ignored (no certificate), counted, warned about and noted in the audit.
//! 2. From any other connection the header is removed unread: never parsed, never
//!    logged; a TLS client certificate stays the request's certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use ferry_core::config::{ClientCertHeader, ClientCertHeaderFormat, is_trusted};
use ferry_verify::cert_header::{self, CertHeaderError, Format};
use rustls_pki_types::CertificateDer;

use crate::client_cert::{ClientChain, PeerCertificate};

/// The connection's own peer address, put in every request by [`crate::listener`]: the
/// address the TCP connection came from, even where a PROXY protocol header named
/// another one for `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct TcpPeer(pub SocketAddr);

/// Marks a request whose trusted peer's header was over the size limit and ignored: its
/// audit event says so (`client_cert_header: too_large`).
#[derive(Debug, Clone, Copy)]
pub struct Ignored;

/// What became of a trusted peer's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not configured, or the peer is not trusted: nothing read.
    Untouched,
    /// Read: the request's certificate is the header's (or none).
    Read,
    /// Over the size limit: ignored, the request has no certificate.
    TooLarge,
}

fn format(f: ClientCertHeaderFormat) -> Format {
    match f {
        ClientCertHeaderFormat::Xfcc => Format::Xfcc,
        ClientCertHeaderFormat::PemUrlencoded => Format::PemUrlencoded,
        ClientCertHeaderFormat::DerBase64 => Format::DerBase64,
    }
}

/// Applies `config` to `req` (see the module documentation). `Err`: a trusted peer sent
/// a malformed header (the reason is fixed text, for the log).
pub fn apply(
    req: &mut Request,
    config: Option<&ClientCertHeader>,
) -> Result<Outcome, &'static str> {
    let Some(config) = config else {
        return Ok(Outcome::Untouched);
    };
    let trusted = req
        .extensions()
        .get::<TcpPeer>()
        .is_some_and(|p| is_trusted(&config.trusted_peers, crate::forwarded::canonical(p.0.ip())));
    let parsed = if trusted {
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(config.name.as_str())
            .iter()
            .map(axum::http::HeaderValue::as_bytes)
            .collect();
        Some(cert_header::parse(format(config.format), &values))
    } else {
        None
    };
    req.headers_mut().remove(config.name.as_str());
    let Some(parsed) = parsed else {
        return Ok(Outcome::Untouched);
    };
    // The TLS certificate of a trusted peer's connection is the proxy's, not the client's.
    req.extensions_mut().remove::<PeerCertificate>();
    let chain = match parsed {
        Ok(chain) => chain,
        Err(CertHeaderError::TooLarge) => {
            req.extensions_mut().insert(Ignored);
            return Ok(Outcome::TooLarge);
        }
        Err(CertHeaderError::Malformed(why)) => return Err(why),
        Err(_) => return Err("unreadable"),
    };
    let chain =
        chain.and_then(|c| ClientChain::new(c.into_iter().map(CertificateDer::from).collect()));
    if let Some(chain) = chain {
        req.extensions_mut()
            .insert(PeerCertificate(Arc::new(chain)));
    }
    Ok(Outcome::Read)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use base64::Engine as _;

    use super::*;

    fn config(peers: &[&str]) -> ClientCertHeader {
        ClientCertHeader {
            name: "x-client-cert".into(),
            format: ClientCertHeaderFormat::DerBase64,
            trusted_peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn cert(name: &str) -> Vec<u8> {
        rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .unwrap()
            .cert
            .der()
            .to_vec()
    }

    fn request(peer: &str, header: Option<&str>, tls: Option<Vec<u8>>) -> Request {
        let mut b = axum::http::Request::builder().uri("/token");
        if let Some(h) = header {
            b = b.header("x-client-cert", h);
        }
        let mut req = b.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(TcpPeer(format!("{peer}:4000").parse().unwrap()));
        if let Some(der) = tls {
            let chain = ClientChain::new(vec![CertificateDer::from(der)]).unwrap();
            req.extensions_mut()
                .insert(PeerCertificate(Arc::new(chain)));
        }
        req
    }

    fn leaf(req: &Request) -> Option<Vec<u8>> {
        req.extensions()
            .get::<PeerCertificate>()
            .map(|c| c.0.leaf().to_vec())
    }

    #[test]
    fn only_a_trusted_peer_sets_the_certificate() {
        let (proxied, own) = (cert("client.example"), cert("proxy.example"));
        let header = base64::engine::general_purpose::STANDARD.encode(&proxied);
        let c = config(&["10.0.0.0/8"]);

        // Trusted: the header replaces the TLS certificate, and is removed.
        let mut req = request("10.1.2.3", Some(&header), Some(own.clone()));
        assert_eq!(apply(&mut req, Some(&c)), Ok(Outcome::Read));
        assert_eq!(leaf(&req), Some(proxied.clone()));
        assert!(req.headers().get("x-client-cert").is_none());
        // Trusted, no header: no certificate, not the proxy's own.
        let mut req = request("10.1.2.3", None, Some(own.clone()));
        assert_eq!(apply(&mut req, Some(&c)), Ok(Outcome::Read));
        assert_eq!(leaf(&req), None);
        // IPv4-mapped IPv6 peers are their IPv4 address.
        let mut req = request("[::ffff:10.1.2.3]", Some(&header), None);
        assert_eq!(apply(&mut req, Some(&c)), Ok(Outcome::Read));
        assert_eq!(leaf(&req), Some(proxied.clone()));

        // Untrusted: the header is stripped unread; the TLS certificate stays.
        let mut req = request("192.0.2.9", Some(&header), Some(own.clone()));
        assert_eq!(apply(&mut req, Some(&c)), Ok(Outcome::Untouched));
        assert_eq!(leaf(&req), Some(own.clone()));
        assert!(req.headers().get("x-client-cert").is_none());
        // Untrusted and malformed: still never parsed.
        let mut req = request("192.0.2.9", Some("!!"), None);
        assert_eq!(apply(&mut req, Some(&c)), Ok(Outcome::Untouched));
        // Not configured: nothing happens.
        let mut req = request("10.1.2.3", Some(&header), None);
        assert_eq!(apply(&mut req, None), Ok(Outcome::Untouched));
        assert_eq!(leaf(&req), None);
    }

    #[test]
    fn a_trusted_peers_bad_header_is_refused_and_an_oversized_one_ignored() {
        let c = config(&["10.0.0.0/8"]);
        let mut req = request("10.1.2.3", Some("!!"), None);
        assert!(apply(&mut req, Some(&c)).is_err());
        let big = "A".repeat(cert_header::MAX_HEADER_BYTES + 1);
        let mut req = request("10.1.2.3", Some(&big), Some(cert("proxy.example")));
        assert_eq!(apply(&mut req, Some(&c)), Ok(Outcome::TooLarge));
        assert_eq!(leaf(&req), None);
        assert!(req.extensions().get::<Ignored>().is_some());
    }
}
