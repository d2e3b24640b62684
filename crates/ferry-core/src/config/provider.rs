//! One trusted issuer: its kind and presets, where its keys come from, its verification
//! settings, and its compiled condition and mapping. The `github` preset's rules live in
//! `github.rs`.

use std::path::Path;

use super::raw::{RawCache, RawProvider};
use super::raw::{RawMapping, RawMappingValue};
use super::{
    ALLOWED_ALGORITHMS, ApiServer, CacheConfig, ConfigErrors, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY,
    DEFAULT_MAX_TOKEN_LIFETIME, KeysConfig, Outbound, Provider, ProviderKind, compile, duration,
    opt_duration, origin_of, valid_id,
};
use crate::expr::{Cel, Expr};
use crate::mapping::{CONDITION_VARS, Condition, MAPPING_VARS, MAX_ATTRIBUTES, Mapping};

const LEGACY_K8S_ISSUER: &str = "kubernetes/serviceaccount";

/// Whether a URL may be fetched: https, or an opted-in insecure origin.
fn fetchable(url: &str, outbound: &Outbound) -> bool {
    match origin_of(url) {
        Some(o) if o.starts_with("https://") => true,
        Some(o) => outbound.allow_insecure_origins.contains(&o),
        None => false,
    }
}

fn cache(errs: &mut ConfigErrors, path: &str, c: &RawCache) -> CacheConfig {
    let d = |errs: &mut ConfigErrors, name: &str, v: Option<&String>, def: u64| {
        duration(errs, &format!("{path}.cache.{name}"), v, def)
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
        if v == 0 {
            errs.push(format!("{path}.cache.{name}"), "must be greater than zero");
        }
    }
    out
}

fn kind_of(errs: &mut ConfigErrors, path: &str, p: &RawProvider) -> ProviderKind {
    match p.kind.as_deref() {
        Some("static") => ProviderKind::Static,
        Some("oidc") => ProviderKind::Oidc,
        Some("github") => ProviderKind::Github,
        Some("kubernetes") => ProviderKind::Kubernetes,
        Some("service_account") => ProviderKind::ServiceAccount,
        Some(_) => {
            errs.push(
                format!("{path}.kind"),
                "unknown kind (supported: oidc, github, kubernetes, static, service_account)",
            );
            ProviderKind::Static
        }
        // Without a kind: a JWKS given here means static, anything else OIDC.
        None => match &p.jwks {
            Some(j) if j.file.is_some() || j.inline.is_some() => ProviderKind::Static,
            _ => ProviderKind::Oidc,
        },
    }
}

#[allow(clippy::too_many_lines)]
pub(super) fn provider(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    cel: &Cel,
    path: &str,
    p: &RawProvider,
    base: &Path,
    outbound: &Outbound,
) -> Option<Provider> {
    let before = errs.0.len();
    let id = p.id.clone().unwrap_or_default();
    if !valid_id(&id) {
        errs.push(
            format!("{path}.id"),
            "is required: 1-64 characters of a-z, 0-9, '-' or '_'",
        );
    }
    // Names Ferry writes itself: `ferry` for a narrowed token, `service-account` for a
    // service account's own assertion. Another provider under them would pass for those.
    if id == "ferry" || (id == "service-account" && p.kind.as_deref() != Some("service_account")) {
        errs.push(
            format!("{path}.id"),
            "is reserved: 'ferry' always, 'service-account' for any kind but service_account",
        );
    }
    let kind = kind_of(errs, path, p);
    let github = kind == ProviderKind::Github;
    let unpinned = p.allow_unpinned.unwrap_or(false);
    if p.allow_unpinned.is_some() && !github {
        errs.push(
            format!("{path}.allow_unpinned"),
            "applies only to kind github",
        );
    }

    let service_account = kind == ProviderKind::ServiceAccount;
    if service_account && (p.issuer.is_some() || p.jwks.is_some() || p.audiences.is_some()) {
        errs.push(
            path,
            "a service_account provider takes no issuer, jwks or audiences: service accounts are registered under service_accounts",
        );
    }
    // Issuer.
    let issuer = match (&p.issuer, github) {
        _ if service_account => super::SERVICE_ACCOUNT_ISSUER.to_owned(),
        (Some(i), _) => i.clone(),
        (None, true) => super::GITHUB_ISSUER.to_owned(),
        (None, false) => String::new(),
    };
    if issuer.is_empty() {
        errs.push(format!("{path}.issuer"), "is required");
    } else if github && !super::github_issuer_shape_ok(&issuer) {
        errs.push(
            format!("{path}.issuer"),
            "is not a GitHub Actions issuer (https://token.actions.githubusercontent.com[/<enterprise>], \
             https://token.actions.<sub>.ghe.com or https://<host>/_services/token)",
        );
    } else if !github
        && (issuer == super::GITHUB_ISSUER
            || issuer.starts_with("https://token.actions.githubusercontent.com/"))
    {
        // Every GitHub user's workflows get tokens from this issuer: only the github
        // preset, which demands a pinned id and RS256, may trust it.
        errs.push(
            format!("{path}.kind"),
            "GitHub Actions' issuer is shared by every GitHub user: trust it with kind: github, \
             which requires a pinned repository_owner_id, repository_id or enterprise_id",
        );
    } else if issuer == LEGACY_K8S_ISSUER {
        errs.push(
            format!("{path}.issuer"),
            "legacy Kubernetes secret-based tokens (no exp, no aud) are never accepted; use projected tokens",
        );
    }

    // Audiences the subject token must carry.
    let audiences = p.audiences.clone().unwrap_or_default();
    if !service_account && (audiences.is_empty() || audiences.iter().any(String::is_empty)) {
        errs.push(format!("{path}.audiences"), "must not be empty");
    }
    if github
        && !unpinned
        && audiences
            .iter()
            .any(|a| a.starts_with("https://github.com/"))
    {
        errs.push(
            format!("{path}.audiences"),
            "must not include GitHub's default audience https://github.com/<owner>: \
             request a dedicated audience in the workflow (or set allow_unpinned: true)",
        );
    }

    // Algorithms.
    if github {
        super::github::algorithms(errs, path, p.algorithms.as_ref());
    }
    let default_algs: &[&str] = if github {
        &["RS256"]
    } else {
        DEFAULT_ALGORITHMS
    };
    let algorithms: Vec<String> = match &p.algorithms {
        None => default_algs.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            if list.is_empty() {
                errs.push(format!("{path}.algorithms"), "must not be empty");
            }
            for a in list {
                if !ALLOWED_ALGORITHMS.contains(&a.as_str()) {
                    errs.push(
                        format!("{path}.algorithms"),
                        format!(
                            "'{a}' is not allowed (allowed: {})",
                            ALLOWED_ALGORITHMS.join(", ")
                        ),
                    );
                }
            }
            list.clone()
        }
    };

    let accepted_types =
        super::typing::accepted_types(errs, path, p.accepted_types.as_ref(), service_account);

    // Kubernetes API server.
    let api_server = match (&p.api_server, kind) {
        (None, _) => None,
        (Some(_), k) if k != ProviderKind::Kubernetes => {
            errs.push(
                format!("{path}.api_server"),
                "applies only to kind kubernetes",
            );
            None
        }
        (Some(a), _) => {
            let url = a.url.clone().unwrap_or_default();
            if !fetchable(&url, outbound) {
                errs.push(
                    format!("{path}.api_server.url"),
                    "must be an https URL (or an origin listed in outbound.allow_insecure_origins)",
                );
            }
            Some(ApiServer {
                url: url.trim_end_matches('/').to_owned(),
                ca_file: a.ca_file.as_ref().map(|f| base.join(f)),
                token_file: a.token_file.as_ref().map(|f| base.join(f)),
            })
        }
    };

    // Where the keys come from (a service_account provider uses the registry's keys).
    let keys = if service_account {
        Some(KeysConfig::Inline("{\"keys\":[]}".to_owned()))
    } else {
        keys_config(
            errs,
            path,
            p,
            kind,
            &issuer,
            api_server.as_ref(),
            base,
            outbound,
        )
    };

    let cache = cache(errs, path, &p.cache);
    let leeway = duration(
        errs,
        &format!("{path}.leeway"),
        p.leeway.as_ref(),
        DEFAULT_LEEWAY,
    );
    if leeway > 300 {
        errs.push(format!("{path}.leeway"), "must be at most 5m");
    }
    let max_token_lifetime = duration(
        errs,
        &format!("{path}.max_token_lifetime"),
        p.max_token_lifetime.as_ref(),
        DEFAULT_MAX_TOKEN_LIFETIME,
    );
    let max_token_age = opt_duration(
        errs,
        &format!("{path}.max_token_age"),
        p.max_token_age.as_ref(),
    );

    // Condition and mapping.
    let condition = p.condition.as_ref().and_then(|c| {
        compile(errs, cel, &format!("{path}.condition"), c, CONDITION_VARS).map(|expr| Condition {
            expr,
            message: p.condition_message.clone(),
        })
    });
    if p.condition_message.is_some() && p.condition.is_none() {
        errs.push(
            format!("{path}.condition_message"),
            "given without a condition",
        );
    }
    if github {
        super::github::pinning(errs, warnings, path, &id, condition.as_ref(), unpinned);
    }
    let parts = mapping_parts(errs, warnings, cel, path, p.mapping.as_ref());
    let tenant_claim = super::tenant::tenant_claim(errs, path, kind, p.tenant_claim.as_deref());
    if errs.0.len() > before {
        return None;
    }
    Some(Provider {
        id,
        kind,
        issuer,
        audiences,
        algorithms,
        accepted_types,
        keys: keys?,
        cache,
        api_server,
        leeway,
        max_token_lifetime,
        max_token_age,
        // GitHub's tokens live about five minutes while jobs run longer: by default a
        // github provider does not cap issued tokens at the subject token's exp.
        cap_lifetime_at_subject_expiry: p.cap_lifetime_at_subject_expiry.unwrap_or(!github),
        tenant_claim,
        mapping: {
            let (subject, groups, attributes) = parts?;
            Mapping::new(
                cel.clone(),
                path.to_owned(),
                condition,
                subject,
                groups,
                attributes,
            )
        },
    })
}

#[allow(clippy::too_many_arguments)]
fn keys_config(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    kind: ProviderKind,
    issuer: &str,
    api_server: Option<&ApiServer>,
    base: &Path,
    outbound: &Outbound,
) -> Option<KeysConfig> {
    let https_hint =
        "must be an https URL (or an origin listed in outbound.allow_insecure_origins)";
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
        if !fetchable(&uri, outbound) {
            errs.push(format!("{path}.jwks.uri"), https_hint);
            return None;
        }
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
    let (url, at) = match (&p.discovery_url, api_server) {
        (Some(u), _) => (u.clone(), format!("{path}.discovery_url")),
        (None, Some(a)) => (
            format!("{}/.well-known/openid-configuration", a.url),
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
    if !fetchable(&url, outbound) {
        errs.push(at, format!("discovery {https_hint}"));
        return None;
    }
    Some(KeysConfig::Discovery(url))
}

type MappingParts = (Expr, Option<Expr>, Vec<(String, Expr)>);

/// Reads a mapping in Ferry's form (`subject`, `groups`, `attributes: {…}`) or Google's
/// (`google.subject`, `google.groups`, `attribute.NAME`), so an existing Google provider's
/// mapping ports unchanged.
fn mapping_parts(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    cel: &Cel,
    path: &str,
    m: Option<&RawMapping>,
) -> Option<MappingParts> {
    let before = errs.0.len();
    let mut subject_src: Option<(String, String)> = None;
    let mut groups_src: Option<(String, String)> = None;
    let mut attr_srcs: Vec<(String, String, String)> = Vec::new();
    let set =
        |slot: &mut Option<(String, String)>, errs: &mut ConfigErrors, at: String, src: &str| {
            if slot.is_some() {
                errs.push(
                    &at,
                    "given twice (subject/google.subject or groups/google.groups)",
                );
            }
            *slot = Some((at, src.to_owned()));
        };
    for (key, value) in m.into_iter().flatten() {
        let at = format!("{path}.mapping.{key}");
        match (key.as_str(), value) {
            ("subject" | "google.subject", RawMappingValue::Expr(src)) => set(&mut subject_src, errs, at, src),
            ("groups" | "google.groups", RawMappingValue::Expr(src)) => set(&mut groups_src, errs, at, src),
            ("attributes", RawMappingValue::Map(map)) => {
                for (name, src) in map {
                    attr_srcs.push((name.clone(), format!("{at}.{name}"), src.clone()));
                }
            }
            ("google.display_name" | "google.profile_photo", RawMappingValue::Expr(_)) => {
                warnings.push(format!("{at}: ignored (Ferry's tokens carry no display name or photo)"));
            }
            (k, RawMappingValue::Expr(src)) if k.starts_with("attribute.") => {
                let name = &k["attribute.".len()..];
                attr_srcs.push((name.to_owned(), at, src.clone()));
            }
            _ => errs.push(
                at,
                "unknown mapping key (use subject, groups, attributes, google.subject, google.groups or attribute.NAME)",
            ),
        }
    }
    if attr_srcs.len() > MAX_ATTRIBUTES {
        errs.push(
            format!("{path}.mapping"),
            format!("at most {MAX_ATTRIBUTES} attributes"),
        );
    }
    let (at, src) = subject_src.unwrap_or_else(|| {
        (
            format!("{path}.mapping.subject"),
            "assertion.sub".to_owned(),
        )
    });
    let subject = compile(errs, cel, &at, &src, MAPPING_VARS);
    let groups = groups_src.and_then(|(at, src)| compile(errs, cel, &at, &src, MAPPING_VARS));
    let mut attributes = Vec::new();
    for (name, at, src) in attr_srcs {
        if !valid_id(&name) {
            errs.push(&at, "attribute names use a-z, 0-9, '-' or '_'");
        }
        if attributes.iter().any(|(n, _): &(String, Expr)| *n == name) {
            errs.push(&at, "attribute defined twice");
        }
        if let Some(e) = compile(errs, cel, &at, &src, MAPPING_VARS) {
            attributes.push((name, e));
        }
    }
    if errs.0.len() > before {
        return None;
    }
    Some((subject?, groups, attributes))
}
