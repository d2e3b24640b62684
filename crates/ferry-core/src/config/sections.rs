//! The top-level sections without a module of their own (`issuer`, `tokens`,
//! `outbound`), the list of providers with its uniqueness checks, the checks across
//! service accounts, clients and providers, and where Ferry keeps its state.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::clients::{Client, ServiceAccount};
use super::durations::duration;
use super::errors::ConfigErrors;
use super::model::Outbound;
use super::origin::origin_of;
use super::origin::{is_loopback_http, origin_of_display};
use super::provider;
use super::provider::Provider;
use super::raw::{RawConfig, RawOutbound, RawProvider, RawTokens};
use super::revocation;
use super::revocation::RevocationStore;
use super::signing;
use super::signing::Signing;
use crate::expr::Cel;
use crate::mint::Lifetimes;

/// `issuer`: Ferry's public base URL.
pub(super) fn issuer(errs: &mut ConfigErrors, raw: Option<&str>) -> String {
    let issuer = raw.unwrap_or_default().to_owned();
    if issuer.is_empty() {
        errs.push(
            "issuer",
            "is required (Ferry's public base URL, e.g. https://sts.example.com)",
        );
    } else if !(issuer.starts_with("https://") || is_loopback_http(&issuer)) {
        errs.push(
            "issuer",
            "must be an https URL (http is allowed only for 127.0.0.1, localhost or [::1])",
        );
    } else if issuer.ends_with('/') || issuer.contains(['?', '#']) {
        errs.push(
            "issuer",
            "must not end with '/' or carry a query or fragment",
        );
    }
    issuer
}

/// `tokens`: the lifetimes of issued tokens.
pub(super) fn lifetimes(errs: &mut ConfigErrors, t: &RawTokens) -> Lifetimes {
    let lifetimes = Lifetimes {
        default_ttl: duration(errs, "tokens.default_ttl", t.default_ttl.as_ref(), 900),
        max_ttl: duration(errs, "tokens.max_ttl", t.max_ttl.as_ref(), 3_600),
        min_ttl: duration(errs, "tokens.min_ttl", t.min_ttl.as_ref(), 60),
    };
    if lifetimes.min_ttl == 0 {
        errs.push("tokens.min_ttl", "must be greater than zero");
    }
    if lifetimes.min_ttl > lifetimes.max_ttl {
        errs.push("tokens.min_ttl", "must not exceed tokens.max_ttl");
    }
    if lifetimes.default_ttl > lifetimes.max_ttl {
        errs.push("tokens.default_ttl", "must not exceed tokens.max_ttl");
    }
    lifetimes
}

/// `outbound`: how Ferry fetches discovery documents and key sets.
pub(super) fn outbound(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    o: &RawOutbound,
) -> Outbound {
    let mut insecure = Vec::new();
    for (i, origin) in o.allow_insecure_origins.iter().enumerate() {
        match origin_of(origin) {
            Some(norm) if origin.trim_end_matches('/') == origin_of_display(origin) => {
                insecure.push(norm)
            }
            _ => errs.push(
                format!("outbound.allow_insecure_origins[{i}]"),
                "must be an exact origin such as http://127.0.0.1:8443 (no path)",
            ),
        }
    }
    if !insecure.is_empty() {
        warnings.push(format!(
            "outbound.allow_insecure_origins: plain http allowed for {}: for development and tests only",
            insecure.join(", ")
        ));
    }
    Outbound {
        allow_insecure_origins: insecure,
        connect_timeout: Duration::from_secs(duration(
            errs,
            "outbound.connect_timeout",
            o.connect_timeout.as_ref(),
            2,
        )),
        timeout: Duration::from_secs(duration(errs, "outbound.timeout", o.timeout.as_ref(), 5)),
        max_response_bytes: o.max_response_bytes.unwrap_or(1024 * 1024),
        proxy: proxy(errs, o.proxy.as_deref()),
    }
}

/// `outbound.proxy`: an http(s) origin, no path, no credentials.
fn proxy(errs: &mut ConfigErrors, raw: Option<&str>) -> Option<url::Url> {
    let raw = raw?;
    match url::Url::parse(raw) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Some(u)
        }
        _ => {
            errs.push(
                "outbound.proxy",
                "must be a proxy origin such as http://proxy.internal:3128 (no path, no credentials)",
            );
            None
        }
    }
}

/// `providers`: at least one, each with its own id and issuer, none of them Ferry's.
pub(super) fn providers(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    cel: &Cel,
    raw: &[RawProvider],
    base: &Path,
    outbound: &Outbound,
    issuer: &str,
) -> Vec<Provider> {
    if raw.is_empty() {
        errs.push(
            "providers",
            "must not be empty: Ferry needs at least one trusted issuer",
        );
    }
    let mut providers = Vec::new();
    let mut ids = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, p) in raw.iter().enumerate() {
        let path = format!("providers[{i}]");
        let Some(p) = provider::provider(errs, warnings, cel, &path, p, base, outbound, issuer)
        else {
            continue;
        };
        if !ids.insert(p.id.clone()) {
            errs.push(format!("{path}.id"), "duplicate provider id");
        }
        if !issuers.insert(p.issuer.clone()) {
            errs.push(
                format!("{path}.issuer"),
                "another provider has the same issuer",
            );
        }
        if p.issuer == issuer {
            errs.push(format!("{path}.issuer"), "must not be Ferry's own issuer");
        }
        providers.push(p);
    }
    providers
}

/// A service account's id is neither a client's id nor a provider's issuer.
pub(super) fn check_service_accounts(
    errs: &mut ConfigErrors,
    service_accounts: &[ServiceAccount],
    clients: &[Client],
    providers: &[Provider],
) {
    for sa in service_accounts {
        if clients.iter().any(|c| c.id == sa.id) {
            errs.push("clients", format!("client id {:?} is also a service account: client and service-account keys are registered separately", sa.id));
        }
        if providers.iter().any(|p| p.issuer == sa.id) {
            errs.push(
                "service_accounts",
                format!("{:?} is also a provider's issuer", sa.id),
            );
        }
    }
}

/// `data_dir`, `signing` and `revocation`: where Ferry keeps its state.
pub(super) fn storage(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    raw: &RawConfig,
    base: &Path,
    max_token_ttl: u64,
) -> (PathBuf, Signing, RevocationStore) {
    let data_dir = base.join(
        raw.data_dir
            .clone()
            .unwrap_or_else(|| "ferry-data".to_owned()),
    );
    let signing = signing::signing(errs, warnings, &raw.signing, &data_dir, base, max_token_ttl);
    let revocation = revocation::revocation(
        errs,
        raw.revocation.as_ref(),
        signing.postgres.as_ref(),
        base,
    );
    (data_dir, signing, revocation)
}
