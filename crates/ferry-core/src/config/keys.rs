//! Where a provider's keys come from and how they are cached: a JWKS file or inline
//! set, a JWKS URL, or OIDC discovery (at the issuer, an explicit document URL, or a
//! Kubernetes API server). URLs are parsed here, once, and only fetchable ones kept.

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::durations::duration;
use super::errors::ConfigErrors;
use super::model::{ApiServer, CacheConfig, KeysConfig, Outbound, ProviderKind};
use super::origin::origin_of;
use super::raw::{RawCache, RawProvider};

const HTTPS_HINT: &str =
    "must be an https URL (or an origin listed in outbound.allow_insecure_origins)";

/// `url`, parsed, if it may be fetched: https, or an opted-in insecure origin.
pub(super) fn fetchable(url: &str, outbound: &Outbound) -> Option<Url> {
    let ok = match origin_of(url) {
        Some(o) if o.starts_with("https://") => true,
        Some(o) => outbound.allow_insecure_origins.contains(&o),
        None => false,
    };
    if ok { Url::parse(url).ok() } else { None }
}

pub(super) fn cache(errs: &mut ConfigErrors, path: &str, c: &RawCache) -> CacheConfig {
    let d = |errs: &mut ConfigErrors, name: &str, v: Option<&String>, def: u64| {
        Duration::from_secs(duration(errs, &format!("{path}.cache.{name}"), v, def))
    };
    let out = CacheConfig {
        min_ttl: d(errs, "min_ttl", c.min_ttl.as_ref(), 300),
        max_ttl: d(errs, "max_ttl", c.max_ttl.as_ref(), 86_400),
        default_ttl: d(errs, "default_ttl", c.default_ttl.as_ref(), 3_600),
        refetch_interval: d(errs, "refetch_interval", c.refetch_interval.as_ref(), 300),
        max_staleness: d(errs, "max_staleness", c.max_staleness.as_ref(), 86_400),
        error_ttl: d(errs, "error_ttl", c.error_ttl.as_ref(), 30),
    };
    if out.min_ttl > out.max_ttl {
        errs.push(
            format!("{path}.cache.min_ttl"),
            "must not exceed cache.max_ttl",
        );
    }
    for (name, v) in [
        ("refetch_interval", out.refetch_interval),
        // Without it, a failing issuer would be asked again by every request.
        ("error_ttl", out.error_ttl),
    ] {
        if v.is_zero() {
            errs.push(format!("{path}.cache.{name}"), "must be greater than zero");
        }
    }
    out
}

/// Where a provider's keys come from, and its Kubernetes API server if any. A
/// `service_account` provider uses the registry's keys (an empty set here).
pub(super) fn keys(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    kind: ProviderKind,
    issuer: &str,
    base: &Path,
    outbound: &Outbound,
) -> (Option<KeysConfig>, Option<ApiServer>) {
    let (api_server, api_server_url) = api_server(errs, path, p, kind, base, outbound);
    let keys = if kind == ProviderKind::ServiceAccount {
        Some(KeysConfig::Inline("{\"keys\":[]}".to_owned()))
    } else {
        keys_config(
            errs,
            path,
            p,
            kind,
            issuer,
            api_server_url.as_deref(),
            base,
            outbound,
        )
    };
    (keys, api_server)
}

/// A Kubernetes provider's API server, and its URL as written (without a trailing
/// `/`) for the discovery document's address.
fn api_server(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    kind: ProviderKind,
    base: &Path,
    outbound: &Outbound,
) -> (Option<ApiServer>, Option<String>) {
    let a = match (&p.api_server, kind) {
        (None, _) => return (None, None),
        (Some(_), k) if k != ProviderKind::Kubernetes => {
            errs.push(
                format!("{path}.api_server"),
                "applies only to kind kubernetes",
            );
            return (None, None);
        }
        (Some(a), _) => a,
    };
    let url = a.url.clone().unwrap_or_default();
    if fetchable(&url, outbound).is_none() {
        errs.push(format!("{path}.api_server.url"), HTTPS_HINT);
    }
    let written = url.trim_end_matches('/').to_owned();
    let mut jwks_origins = Vec::new();
    for (i, o) in a.jwks_origins.iter().flatten().enumerate() {
        match fetchable(o, outbound).and_then(|u| origin_of(u.as_str()).filter(|_| u.path() == "/"))
        {
            Some(origin) => jwks_origins.push(origin),
            None => errs.push(
                format!("{path}.api_server.jwks_origins[{i}]"),
                "must be an https origin (scheme://host:port, no path)",
            ),
        }
    }
    let server = Url::parse(&written).ok().map(|url| ApiServer {
        url,
        ca_file: a.ca_file.as_ref().map(|f| base.join(f)),
        token_file: a.token_file.as_ref().map(|f| base.join(f)),
        jwks_origins,
    });
    (server, Some(written))
}

#[allow(clippy::too_many_arguments)]
fn keys_config(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    kind: ProviderKind,
    issuer: &str,
    api_server_url: Option<&str>,
    base: &Path,
    outbound: &Outbound,
) -> Option<KeysConfig> {
    if let Some(j) = &p.jwks {
        let given = [j.file.is_some(), j.inline.is_some(), j.uri.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            errs.push(
                format!("{path}.jwks"),
                "give exactly one of file, inline or uri",
            );
            return None;
        }
        if p.discovery_url.is_some() {
            errs.push(
                format!("{path}.discovery_url"),
                "give either jwks or discovery_url",
            );
        }
        if let Some(f) = &j.file {
            return Some(KeysConfig::File(base.join(f)));
        }
        if let Some(v) = &j.inline {
            return Some(KeysConfig::Inline(v.to_string()));
        }
        let uri = j.uri.clone().unwrap_or_default();
        if kind == ProviderKind::Static {
            errs.push(
                format!("{path}.jwks.uri"),
                "a static provider takes file or inline; use kind oidc for a URL",
            );
            return None;
        }
        let Some(uri) = fetchable(&uri, outbound) else {
            errs.push(format!("{path}.jwks.uri"), HTTPS_HINT);
            return None;
        };
        return Some(KeysConfig::Uri(uri));
    }
    if kind == ProviderKind::Static {
        errs.push(
            format!("{path}.jwks"),
            "is required for a static provider (file or inline)",
        );
        return None;
    }
    // Discovery: an explicit document URL, the API server's, or the issuer's own.
    let (url, at) = match (&p.discovery_url, api_server_url) {
        (Some(u), _) => (u.clone(), format!("{path}.discovery_url")),
        (None, Some(a)) => (
            format!("{a}/.well-known/openid-configuration"),
            format!("{path}.api_server.url"),
        ),
        (None, None) => (
            format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            format!("{path}.issuer"),
        ),
    };
    if issuer.is_empty() {
        return None;
    }
    let Some(url) = fetchable(&url, outbound) else {
        errs.push(at, format!("discovery {HTTPS_HINT}"));
        return None;
    };
    Some(KeysConfig::Discovery(url))
}

/// `ca_file` and `allow_private_network` apply only to keys fetched over the network.
pub(super) fn network_options(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    keys: Option<&KeysConfig>,
) {
    let fetched = matches!(
        keys,
        Some(KeysConfig::Uri(_) | KeysConfig::Discovery(_) | KeysConfig::SamlMetadataUrl(_))
    );
    for (set, member) in [
        (p.ca_file.is_some(), "ca_file"),
        (
            p.allow_private_network == Some(true),
            "allow_private_network",
        ),
    ] {
        if set && !fetched {
            errs.push(
                format!("{path}.{member}"),
                "applies only to keys fetched over the network (jwks.uri, discovery or metadata.url)",
            );
        }
    }
}
