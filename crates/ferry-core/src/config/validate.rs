//! Validation, one section at a time (issuer, token lifetimes, outbound HTTP,
//! providers, audiences, service accounts and clients, replay, signing, revocation),
//! every problem collected with its path before anything fails.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::origin::{is_loopback_http, origin_of_display};
use super::raw::RawTokens;
use super::raw::{RawConfig, RawOutbound, RawProvider, RawReplay};
use super::{
    Client, Config, ConfigErrors, Outbound, Provider, RedisReplay, ServiceAccount, audience,
    clients, duration, ops, origin_of, provider, revocation, signing,
};
use crate::expr::Cel;
use crate::mint::Lifetimes;
use crate::policy::{Audience, Policy};

/// Ferry's own issuer: an https URL (http only on loopback), no trailing `/`, no query
/// or fragment.
fn issuer(errs: &mut ConfigErrors, raw: Option<&String>) -> String {
    let issuer = raw.cloned().unwrap_or_default();
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
fn lifetimes(errs: &mut ConfigErrors, t: &RawTokens) -> Lifetimes {
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

/// `outbound`: plain-http opt-ins (exact origins) and the client's limits.
fn outbound(errs: &mut ConfigErrors, warnings: &mut Vec<String>, o: &RawOutbound) -> Outbound {
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
    }
}

/// The sections a provider is checked against.
struct Context<'a> {
    cel: &'a Cel,
    base: &'a Path,
    outbound: &'a Outbound,
    /// Ferry's own issuer, which no provider may claim.
    issuer: &'a str,
    expose: bool,
}

/// `providers`: at least one; ids and issuers unique, none Ferry's own.
fn providers(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    raw: &[RawProvider],
    cx: &Context<'_>,
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
        let Some(mut p) =
            provider::provider(errs, warnings, cx.cel, &path, p, cx.base, cx.outbound)
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
        if p.issuer == cx.issuer {
            errs.push(format!("{path}.issuer"), "must not be Ferry's own issuer");
        }
        p.mapping.expose_messages = cx.expose;
        providers.push(p);
    }
    providers
}

/// `audiences`: at least one, each named once.
fn audiences(errs: &mut ConfigErrors, raw: &RawConfig, cel: &Cel, max_ttl: u64) -> Vec<Audience> {
    if raw.audiences.is_empty() {
        errs.push(
            "audiences",
            "must not be empty: Ferry issues tokens only for configured audiences",
        );
    }
    let mut names = HashSet::new();
    let mut audiences = Vec::new();
    for (i, a) in raw.audiences.iter().enumerate() {
        let path = format!("audiences[{i}]");
        if let Some(a) = audience::audience(errs, cel, &path, a, max_ttl) {
            if !names.insert(a.name.clone()) {
                errs.push(format!("{path}.audience"), "duplicate audience");
            }
            audiences.push(a);
        }
    }
    audiences
}

/// `service_accounts` and `clients`: each id registered once across both, and no
/// service account named like a provider's issuer.
fn accounts(
    errs: &mut ConfigErrors,
    raw: &RawConfig,
    cx: &Context<'_>,
    providers: &[Provider],
    audiences: &[Audience],
) -> (Vec<ServiceAccount>, Vec<Client>) {
    let service_accounts =
        clients::service_accounts(errs, &raw.service_accounts, cx.base, cx.outbound);
    let clients = clients::clients(errs, &raw.clients, cx.base, cx.outbound);
    audience::check_client_ids(errs, audiences, &raw.clients);
    for sa in &service_accounts {
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
    (service_accounts, clients)
}

/// `replay.redis`: the shared replay cache, if any.
fn replay(errs: &mut ConfigErrors, raw: Option<&RawReplay>) -> Option<RedisReplay> {
    let r = raw?;
    let url = r.redis.as_deref()?;
    match RedisReplay::parse(url) {
        Ok(mut c) => {
            c.fail_open = r.fail_open.unwrap_or(false);
            c.timeout_ms = duration(errs, "replay.timeout", r.timeout.as_ref(), 1) * 1000;
            Some(c)
        }
        Err(e) => {
            errs.push("replay.redis", e.to_string());
            None
        }
    }
}

/// Validates every section of `raw`; `base` resolves relative paths.
pub(super) fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
    let mut errs = ConfigErrors::default();
    let mut warnings = Vec::new();
    let cel = Cel::new();
    let expose = raw.expose_denial_messages.unwrap_or(false);

    let issuer = issuer(&mut errs, raw.issuer.as_ref());
    let lifetimes = lifetimes(&mut errs, &raw.tokens);
    let limits = ops::limits(&mut errs, &raw.limits);
    let max_body_bytes = limits.max_body_bytes;
    let tls = raw
        .tls
        .as_ref()
        .and_then(|t| ops::tls(&mut errs, "tls", t, base));
    let admin = ops::admin(&mut errs, &raw.admin, base);
    let audit = ops::audit(&raw.audit, base);
    let outbound = outbound(&mut errs, &mut warnings, &raw.outbound);
    let cx = Context {
        cel: &cel,
        base,
        outbound: &outbound,
        issuer: &issuer,
        expose,
    };
    let providers = providers(&mut errs, &mut warnings, &raw.providers, &cx);
    let audiences = audiences(&mut errs, &raw, &cel, lifetimes.max_ttl);
    let (service_accounts, clients) = accounts(&mut errs, &raw, &cx, &providers, &audiences);
    let max_replay_entries = raw.max_replay_entries.unwrap_or(100_000);
    let replay_redis = replay(&mut errs, raw.replay.as_ref());
    let dpop = ops::dpop(&mut errs, &raw.dpop, &issuer);
    let data_dir = base.join(
        raw.data_dir
            .clone()
            .unwrap_or_else(|| "ferry-data".to_owned()),
    );
    let signing = signing::signing(
        &mut errs,
        &mut warnings,
        &raw.signing,
        &data_dir,
        base,
        lifetimes.max_ttl,
    );
    let revocation = revocation::revocation(
        &mut errs,
        raw.revocation.as_ref(),
        signing.postgres.as_ref(),
        base,
    );

    if !errs.0.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        issuer,
        listen: raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
        data_dir,
        log_level: raw.log_level.unwrap_or_else(|| "info".to_owned()),
        lifetimes,
        max_body_bytes,
        outbound,
        providers,
        audience_names: audiences.iter().map(|a| a.name.clone()).collect(),
        policy: Policy::new(cel, audiences, expose),
        signing,
        limits,
        tls,
        admin,
        audit,
        service_accounts,
        clients,
        max_replay_entries,
        replay_redis,
        revocation,
        dpop,
        warnings,
    })
}
