//! `trusted_proxies` and `listen_proxy_protocol`: which peers may say who the client is.
//! A CIDR (or a bare address, its own /32 or /128) per entry; a range covering every
//! address (`0.0.0.0/0`, `::/0`, or any prefix of length 0) is refused, since it would let
//! every caller choose its own address.

use std::net::IpAddr;

use ipnet::IpNet;

use super::errors::ConfigErrors;
use super::raw::RawConfig;

/// Parses one entry.
pub(super) fn parse(entry: &str) -> Option<IpNet> {
    let e = entry.trim();
    e.parse::<IpNet>()
        .ok()
        .or_else(|| e.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

/// The trusted proxies and whether the public listener takes the PROXY protocol.
pub(super) fn proxies(errs: &mut ConfigErrors, raw: &RawConfig) -> (Vec<IpNet>, bool) {
    let mut nets = Vec::new();
    for (i, entry) in raw.trusted_proxies.iter().flatten().enumerate() {
        let path = format!("trusted_proxies[{i}]");
        match parse(entry) {
            None => errs.push(path, "is not an IP address or CIDR range"),
            Some(n) if n.prefix_len() == 0 => errs.push(
                path,
                "trusts every address: name the proxies' own addresses or ranges",
            ),
            Some(n) => nets.push(n),
        }
    }
    let proxy_protocol = raw.listen_proxy_protocol.unwrap_or(false);
    if proxy_protocol && raw.trusted_proxies.as_ref().is_none_or(Vec::is_empty) {
        errs.push(
            "listen_proxy_protocol",
            "needs trusted_proxies: the header is accepted only from trusted peers",
        );
    }
    (nets, proxy_protocol)
}

/// Whether `ip` is one of `trusted`.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml_list: &[&str], proxy_protocol: Option<bool>) -> (Vec<String>, Vec<String>) {
        let raw = RawConfig {
            trusted_proxies: Some(yaml_list.iter().map(|s| (*s).to_owned()).collect()),
            listen_proxy_protocol: proxy_protocol,
            ..RawConfig::default()
        };
        let mut errs = ConfigErrors::default();
        let (nets, _) = proxies(&mut errs, &raw);
        (
            nets.iter().map(ToString::to_string).collect(),
            errs.0
                .into_iter()
                .map(|(p, m)| format!("{p}: {m}"))
                .collect(),
        )
    }

    #[test]
    fn entries_are_ranges_or_addresses_never_everything() {
        let (nets, errs) = run(
            &["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.1.2.3/16"],
            None,
        );
        assert_eq!(
            nets,
            ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "10.1.0.0/16"]
        );
        assert!(errs.is_empty(), "{errs:?}");
        for everything in ["0.0.0.0/0", "::/0", "1.2.3.4/0"] {
            let (_, errs) = run(&[everything], None);
            assert_eq!(errs.len(), 1, "{everything}");
            assert!(errs[0].contains("trusts every address"), "{errs:?}");
        }
        let (_, errs) = run(&["proxy.example.com"], None);
        assert!(errs[0].contains("not an IP address"), "{errs:?}");
        assert!(is_trusted(
            &["10.0.0.0/8".parse().unwrap()],
            "10.9.9.9".parse().unwrap()
        ));
        assert!(!is_trusted(
            &["10.0.0.0/8".parse().unwrap()],
            "11.0.0.1".parse().unwrap()
        ));
    }

    #[test]
    fn the_proxy_protocol_needs_trusted_peers() {
        let (_, errs) = run(&[], Some(true));
        assert_eq!(errs.len(), 1, "{errs:?}");
        let (_, errs) = run(&["10.0.0.0/8"], Some(true));
        assert!(errs.is_empty(), "{errs:?}");
    }
}
