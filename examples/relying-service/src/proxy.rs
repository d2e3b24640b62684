//! Behind a TLS-terminating proxy: the client certificate arrives in the proxy's header
//! (Envoy `X-Forwarded-Client-Cert`, nginx's escaped PEM, Traefik's base64 DER). Only a
//! connection from one of the proxy's own addresses may set it; there, the header's leaf
//! replaces any TLS certificate (the proxy's own). From any other peer the header is
//! removed unread. A malformed header from the proxy is a 400.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_verify::ClientCertificate;
use ferry_verify::cert_header::{self, Format};
use ipnet::IpNet;

/// Which header, in which format, from which peers.
#[derive(Debug)]
pub struct ProxyHeader {
    /// The header.
    pub name: HeaderName,
    /// How the proxy writes it.
    pub format: Format,
    /// The proxy's addresses.
    pub peers: Vec<IpNet>,
}

impl ProxyHeader {
    /// From `CLIENT_CERT_HEADER`, `CLIENT_CERT_HEADER_FORMAT` (`xfcc`, `pem-urlencoded`,
    /// `der-base64`) and `TRUSTED_PEERS` (comma-separated CIDRs); `None` without the first.
    pub fn from_env() -> Result<Option<Self>, Box<dyn std::error::Error>> {
        let Ok(name) = std::env::var("CLIENT_CERT_HEADER") else {
            return Ok(None);
        };
        let format = std::env::var("CLIENT_CERT_HEADER_FORMAT").unwrap_or_else(|_| "xfcc".into());
        let format = Format::from_name(&format).ok_or("CLIENT_CERT_HEADER_FORMAT is unknown")?;
        let peers = std::env::var("TRUSTED_PEERS")
            .map_err(|_| "CLIENT_CERT_HEADER needs TRUSTED_PEERS")?
            .split(',')
            .map(|p| p.trim().parse::<IpNet>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self {
            name: HeaderName::try_from(name)?,
            format,
            peers,
        }))
    }

    fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.peers.iter().any(|n| n.contains(&peer))
    }
}

/// The middleware.
pub async fn client_certificate(
    State(config): State<Arc<ProxyHeader>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if config.trusts(peer.ip()) {
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(&config.name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let Ok(chain) = cert_header::parse(config.format, &values) else {
            return (
                StatusCode::BAD_REQUEST,
                "malformed client certificate header",
            )
                .into_response();
        };
        req.extensions_mut().remove::<ClientCertificate>();
        if let Some(leaf) = chain.and_then(|c| c.into_iter().next()) {
            req.extensions_mut().insert(ClientCertificate(leaf));
        }
    }
    req.headers_mut().remove(&config.name);
    next.run(req).await
}
