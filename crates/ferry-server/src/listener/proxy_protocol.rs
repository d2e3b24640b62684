//! PROXY protocol v2 (HAProxy's binary header) on the public listener, for L4 load
//! balancers (`listen_proxy_protocol: true`). Only a connection from a trusted peer
//! (`trusted_proxies`) is read for a header, and it must carry one: a trusted proxy that
//! forgot it is a misconfiguration, refused rather than taken as the client. A connection
//! from any other peer is read as plain HTTP (or TLS), so a header it sends is garbage.
//! `LOCAL` (a health check by the balancer itself) keeps the peer's address. Parsing is
//! the `ppp` crate's; this module only reads the bytes, bounded and under a deadline.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Header, PROTOCOL_PREFIX};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The fixed part: the 12-byte signature, version/command, family/protocol, length.
const FIXED: usize = 16;

/// Why a connection's header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The connection ended or failed before the header was read.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// Not a PROXY v2 header.
    #[error("no PROXY protocol v2 header from a trusted proxy")]
    Missing,
    /// A header `ppp` refuses.
    #[error("malformed PROXY protocol v2 header")]
    Malformed,
}

/// Reads the header at the start of `stream`; the client's address, or `peer` for
/// `LOCAL` and for address families that carry none.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyHeaderError> {
    let mut fixed = [0u8; FIXED];
    stream.read_exact(&mut fixed).await?;
    if !fixed.starts_with(PROTOCOL_PREFIX) {
        return Err(ProxyHeaderError::Missing);
    }
    let [.., hi, lo] = fixed;
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    // At most 64 KiB by construction (a u16): the header is read whole, then parsed.
    let mut whole = fixed.to_vec();
    whole.resize(FIXED + len, 0);
    if let Some(rest) = whole.get_mut(FIXED..) {
        stream.read_exact(rest).await?;
    }
    let header = Header::try_from(whole.as_slice()).map_err(|_| ProxyHeaderError::Malformed)?;
    Ok(match (header.command, header.addresses) {
        (Command::Proxy, Addresses::IPv4(a)) => SocketAddr::from((a.source_address, a.source_port)),
        (Command::Proxy, Addresses::IPv6(a)) => SocketAddr::from((a.source_address, a.source_port)),
        _ => peer,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ppp::v2::{Builder, Protocol, Version};

    use super::*;

    fn header(command: Command, addrs: Addresses) -> Vec<u8> {
        Builder::with_addresses(Version::Two | command, Protocol::Stream, addrs)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn the_header_names_the_client() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let lb: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let mut bytes = header(Command::Proxy, (client, lb).into());
        bytes.extend_from_slice(b"POST /token HTTP/1.1\r\n");
        let mut s = bytes.as_slice();
        assert_eq!(read(&mut s, peer).await.unwrap(), client);
        // What follows the header is left for HTTP.
        assert!(s.starts_with(b"POST /token"));
        let v6: SocketAddr = "[2001:db8::7]:1".parse().unwrap();
        let lb6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let bytes = header(Command::Proxy, (v6, lb6).into());
        assert_eq!(read(&mut bytes.as_slice(), peer).await.unwrap(), v6);
        // LOCAL: the balancer's own connection keeps the peer.
        let bytes = header(Command::Local, Addresses::Unspecified);
        assert_eq!(read(&mut bytes.as_slice(), peer).await.unwrap(), peer);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let http = b"POST /token HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert!(matches!(
            read(&mut http.as_slice(), peer).await,
            Err(ProxyHeaderError::Missing)
        ));
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n".to_vec();
        assert!(matches!(
            read(&mut v1.as_slice(), peer).await,
            Err(ProxyHeaderError::Missing)
        ));
        let mut truncated = header(
            Command::Proxy,
            (
                "203.0.113.7:1".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:2".parse::<SocketAddr>().unwrap(),
            )
                .into(),
        );
        truncated.truncate(20);
        assert!(matches!(
            read(&mut truncated.as_slice(), peer).await,
            Err(ProxyHeaderError::Io(_))
        ));
    }
}
