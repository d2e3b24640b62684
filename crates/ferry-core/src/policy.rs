//! Access policy: which principal may get which audience, scopes and lifetime. Default
//! deny. An audience Ferry does not serve and an audience no rule allows get the same
//! fixed answer, so a holder of any trusted token cannot list the configured audiences.

use std::collections::HashMap;

use cel::Context;

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::expr::{Expr, string_list, string_map};
use crate::mapping::Principal;

/// Variables an access rule may use.
pub const POLICY_VARS: &[&str] = &["subject", "provider", "groups", "attribute", "client_id"];

/// One ordered access rule of an audience.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Where the rule lives, e.g. `audiences[0].rules[1]`.
    pub path: String,
    /// The condition over the principal.
    pub allow: Expr,
    /// Scopes the rule grants.
    pub scopes: Vec<String>,
    /// The longest lifetime the rule grants, in seconds.
    pub max_ttl: Option<u64>,
}

/// A relying service Ferry issues tokens for.
#[derive(Debug, Clone)]
pub struct Audience {
    /// The audience value (`aud`).
    pub name: String,
    /// The lifetime granted when no rule caps it lower, in seconds.
    pub default_ttl: Option<u64>,
    /// Ordered rules; the first that allows decides.
    pub rules: Vec<Rule>,
}

/// What the policy grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Audiences, in the order requested.
    pub audiences: Vec<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The lowest lifetime cap of the rules and audiences involved, in seconds.
    pub ttl_cap: Option<u64>,
    /// The rule that allowed each audience.
    pub rules: Vec<String>,
}

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    audiences: HashMap<String, Audience>,
}

fn not_allowed(detail: String) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidTarget,
        Step::Policy,
        desc::TARGET_NOT_ALLOWED,
    )
    .detail(detail)
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Policy {
    /// A policy over these audiences.
    pub fn new(audiences: Vec<Audience>) -> Self {
        Self {
            audiences: audiences.into_iter().map(|a| (a.name.clone(), a)).collect(),
        }
    }

    /// Decides a request for `targets` and `requested` scopes.
    pub fn decide(
        &self,
        principal: &Principal,
        client_id: Option<&str>,
        targets: &[String],
        requested: &[String],
    ) -> Result<Grant, OAuthError> {
        let mut ctx = Context::default();
        ctx.add_variable_from_value("subject", principal.subject.clone());
        ctx.add_variable_from_value("provider", principal.provider.clone());
        ctx.add_variable_from_value("groups", string_list(&principal.groups));
        ctx.add_variable_from_value("attribute", string_map(&principal.attributes));
        ctx.add_variable_from_value("client_id", client_id.unwrap_or_default().to_owned());

        let mut granted: Option<Vec<String>> = None;
        let mut ttl_cap = None;
        let mut rules = Vec::with_capacity(targets.len());
        for target in targets {
            // 1. The audience must be served; unknown and denied look alike.
            let aud = self
                .audiences
                .get(target)
                .ok_or_else(|| not_allowed("audience not configured".into()))?;
            // 2. The first allowing rule decides; errors count as "does not allow".
            let mut decided = None;
            let mut last_error = None;
            for rule in &aud.rules {
                match rule.allow.eval_bool(&ctx) {
                    Ok(true) => {
                        decided = Some(rule);
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => last_error = Some(format!("{}: {e}", rule.path)),
                }
            }
            let Some(rule) = decided else {
                let mut err = not_allowed(match last_error {
                    Some(e) => format!("no rule allows the audience; last error {e}"),
                    None => "no rule allows the audience".into(),
                });
                err.rule = Some(format!("audience {target}: default deny"));
                return Err(err);
            };
            rules.push(rule.path.clone());
            // 3. Scopes granted for several audiences are those each grants.
            granted = Some(match granted {
                None => rule.scopes.clone(),
                Some(prev) => prev
                    .into_iter()
                    .filter(|s| rule.scopes.contains(s))
                    .collect(),
            });
            ttl_cap = min_opt(ttl_cap, min_opt(rule.max_ttl, aud.default_ttl));
        }
        let granted = granted.unwrap_or_default();
        // 4. Requested scopes must be a subset; none requested means the granted ones.
        let scopes = if requested.is_empty() {
            granted
        } else if let Some(s) = requested.iter().find(|s| !granted.contains(s)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                Step::Policy,
                desc::SCOPE_NOT_ALLOWED,
            )
            .rule(rules.join(", "))
            .detail(format!("scope of {} bytes not granted", s.len())));
        } else {
            requested.to_vec()
        };
        Ok(Grant {
            audiences: targets.to_vec(),
            scopes,
            ttl_cap,
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rule(path: &str, allow: &str, scopes: &[&str], max_ttl: Option<u64>) -> Rule {
        Rule {
            path: path.into(),
            allow: Expr::compile(allow, POLICY_VARS).unwrap(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            max_ttl,
        }
    }

    fn policy() -> Policy {
        Policy::new(vec![
            Audience {
                name: "a".into(),
                default_ttl: Some(600),
                rules: vec![
                    rule(
                        "a[0]",
                        "attribute.repo == 'acme/app'",
                        &["read", "write"],
                        Some(300),
                    ),
                    rule("a[1]", "provider == 'gh'", &["read"], None),
                ],
            },
            Audience {
                name: "b".into(),
                default_ttl: None,
                rules: vec![rule(
                    "b[0]",
                    "subject.startsWith('repo:')",
                    &["read"],
                    Some(900),
                )],
            },
        ])
    }

    fn principal(repo: &str) -> Principal {
        Principal {
            provider: "gh".into(),
            subject: "repo:x".into(),
            groups: vec![],
            attributes: BTreeMap::from([("repo".to_owned(), repo.to_owned())]),
            original_issuer: "https://idp".into(),
            original_subject: None,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn first_allowing_rule_decides() {
        let g = policy()
            .decide(&principal("acme/app"), None, &s(&["a"]), &[])
            .unwrap();
        assert_eq!(g.scopes, s(&["read", "write"]));
        assert_eq!(g.ttl_cap, Some(300));
        let g = policy()
            .decide(&principal("acme/other"), None, &s(&["a"]), &[])
            .unwrap();
        assert_eq!(g.scopes, s(&["read"]));
        assert_eq!(g.rules, s(&["a[1]"]));
    }

    #[test]
    fn unknown_and_denied_audiences_look_alike() {
        let unknown = policy()
            .decide(&principal("acme/app"), None, &s(&["zzz"]), &[])
            .unwrap_err();
        let mut p = principal("acme/app");
        p.subject = "user:x".into();
        let denied = policy().decide(&p, None, &s(&["b"]), &[]).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::InvalidTarget);
        assert_eq!(unknown.description, denied.description);
        assert_eq!(denied.code, ErrorCode::InvalidTarget);
    }

    #[test]
    fn several_audiences_need_each_and_intersect_scopes() {
        let g = policy()
            .decide(&principal("acme/app"), None, &s(&["a", "b"]), &[])
            .unwrap();
        assert_eq!(g.scopes, s(&["read"]));
        assert_eq!(g.ttl_cap, Some(300));
        let err = policy()
            .decide(&principal("acme/app"), None, &s(&["a", "zzz"]), &[])
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidTarget);
    }

    #[test]
    fn requested_scopes_must_be_granted() {
        let p = principal("acme/app");
        assert!(
            policy()
                .decide(&p, None, &s(&["a"]), &s(&["write"]))
                .is_ok()
        );
        let err = policy()
            .decide(&p, None, &s(&["a", "b"]), &s(&["write"]))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }
}
