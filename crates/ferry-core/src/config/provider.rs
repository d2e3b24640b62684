//! One trusted issuer: its kind and presets, where its keys come from, its verification
//! settings, and its compiled condition and mapping. The `github` preset's rules live in
//! `github.rs`.

use std::path::Path;
use std::time::Duration;

use super::durations::{duration, opt_duration};
use super::errors::ConfigErrors;
use super::fields::{compile, valid_id};
use super::model::{
    ALLOWED_ALGORITHMS, ApiServer, CacheConfig, DEFAULT_ALGORITHMS, DEFAULT_LEEWAY,
    DEFAULT_MAX_TOKEN_LIFETIME, KeysConfig, Outbound, ProviderKind,
};
use super::raw::RawProvider;
use super::raw::{RawMapping, RawMappingValue};
use super::tenant::TenantClaim;
use crate::expr::{Cel, Expr};
use crate::mapping::{CONDITION_VARS, Condition, MAPPING_VARS, MAX_ATTRIBUTES, Mapping};
use ferry_token::Algorithm;

/// A trusted external issuer.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Unique id, used in policies and audit events.
    pub id: String,
    /// Kind.
    pub kind: ProviderKind,
    /// The exact `iss` it matches.
    pub issuer: String,
    /// `aud` values a subject token must carry one of.
    pub audiences: Vec<String>,
    /// Allowed signature algorithms.
    pub algorithms: Vec<Algorithm>,
    /// `typ` values accepted besides `JWT` (or none), RFC 8725 §3.11.
    pub accepted_types: Vec<String>,
    /// Where the keys come from.
    pub keys: KeysConfig,
    /// Cache timing for remote keys.
    pub cache: CacheConfig,
    /// The Kubernetes API server, for `kubernetes` discovery.
    pub api_server: Option<ApiServer>,
    /// A PEM bundle trusted for this provider's key fetches only (besides the system's).
    pub ca_file: Option<std::path::PathBuf>,
    /// Whether this provider's exact key origins may resolve to private addresses
    /// (RFC 1918, unique local); loopback, link-local and metadata ranges stay refused.
    pub allow_private_network: bool,
    /// Clock leeway.
    pub leeway: Duration,
    /// Longest accepted `exp - iat`.
    pub max_token_lifetime: Duration,
    /// Oldest accepted `iat`; `None` for no limit.
    pub max_token_age: Option<Duration>,
    /// Whether issued tokens end no later than the subject token.
    pub cap_lifetime_at_subject_expiry: bool,
    /// Condition and mapping.
    pub mapping: Mapping,
    /// Whose a token is, for the bucket of tokens the condition refuses.
    pub tenant_claim: TenantClaim,
    /// A SAML provider's own settings.
    pub saml: Option<super::saml::SamlSettings>,
    /// An x509 provider's own settings.
    pub x509: Option<super::x509::X509Settings>,
}

const LEGACY_K8S_ISSUER: &str = "kubernetes/serviceaccount";

/// The exact `iss` a provider matches: GitHub's by default for `github`, the internal
/// one for `service_account`; never GitHub's shared issuer outside the github preset,
/// never legacy Kubernetes tokens.
fn issuer(errs: &mut ConfigErrors, path: &str, p: &RawProvider, kind: ProviderKind) -> String {
    let github = kind == ProviderKind::Github;
    let service_account = kind == ProviderKind::ServiceAccount;
    let issuer = match (&p.issuer, github) {
        _ if service_account => super::model::SERVICE_ACCOUNT_ISSUER.to_owned(),
        _ if kind == ProviderKind::Saml => return super::saml::entity_id(errs, path, p),
        _ if kind == ProviderKind::X509 => {
            return super::x509::x509_issuer(p.id.as_deref().unwrap_or_default());
        }
        (Some(i), _) => i.clone(),
        (None, true) => super::github::GITHUB_ISSUER.to_owned(),
        (None, false) => String::new(),
    };
    if issuer.is_empty() {
        errs.push(format!("{path}.issuer"), "is required");
    } else if github && !super::github::github_issuer_shape_ok(&issuer) {
        errs.push(
            format!("{path}.issuer"),
            "is not a GitHub Actions issuer (https://token.actions.githubusercontent.com[/<enterprise>], \
             https://token.actions.<sub>.ghe.com or https://<host>/_services/token)",
        );
    } else if !github
        && (issuer == super::github::GITHUB_ISSUER
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

    issuer
}

/// The audiences a subject token must carry one of.
fn audiences(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    kind: ProviderKind,
    unpinned: bool,
) -> Vec<String> {
    let github = kind == ProviderKind::Github;
    let service_account = kind == ProviderKind::ServiceAccount;
    let audiences = p.audiences.clone().unwrap_or_default();
    let none = service_account || kind == ProviderKind::X509;
    if !none && (audiences.is_empty() || audiences.iter().any(String::is_empty)) {
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

    audiences
}

/// The condition a subject token must meet, and the message a denial shows.
fn condition(errs: &mut ConfigErrors, cel: &Cel, path: &str, p: &RawProvider) -> Option<Condition> {
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
    condition
}

/// The `alg` allowlist: RS256 and ES256 by default, RS256 alone for `github`.
fn algorithms(
    errs: &mut ConfigErrors,
    path: &str,
    p: &RawProvider,
    github: bool,
) -> Vec<Algorithm> {
    if github {
        super::github::algorithms(errs, path, p.algorithms.as_ref());
    }
    let Some(list) = &p.algorithms else {
        return if github {
            vec![Algorithm::RS256]
        } else {
            DEFAULT_ALGORITHMS.to_vec()
        };
    };
    if list.is_empty() {
        errs.push(format!("{path}.algorithms"), "must not be empty");
    }
    let mut out = Vec::new();
    for a in list {
        match Algorithm::from_name(a) {
            Some(alg) => out.push(alg),
            None => errs.push(
                format!("{path}.algorithms"),
                format!(
                    "'{a}' is not allowed (allowed: {})",
                    ALLOWED_ALGORITHMS.join(", ")
                ),
            ),
        }
    }
    out
}

/// The subject token's time checks.
struct Times {
    leeway: Duration,
    max_token_lifetime: Duration,
    max_token_age: Option<Duration>,
}

fn times(errs: &mut ConfigErrors, path: &str, p: &RawProvider) -> Times {
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
    Times {
        leeway: Duration::from_secs(leeway),
        max_token_lifetime: Duration::from_secs(max_token_lifetime),
        max_token_age: max_token_age.map(Duration::from_secs),
    }
}

fn kind_of(errs: &mut ConfigErrors, path: &str, p: &RawProvider) -> ProviderKind {
    match p.kind.as_deref() {
        Some("static") => ProviderKind::Static,
        Some("oidc") => ProviderKind::Oidc,
        Some("github") => ProviderKind::Github,
        Some("kubernetes") => ProviderKind::Kubernetes,
        Some("service_account") => ProviderKind::ServiceAccount,
        Some("saml") => ProviderKind::Saml,
        Some("x509") => ProviderKind::X509,
        Some(_) => {
            errs.push(
                format!("{path}.kind"),
                "unknown kind (supported: oidc, github, kubernetes, static, service_account, saml, x509)",
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

/// Members that only some kinds take.
fn kind_members(errs: &mut ConfigErrors, path: &str, p: &RawProvider, kind: ProviderKind) {
    super::saml::members(errs, path, p, kind);
    super::x509::members(errs, path, p, kind);
    if p.allow_unpinned.is_some() && kind != ProviderKind::Github {
        errs.push(
            format!("{path}.allow_unpinned"),
            "applies only to kind github",
        );
    }
    if kind == ProviderKind::ServiceAccount
        && (p.issuer.is_some() || p.jwks.is_some() || p.audiences.is_some())
    {
        errs.push(
            path,
            "a service_account provider takes no issuer, jwks or audiences: service accounts are registered under service_accounts",
        );
    }
}

/// The provider's id: valid, and not one of the names Ferry writes itself.
fn provider_id(errs: &mut ConfigErrors, path: &str, p: &RawProvider) -> String {
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
    id
}

#[allow(
    clippy::too_many_arguments,
    reason = "the provider's section and what it is read against"
)]
pub(super) fn provider(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    cel: &Cel,
    path: &str,
    p: &RawProvider,
    base: &Path,
    outbound: &Outbound,
    ferry_issuer: &str,
) -> Option<Provider> {
    let before = errs.0.len();
    let id = provider_id(errs, path, p);
    let kind = kind_of(errs, path, p);
    let saml = kind == ProviderKind::Saml;
    let github = kind == ProviderKind::Github;
    let unpinned = p.allow_unpinned.unwrap_or(false);
    let service_account = kind == ProviderKind::ServiceAccount;
    kind_members(errs, path, p, kind);
    let issuer = issuer(errs, path, p, kind);
    let audiences = audiences(errs, path, p, kind, unpinned);
    let algorithms = algorithms(errs, path, p, github);

    let accepted_types =
        super::typing::accepted_types(errs, path, p.accepted_types.as_ref(), service_account);

    let x509 = kind == ProviderKind::X509;
    let (keys, api_server) = if saml {
        (super::saml::keys(errs, path, p, base, outbound), None)
    } else if x509 {
        (super::x509::keys(errs, path, p, base), None)
    } else {
        super::keys::keys(errs, path, p, kind, &issuer, base, outbound)
    };
    super::keys::network_options(errs, path, p, keys.as_ref());
    let cache = super::keys::cache(errs, path, &p.cache);
    let t = times(errs, path, p);

    // Condition and mapping.
    let condition = condition(errs, cel, path, p);
    if github {
        super::github::pinning(errs, warnings, path, &id, condition.as_ref(), unpinned);
    }
    let default_subject = match kind {
        ProviderKind::Saml => "assertion.subject",
        ProviderKind::X509 => super::x509::X509_DEFAULT_SUBJECT,
        _ => "assertion.sub",
    };
    let parts = mapping_parts(
        errs,
        warnings,
        cel,
        path,
        p.mapping.as_ref(),
        default_subject,
    );
    let saml_settings = saml.then(|| super::saml::settings(errs, path, p, ferry_issuer));
    let x509_settings = x509.then(|| super::x509::settings(errs, path, p));
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
        ca_file: p.ca_file.as_ref().map(|f| base.join(f)),
        allow_private_network: p.allow_private_network.unwrap_or(false),
        leeway: t.leeway,
        max_token_lifetime: t.max_token_lifetime,
        max_token_age: t.max_token_age,
        // GitHub's tokens live about five minutes while jobs run longer, and a SAML
        // assertion's window is for presenting it: by default neither caps issued tokens
        // at the subject token's expiry.
        cap_lifetime_at_subject_expiry: p
            .cap_lifetime_at_subject_expiry
            .unwrap_or(!github && !saml),
        saml: saml_settings,
        x509: x509_settings,
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
    default_subject: &str,
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
            default_subject.to_owned(),
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
