//! The per-source connection cap: how many connections one address may hold open at
//! once. Checked at accept, before a TLS handshake or a single byte is read, so an
//! address that opens thousands of idle connections costs one `accept` each and never
//! a task, a buffer or a handshake. Rate limits count requests; this counts what a
//! client can hold without sending any.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// Which peers the cap does not apply to.
pub type Exempt = Box<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Live connections per source.
pub struct ConnectionCap {
    max: usize,
    /// One entry per source with at least one live connection: the map never holds more
    /// entries than there are open sockets.
    live: Mutex<HashMap<IpAddr, usize>>,
    exempt: Exempt,
}

impl std::fmt::Debug for ConnectionCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionCap")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// The source a peer is counted as. IPv4 addresses (also when they arrive as
/// IPv4-mapped IPv6) count alone; an IPv6 address counts as its /64, the smallest
/// prefix a single site is usually given (RFC 6177 §3), so one host cannot escape the cap
/// by cycling through the 2^64 addresses of its own subnet.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// A connection counted against its source; uncounted when dropped.
#[derive(Debug)]
pub struct Admitted {
    cap: Arc<ConnectionCap>,
    /// `None` for an exempt peer (not counted).
    source: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(source) = self.source else { return };
        let mut live = self.cap.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = live.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                live.remove(&source);
            }
        }
    }
}

impl ConnectionCap {
    /// At most `max` live connections per source; peers for which `exempt` holds are
    /// not counted. The seam for trusted proxies: a proxy carries many clients' traffic
    /// on its connections, so once `trusted_proxies` exists, its matcher goes here.
    pub fn new(max: usize, exempt: Exempt) -> Arc<Self> {
        Arc::new(Self {
            max,
            live: Mutex::new(HashMap::new()),
            exempt,
        })
    }

    /// Counts a new connection from `peer`, or `None` when its source is at the cap.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        if (self.exempt)(peer) {
            return Some(Admitted {
                cap: self.clone(),
                source: None,
            });
        }
        let source = source_of(peer);
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let n = live.entry(source).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        drop(live);
        Some(Admitted {
            cap: self.clone(),
            source: Some(source),
        })
    }

    /// Sources with at least one live connection.
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_cap_counts_live_connections_per_source() {
        let cap = ConnectionCap::new(2, Box::new(|_| false));
        let a = cap.admit(ip("10.0.0.1")).unwrap();
        let b = cap.admit(ip("10.0.0.1")).unwrap();
        assert!(cap.admit(ip("10.0.0.1")).is_none(), "third from one source");
        // Another source is not affected.
        let other = cap.admit(ip("10.0.0.2")).unwrap();
        // A closed connection frees its slot; a source without connections is forgotten.
        drop(a);
        let c = cap.admit(ip("10.0.0.1")).unwrap();
        drop((b, c, other));
        assert_eq!(cap.sources(), 0);
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_mapped_ipv4_is_ipv4() {
        let cap = ConnectionCap::new(1, Box::new(|_| false));
        let _a = cap.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(cap.admit(ip("2001:db8:1:2:ffff::9")).is_none(), "same /64");
        let _b = cap.admit(ip("2001:db8:1:3::1")).unwrap();
        let _c = cap.admit(ip("192.0.2.7")).unwrap();
        assert!(cap.admit(ip("::ffff:192.0.2.7")).is_none(), "mapped IPv4");
    }

    #[test]
    fn exempt_peers_are_not_counted() {
        let proxy = ip("10.9.9.9");
        let cap = ConnectionCap::new(1, Box::new(move |p| p == proxy));
        let held: Vec<_> = (0..5).map(|_| cap.admit(proxy).unwrap()).collect();
        assert_eq!(cap.sources(), 0);
        // Twin: any other address is capped.
        let _x = cap.admit(ip("10.0.0.1")).unwrap();
        assert!(cap.admit(ip("10.0.0.1")).is_none());
        drop(held);
    }
}
