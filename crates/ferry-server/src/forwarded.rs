//! The client's address behind trusted proxies. From a peer in `trusted_proxies`, the
//! client is read from `Forwarded` (RFC 7239 `for=`) or, without it, `X-Forwarded-For`:
//! right to left, skipping hops that are themselves trusted; the first hop that is not
//! is the client. A hop that does not parse (`unknown`, an obfuscated `_name`, garbage)
//! ends the walk at the last trusted hop: the request is counted against the proxy
//! that passed it on, never against an address nobody vouched for. From any other peer
//! the headers are ignored: a caller cannot choose its own address.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ferry_core::config::is_trusted;
use ipnet::IpNet;

/// Most hops read from the headers, from the right.
pub const MAX_HOPS: usize = 32;

/// The client address of a request, resolved once per request by the middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `for=` value of `Forwarded`: an IPv4 address with an optional port, a bracketed
/// IPv6 address with an optional port, quoted or not.
fn forwarded_node(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    v.parse::<IpAddr>()
        .ok()
        .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The `for=` of every element of every `Forwarded` header, left to right; `None` for an
/// element without a usable one.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(text) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in text.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            });
            hops.push(node.and_then(forwarded_node));
        }
    }
    hops
}

/// Every `X-Forwarded-For` hop, left to right.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(text) => hops.extend(text.split(',').map(forwarded_node)),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The client address of a request from `peer`.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let hops = if headers.contains_key("forwarded") {
        forwarded(headers)
    } else {
        x_forwarded_for(headers)
    };
    let mut client = peer;
    for hop in hops.into_iter().rev().take(MAX_HOPS) {
        let Some(ip) = hop.map(canonical) else {
            break;
        };
        client = ip;
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    #[allow(clippy::too_many_lines, reason = "one table")]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let trusted: Vec<IpNet> = ["127.0.0.1/32", "10.0.0.0/8", "2001:db8:ffff::/48"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(&str, Headers, &str)] = &[
            // An untrusted peer: its headers are ignored.
            (
                "192.0.2.9",
                &[("x-forwarded-for", "203.0.113.7")],
                "192.0.2.9",
            ),
            (
                "192.0.2.9",
                &[("forwarded", "for=203.0.113.7")],
                "192.0.2.9",
            ),
            // A trusted peer without headers is the client.
            ("127.0.0.1", &[], "127.0.0.1"),
            // One proxy; two trusted proxies; a spoofed leftmost entry is not read.
            (
                "127.0.0.1",
                &[("x-forwarded-for", "203.0.113.7")],
                "203.0.113.7",
            ),
            (
                "127.0.0.1",
                &[("x-forwarded-for", "203.0.113.7, 10.0.0.2")],
                "203.0.113.7",
            ),
            (
                "127.0.0.1",
                &[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")],
                "203.0.113.7",
            ),
            // Several header lines are one list.
            (
                "127.0.0.1",
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "203.0.113.7"),
                ],
                "203.0.113.7",
            ),
            // Forwarded wins over X-Forwarded-For; quoted, ported and bracketed forms.
            (
                "127.0.0.1",
                &[
                    ("forwarded", "for=203.0.113.7;proto=https"),
                    ("x-forwarded-for", "6.6.6.6"),
                ],
                "203.0.113.7",
            ),
            (
                "127.0.0.1",
                &[("forwarded", "for=\"203.0.113.7:4711\", for=10.0.0.2")],
                "203.0.113.7",
            ),
            (
                "127.0.0.1",
                &[("forwarded", "For=\"[2001:db8:cafe::17]:4711\"")],
                "2001:db8:cafe::17",
            ),
            // An unusable hop ends the walk at the last trusted one.
            (
                "127.0.0.1",
                &[("forwarded", "for=unknown, for=10.0.0.2")],
                "10.0.0.2",
            ),
            (
                "127.0.0.1",
                &[("x-forwarded-for", "203.0.113.7, garbage")],
                "127.0.0.1",
            ),
            ("127.0.0.1", &[("forwarded", "by=10.0.0.1")], "127.0.0.1"),
            // Every hop trusted: the leftmost.
            (
                "127.0.0.1",
                &[("x-forwarded-for", "10.0.0.3, 10.0.0.2")],
                "10.0.0.3",
            ),
            // IPv4-mapped IPv6 is IPv4.
            (
                "::ffff:127.0.0.1",
                &[("x-forwarded-for", "::ffff:203.0.113.7")],
                "203.0.113.7",
            ),
        ];
        for (peer, hs, want) in cases {
            assert_eq!(
                client_addr(ip(peer), &headers(hs), &trusted),
                ip(want),
                "{peer} {hs:?}"
            );
        }
    }

    #[test]
    fn nothing_is_read_without_trusted_proxies() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
    }
}
