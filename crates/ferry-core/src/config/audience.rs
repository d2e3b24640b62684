//! An audience (a relying service) and its ordered access rules.

use std::collections::HashSet;

use super::durations::opt_duration;
use super::errors::ConfigErrors;
use super::fields::{compile, valid_id};
use super::raw::{RawAudience, RawClient};
use crate::custom_claims::{CLAIM_VARS, ClaimTemplate, MAX_CLAIMS, name_problem, source_problem};
use crate::expr::Cel;
use crate::policy::{Audience, Effect, POLICY_VARS, Rule};

/// `audiences`: at least one, each named once.
pub(super) fn audiences(
    errs: &mut ConfigErrors,
    cel: &Cel,
    raw: &[RawAudience],
    max_ttl: u64,
) -> Vec<Audience> {
    if raw.is_empty() {
        errs.push(
            "audiences",
            "must not be empty: Ferry issues tokens only for configured audiences",
        );
    }
    let mut names = HashSet::new();
    let mut audiences = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let path = format!("audiences[{i}]");
        if let Some(a) = audience(errs, cel, &path, a, max_ttl) {
            if !names.insert(a.name.clone()) {
                errs.push(format!("{path}.audience"), "duplicate audience");
            }
            audiences.push(a);
        }
    }
    audiences
}

fn audience(
    errs: &mut ConfigErrors,
    cel: &Cel,
    path: &str,
    a: &RawAudience,
    max_ttl: u64,
) -> Option<Audience> {
    let before = errs.0.len();
    let name = a.audience.clone().unwrap_or_default();
    if name.is_empty() {
        errs.push(format!("{path}.audience"), "is required");
    }
    let default_ttl = opt_duration(errs, &format!("{path}.default_ttl"), a.default_ttl.as_ref());
    if default_ttl.is_some_and(|t| t > max_ttl) {
        errs.push(
            format!("{path}.default_ttl"),
            "must not exceed tokens.max_ttl",
        );
    }
    if a.rules.is_empty() {
        errs.push(
            format!("{path}.rules"),
            "must not be empty: with no rule nobody gets this audience",
        );
    }
    let mut rules = Vec::new();
    for (j, r) in a.rules.iter().enumerate() {
        let mut rpath = format!("{path}.rules[{j}]");
        let (effect, src, at) = match (&r.allow, &r.deny) {
            (Some(s), None) => (Effect::Allow, s, "allow"),
            (None, Some(s)) => (Effect::Deny, s, "deny"),
            _ => {
                errs.push(&rpath, "give exactly one of allow or deny");
                continue;
            }
        };
        let expr = compile(errs, cel, &format!("{rpath}.{at}"), src, POLICY_VARS);
        for s in &r.scopes {
            if crate::request::parse_scope(s)
                .map(|v| v.len() != 1)
                .unwrap_or(true)
            {
                errs.push(
                    format!("{rpath}.scopes"),
                    "each scope is one token of printable ASCII without spaces or quotes",
                );
            }
        }
        if effect == Effect::Deny && (!r.scopes.is_empty() || r.max_ttl.is_some()) {
            errs.push(&rpath, "a deny rule grants nothing: no scopes or max_ttl");
        }
        let max = opt_duration(errs, &format!("{rpath}.max_ttl"), r.max_ttl.as_ref());
        if let Some(n) = &r.name {
            if !valid_id(n) {
                errs.push(
                    format!("{rpath}.name"),
                    "rule names use a-z, 0-9, '-' or '_'",
                );
            }
            rpath = format!("{rpath} ({n})");
        }
        if let Some(expr) = expr {
            rules.push(Rule {
                path: rpath,
                effect,
                expr,
                scopes: r.scopes.clone(),
                max_ttl: max,
                message: r.message.clone(),
                require_dpop: r.require_dpop.unwrap_or(false),
            });
        }
    }
    let claims = claim_templates(errs, cel, path, a);
    (errs.0.len() == before).then_some(Audience {
        name,
        default_ttl,
        rules,
        ignore_unknown_scopes: a.ignore_unknown_scopes.unwrap_or(false),
        message: a.message.clone(),
        require_dpop: a.require_dpop.unwrap_or(false),
        require_mtls: a.require_mtls.unwrap_or(false),
        claims,
    })
}

/// `audiences[].claims`: each name allowed ([`name_problem`]), each expression compiled
/// over [`CLAIM_VARS`] and reading neither requested scopes nor audiences, at most
/// [`MAX_CLAIMS`].
fn claim_templates(
    errs: &mut ConfigErrors,
    cel: &Cel,
    path: &str,
    a: &RawAudience,
) -> Vec<ClaimTemplate> {
    if a.claims.len() > MAX_CLAIMS {
        errs.push(
            format!("{path}.claims"),
            format!("at most {MAX_CLAIMS} claims per audience"),
        );
    }
    let mut out = Vec::new();
    for (name, src) in &a.claims {
        let cpath = format!("{path}.claims.{name}");
        if let Some(problem) = name_problem(name) {
            errs.push(&cpath, problem);
            continue;
        }
        if let Some(problem) = source_problem(src) {
            errs.push(&cpath, problem);
            continue;
        }
        if let Some(expr) = compile(errs, cel, &cpath, src, CLAIM_VARS) {
            out.push(ClaimTemplate {
                name: name.clone(),
                path: cpath,
                expr,
            });
        }
    }
    out
}

/// A rule that compares `client_id` with a label is only as strong as the label: a
/// public client's `client_id`, or an unregistered one, is whatever the caller sends
/// (RFC 6749 §2.1). Such a comparison must name a registered confidential client, whose
/// `client_id` in a policy is the authenticated one. Read from the clients as written,
/// so a client with a problem of its own is reported once, not again here.
pub(super) fn check_client_ids(
    errs: &mut ConfigErrors,
    audiences: &[Audience],
    clients: &[RawClient],
) {
    let confidential = |id: &str| {
        clients
            .iter()
            .any(|c| c.id.as_deref() == Some(id) && c.auth.as_deref().is_some_and(|a| a != "none"))
    };
    for rule in audiences.iter().flat_map(|a| &a.rules) {
        for used in rule.expr.uses_of("client_id") {
            let problem = match used {
                Some(id) if confidential(&id) => continue,
                Some(id) => format!(
                    "compares client_id with '{id}', which is not a registered confidential \
                     client: anyone can send that client_id; register it under clients with \
                     client_secret_basic, client_secret_post, private_key_jwt, \
                     tls_client_auth or self_signed_tls_client_auth"
                ),
                None => "uses client_id other than by comparing it (==, != or in) with literal \
                         ids of registered confidential clients: any other test (startsWith, \
                         matches, a computed value) can be met by a client_id anyone may send"
                    .to_owned(),
            };
            errs.push(&rule.path, problem);
        }
    }
}
