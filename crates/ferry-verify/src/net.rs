//! Outbound HTTP, hardened: Ferry fetches keys from URLs that configuration and, worse,
//! discovery documents name, so every fetch is treated as a possible SSRF.
//!
//! 1. https only; plain http only for origins listed exactly (`http://127.0.0.1:8443`),
//!    for development and tests.
//! 2. The address classifier refuses loopback, RFC 1918, 100.64/10, link-local (and so
//!    the cloud metadata address 169.254.169.254), fc00::/7, fe80::/10, multicast and
//!    reserved ranges, and IPv4 addresses embedded in IPv6 forms (mapped, compatible,
//!    NAT64, 6to4). It runs on IP literals in URLs and, through a custom resolver, on
//!    every address a host name resolves to at connect time, so DNS rebinding does not
//!    pass. Origins that are listed (insecure opt-ins, a Kubernetes API server) may
//!    resolve to such addresses.
//! 3. Redirects are followed at most 3 times and each target passes rule 1 and 2 again.
//! 4. Responses are capped in size; connect and total timeouts are set; proxies from the
//!    environment are ignored.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an outbound request was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Not https and not an opted-in origin.
    #[error("refused: {0} is not https and not an allowed insecure origin")]
    Insecure(String),
    /// The URL or a resolved address is in a forbidden range.
    #[error("refused: address in a forbidden range ({0})")]
    Forbidden(&'static str),
    /// Not a URL Ferry can fetch.
    #[error("refused: unusable URL")]
    BadUrl,
}

/// Classifies an IP address; `Some(reason)` when Ferry must not connect to it.
pub fn forbidden_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [127, ..] => "loopback",
        [10, ..] => "private (10/8)",
        [172, b, ..] if (16..=31).contains(&b) => "private (172.16/12)",
        [192, 168, ..] => "private (192.168/16)",
        [100, b, ..] if (64..=127).contains(&b) => "shared address space (100.64/10)",
        [169, 254, ..] => "link-local / cloud metadata (169.254/16)",
        [0, ..] => "this network (0/8)",
        [192, 0, 0, _] => "IETF protocol assignments (192.0.0/24)",
        [168, 63, 129, 16] => "cloud metadata (Azure wireserver)",
        [a, ..] if a >= 224 => "multicast or reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    let s = ip.segments();
    // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d.
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return forbidden_v4(v4);
    }
    // NAT64 64:ff9b::/96 embeds an IPv4 address in the last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return forbidden_v4(v4);
    }
    // 6to4 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return forbidden_v4(v4);
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    })
}

/// Whether `ip` is in a private range an operator may open for one provider
/// (`allow_private_network`): RFC 1918 and IPv6 unique local addresses. Loopback,
/// link-local, cloud metadata, shared address space and the rest stay refused.
pub fn private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168)
        }
        IpAddr::V6(v6) => v6.segments().first().is_some_and(|s| s & 0xfe00 == 0xfc00),
    }
}

/// Whether a connection to `ip` is allowed for a host with these opt-ins.
fn admissible(ip: IpAddr, opted_in: bool, private_ok: bool) -> bool {
    opted_in || forbidden_ip(ip).is_none() || (private_ok && private_ip(ip))
}

/// The origin (`scheme://host:port`) of a URL, with the default port made explicit.
pub fn origin(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{}://{}:{}", url.scheme(), host, port))
}

/// Which URLs may be fetched.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// Exact origins that may use http and resolve to any address (development, tests).
    insecure_origins: HashSet<String>,
    /// Exact https origins that may resolve to any address (a configured API server).
    trusted_origins: HashSet<String>,
    /// Exact https origins that may resolve to private addresses ([`private_ip`]).
    private_origins: HashSet<String>,
}

impl OutboundPolicy {
    /// A policy with these opt-ins. Origins are normalised (`http://127.0.0.1:8080`).
    pub fn new(insecure: &[String], trusted: &[String]) -> Result<Self, NetError> {
        let norm = |list: &[String]| -> Result<HashSet<String>, NetError> {
            list.iter()
                .map(|o| {
                    Url::parse(o)
                        .ok()
                        .and_then(|u| origin(&u))
                        .ok_or(NetError::BadUrl)
                })
                .collect()
        };
        Ok(Self {
            insecure_origins: norm(insecure)?,
            trusted_origins: norm(trusted)?,
            private_origins: HashSet::new(),
        })
    }

    /// Also lets these exact https origins resolve to private addresses (RFC 1918,
    /// unique local), never to loopback, link-local or metadata ones.
    pub fn allow_private(mut self, origins: &[String]) -> Result<Self, NetError> {
        for o in origins {
            let url = Url::parse(o).map_err(|_| NetError::BadUrl)?;
            self.private_origins
                .insert(origin(&url).ok_or(NetError::BadUrl)?);
        }
        Ok(self)
    }

    /// Hosts whose names may resolve to private addresses.
    fn private_hosts(&self) -> HashSet<String> {
        self.private_origins
            .iter()
            .filter_map(|o| Url::parse(o).ok()?.host_str().map(str::to_owned))
            .collect()
    }

    fn opted_in(&self, o: &str) -> bool {
        self.insecure_origins.contains(o) || self.trusted_origins.contains(o)
    }

    /// Hosts whose names may resolve to forbidden addresses.
    fn opted_in_hosts(&self) -> HashSet<String> {
        self.insecure_origins
            .iter()
            .chain(&self.trusted_origins)
            .filter_map(|o| Url::parse(o).ok()?.host_str().map(str::to_owned))
            .collect()
    }

    /// Checks a URL before a request and before following a redirect.
    pub fn check_url(&self, url: &Url) -> Result<(), NetError> {
        let o = origin(url).ok_or(NetError::BadUrl)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(NetError::BadUrl);
        }
        match url.scheme() {
            "https" => {}
            "http" if self.insecure_origins.contains(&o) => {}
            _ => return Err(NetError::Insecure(o)),
        }
        if self.opted_in(&o) {
            return Ok(());
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        let private_ok = self.private_origins.contains(&o);
        match ip.and_then(|ip| forbidden_ip(ip).filter(|_| !(private_ok && private_ip(ip)))) {
            Some(reason) => Err(NetError::Forbidden(reason)),
            None => Ok(()),
        }
    }
}

/// Resolves names and drops forbidden addresses, at connect time.
struct GuardedResolver {
    allowed_hosts: HashSet<String>,
    /// Hosts that may resolve to private addresses only.
    private_hosts: HashSet<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let opted_in = self.allowed_hosts.contains(&host);
        let private_ok = self.private_hosts.contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| admissible(a.ip(), opted_in, private_ok))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(NetError::Forbidden("every resolved address"))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let it: Addrs = Box::new(allowed.into_iter());
            Ok(it)
        })
    }
}

/// Settings of an outbound client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Total timeout per request.
    pub timeout: Duration,
    /// Largest accepted response body.
    pub max_response_bytes: usize,
    /// Extra trusted root certificates (PEM), e.g. a cluster CA.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// An HTTP proxy for every request (CONNECT for https). The URL checks still apply
    /// to what is asked of the proxy; the names it resolves are its own business.
    pub proxy: Option<Url>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1024 * 1024,
            extra_roots_pem: None,
            proxy: None,
        }
    }
}

/// Why a hardened HTTP client cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The extra CA bundle is not PEM certificates.
    #[error("CA bundle: {0}")]
    CaBundle(#[source] reqwest::Error),
    /// The TLS backend refused the settings.
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A hardened HTTP client with its policy.
#[derive(Debug, Clone)]
pub struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) policy: Arc<OutboundPolicy>,
    pub(crate) max_response_bytes: usize,
}

impl Http {
    /// Builds a client that enforces `policy`.
    pub fn new(policy: OutboundPolicy, settings: &ClientSettings) -> Result<Self, HttpError> {
        let policy = Arc::new(policy);
        let redirect_policy = {
            let policy = policy.clone();
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    return attempt.error("too many redirects");
                }
                match policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            })
        };
        let mut builder = reqwest::Client::builder();
        builder = match &settings.proxy {
            // Explicit only: HTTP(S)_PROXY in the environment is never read.
            Some(p) => builder.proxy(reqwest::Proxy::all(p.as_str()).map_err(HttpError::Client)?),
            None => builder.no_proxy(),
        };
        let mut builder = builder
            .redirect(redirect_policy)
            .dns_resolver(Arc::new(GuardedResolver {
                // The configured proxy is the operator's: its name may resolve anywhere.
                allowed_hosts: policy
                    .opted_in_hosts()
                    .into_iter()
                    .chain(
                        settings
                            .proxy
                            .as_ref()
                            .and_then(|p| p.host_str().map(str::to_owned)),
                    )
                    .collect(),
                private_hosts: policy.private_hosts(),
            }))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.extra_roots_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(HttpError::CaBundle)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(HttpError::Client)?;
        Ok(Self {
            client,
            policy,
            max_response_bytes: settings.max_response_bytes,
        })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `allow_private_network`: the provider's exact origins reach RFC 1918 and unique
    /// local addresses, nothing else does, and loopback, link-local and metadata stay
    /// refused even for them (tested without sending traffic).
    #[test]
    fn a_private_origin_reaches_private_addresses_only() {
        let p = OutboundPolicy::new(&[], &[])
            .unwrap()
            .allow_private(&["https://10.1.2.3:8443".into(), "https://[fd00::7]".into()])
            .unwrap();
        let check = |u: &str| p.check_url(&Url::parse(u).unwrap());
        assert!(check("https://10.1.2.3:8443/keys").is_ok());
        assert!(check("https://[fd00::7]/keys").is_ok());
        // Twins: another private origin, the same host on another port, plain http.
        assert!(check("https://10.1.2.4:8443/keys").is_err());
        assert!(check("https://10.1.2.3/keys").is_err());
        assert!(check("http://10.1.2.3:8443/keys").is_err());
        let none = OutboundPolicy::new(&[], &[]).unwrap();
        assert!(
            none.check_url(&Url::parse("https://10.1.2.3:8443/k").unwrap())
                .is_err()
        );
        let table: &[(&str, bool, bool, bool)] = &[
            // ip, opted in, private ok, admissible
            ("10.0.0.1", false, true, true),
            ("172.20.1.1", false, true, true),
            ("192.168.1.1", false, true, true),
            ("fd12::1", false, true, true),
            ("127.0.0.1", false, true, false),
            ("169.254.169.254", false, true, false),
            ("fe80::1", false, true, false),
            ("100.64.0.1", false, true, false),
            ("::ffff:10.0.0.1", false, true, false),
            ("10.0.0.1", false, false, false),
            ("8.8.8.8", false, false, true),
            ("127.0.0.1", true, false, true),
        ];
        for (ip, opted, private_ok, want) in table {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(admissible(ip, *opted, *private_ok), *want, "{ip}");
        }
    }

    #[test]
    fn address_classifier_table() {
        let table: &[(&str, bool)] = &[
            ("8.8.8.8", false),
            ("140.82.112.3", false),
            ("127.0.0.1", true),
            ("127.8.9.10", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.1.1", true),
            ("100.64.0.1", true),
            ("100.100.100.200", true),
            ("169.254.169.254", true),
            ("168.63.129.16", true),
            ("0.0.0.0", true),
            ("224.0.0.1", true),
            ("255.255.255.255", true),
            ("::1", true),
            ("::", true),
            ("fe80::1", true),
            ("fc00::1", true),
            ("fd00:ec2::254", true),
            ("ff02::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::a9fe:a9fe", true),
            ("2002:7f00:1::", true),
            ("2001:4860:4860::8888", false),
        ];
        for (ip, forbidden) in table {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_ip(parsed).is_some(), *forbidden, "{ip}");
        }
    }

    #[test]
    fn url_policy() {
        let p = OutboundPolicy::new(&["http://127.0.0.1:8443".to_owned()], &[]).unwrap();
        let ok = |u: &str| p.check_url(&Url::parse(u).unwrap());
        assert!(
            ok("https://token.actions.githubusercontent.com/.well-known/openid-configuration")
                .is_ok()
        );
        assert!(ok("http://127.0.0.1:8443/jwks").is_ok());
        assert!(ok("http://127.0.0.1:8444/jwks").is_err());
        assert!(ok("http://example.com/jwks").is_err());
        assert!(ok("https://127.0.0.1:8443/jwks").is_err());
        assert!(ok("https://169.254.169.254/latest/meta-data").is_err());
        assert!(ok("https://[::ffff:10.0.0.1]/jwks").is_err());
        assert!(ok("https://user:pw@example.com/jwks").is_err());
        assert!(ok("file:///etc/passwd").is_err());
    }
}
