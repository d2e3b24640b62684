//! An audience (a relying service) and its ordered access rules.

use super::raw::RawAudience;
use super::{ConfigErrors, compile, opt_duration};
use crate::policy::{Audience, POLICY_VARS, Rule};

pub(super) fn audience(
    errs: &mut ConfigErrors,
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
        let rpath = format!("{path}.rules[{j}]");
        let allow = match &r.allow {
            Some(src) => compile(errs, &format!("{rpath}.allow"), src, POLICY_VARS),
            None => {
                errs.push(format!("{rpath}.allow"), "is required");
                None
            }
        };
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
        let max = opt_duration(errs, &format!("{rpath}.max_ttl"), r.max_ttl.as_ref());
        if let Some(allow) = allow {
            rules.push(Rule {
                path: rpath,
                allow,
                scopes: r.scopes.clone(),
                max_ttl: max,
            });
        }
    }
    (errs.0.len() == before).then_some(Audience {
        name,
        default_ttl,
        rules,
    })
}
