//! The `github` preset's own rules. GitHub's public issuer is shared by every GitHub
//! user, so a `github` provider must pin an owner, repository or enterprise *id* in its
//! condition (names can be re-registered), must not accept GitHub's default audience,
//! and verifies RS256 only (the one algorithm GitHub signs with: a wider list only
//! widens what a confused key could be used for, RFC 8725 §3.1).
//!
//! The pin is read from the condition's parsed AST, not its text: it must be an
//! equality or `in` over string literals on one of the id claims, conjoined (`&&`) with
//! the rest of the condition. `has(assertion.repository_owner_id) || true` names the
//! claim and pins nothing.

use super::errors::ConfigErrors;
use crate::expr::ClaimUse;
use crate::mapping::Condition;

/// GitHub Actions' public issuer.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The claims a condition may pin: numeric ids, which are never re-assigned.
pub(super) const PINNING_CLAIMS: &[&str] =
    &["repository_owner_id", "repository_id", "enterprise_id"];

fn label(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `iss` has one of the shapes GitHub Actions uses: the public issuer, its
/// enterprise-slug form, `token.actions.<sub>.ghe.com`, or GitHub Enterprise Server's
/// `https://HOST/_services/token`.
pub fn github_issuer_shape_ok(iss: &str) -> bool {
    if iss == GITHUB_ISSUER {
        return true;
    }
    if let Some(slug) = iss.strip_prefix("https://token.actions.githubusercontent.com/") {
        return label(slug);
    }
    if let Some(sub) = iss
        .strip_prefix("https://token.actions.")
        .and_then(|r| r.strip_suffix(".ghe.com"))
    {
        return label(sub);
    }
    if let Some(host) = iss
        .strip_prefix("https://")
        .and_then(|r| r.strip_suffix("/_services/token"))
    {
        return !host.is_empty() && host.split('.').all(label) && !host.contains('/');
    }
    false
}

/// The algorithms of a `github` provider: RS256 alone, whatever is written.
pub(super) fn algorithms(errs: &mut ConfigErrors, path: &str, given: Option<&Vec<String>>) {
    if given.is_some_and(|list| *list != ["RS256"]) {
        errs.push(
            format!("{path}.algorithms"),
            "a github provider verifies RS256 only (GitHub signs with nothing else): \
             write [RS256] or leave algorithms out",
        );
    }
}

/// The pin (an error unless `unpinned`) and the warnings `ferry check` prints.
pub(super) fn pinning(
    errs: &mut ConfigErrors,
    warnings: &mut Vec<String>,
    path: &str,
    id: &str,
    condition: Option<&Condition>,
    unpinned: bool,
) {
    let pinned = condition.is_some_and(|c| c.expr.pins_claim(PINNING_CLAIMS));
    if !pinned && !unpinned {
        errs.push(
            format!("{path}.condition"),
            "a github provider must pin repository_owner_id, repository_id or enterprise_id: \
             assertion.<claim> == '<id>' or assertion.<claim> in ['<id>', …], joined to the rest \
             of the condition with && (GitHub's issuer is shared by every GitHub user); \
             set allow_unpinned: true to override",
        );
    }
    let used = match condition.map(|c| c.expr.claims()) {
        Some(ClaimUse::Some(set)) => set.clone(),
        _ => Default::default(),
    };
    for (name, id_claim) in [
        ("repository", "repository_id"),
        ("repository_owner", "repository_owner_id"),
    ] {
        if used.contains(name) && !used.contains(id_claim) {
            warnings.push(format!(
                "{path} ({id}): the condition checks {name} by name but not {id_claim}: names can be \
                 re-registered by someone else; pin the id"
            ));
        }
    }
    if !used.contains("event_name") {
        warnings.push(format!(
            "{path} ({id}): the condition does not look at event_name: workflows triggered by \
             pull_request_target run with the base repository's identity and may run code from forks"
        ));
    }
}
