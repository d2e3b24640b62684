//! Narrowing a Ferry token at `/token` (server-side downscoping), pure: the child's
//! audiences are a subset of the parent's, its scopes a subset of the parent's, its
//! lifetime within the parent's, its boundaries the parent's plus any added. Nothing can
//! widen. An actor added while narrowing also meets the audiences' rules: the child's
//! grant is then what both allow ([`within`]).

use serde_json::Value;

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::policy::Grant;

/// How many times a token may be narrowed at Ferry, one from another: each child carries
/// the `jti`s of all its ancestors, so this bounds its size.
pub const MAX_NARROWING_DEPTH: usize = 8;

/// What a parent token holds, as far as narrowing is concerned.
#[derive(Debug, Clone, Default)]
pub struct Parent {
    /// Its audiences.
    pub audiences: Vec<String>,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its expiry.
    pub exp: i64,
    /// Its access boundaries.
    pub boundaries: Vec<Value>,
    /// Whether it is bound to a key.
    pub bound: bool,
    /// Its ancestors' `jti`s, oldest first, and its own.
    pub ancestors: Vec<String>,
    /// Its own `jti`.
    pub jti: String,
    /// Its audiences' own claims, carried into the child unchanged.
    pub claims: serde_json::Map<String, Value>,
}

const RULE_AUDIENCES: &str = "downscoping: audiences must be a subset of the parent's";

/// The audiences a narrowing asks for: those requested, else the parent's (Google's
/// downscoping clients send none).
pub fn targets(requested: &[String], parent_audiences: &[String]) -> Vec<String> {
    if requested.is_empty() {
        parent_audiences.to_vec()
    } else {
        requested.to_vec()
    }
}

/// The refusal of an audience the parent does not hold.
pub fn audience_not_held() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidTarget,
        Step::Policy,
        desc::TARGET_NOT_ALLOWED,
    )
    .rule(RULE_AUDIENCES)
    .detail("requested audience not in the parent token")
}

/// The child's ancestors: the parent's, then the parent, at most
/// [`MAX_NARROWING_DEPTH`].
pub fn lineage(parent: &Parent) -> Result<Vec<String>, OAuthError> {
    if parent.ancestors.len() >= MAX_NARROWING_DEPTH {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Request,
            desc::NARROWED_TOO_OFTEN,
        ));
    }
    let mut ancestors = parent.ancestors.clone();
    ancestors.push(parent.jti.clone());
    Ok(ancestors)
}

/// The child's grant: `targets` and `scopes` (none keeps the parent's) within the
/// parent's, an added boundary on top of the parent's, a lifetime cap at the parent's
/// remaining lifetime.
pub fn narrow(
    parent: &Parent,
    targets: &[String],
    scopes: &[String],
    added_boundary: Option<Value>,
    now: i64,
) -> Result<Grant, OAuthError> {
    if targets.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            Step::Verify,
            desc::INVALID_SUBJECT_TOKEN,
        )
        .detail("no audience requested and none in the parent"));
    }
    if targets.iter().any(|t| !parent.audiences.contains(t)) {
        return Err(audience_not_held());
    }
    if scopes.iter().any(|s| !parent.scopes.contains(s)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            Step::Policy,
            desc::SCOPE_NOT_ALLOWED,
        )
        .rule("downscoping: scopes must be a subset of the parent's"));
    }
    let mut boundaries = parent.boundaries.clone();
    boundaries.extend(added_boundary);
    Ok(Grant {
        audiences: targets.to_vec(),
        scopes: if scopes.is_empty() {
            parent.scopes.clone()
        } else {
            scopes.to_vec()
        },
        ttl_cap: Some(u64::try_from(parent.exp.saturating_sub(now)).unwrap_or(0)),
        rules: vec!["downscoping".to_owned()],
        require_dpop: parent.bound,
        require_mtls: false,
        access_boundaries: (!boundaries.is_empty()).then_some(boundaries),
        claims: parent.claims.clone(),
    })
}

/// The narrowed grant further limited by what the audiences' rules allow (an actor added
/// while narrowing): scopes both allow, the lower lifetime cap, DPoP if either requires.
pub fn within(narrowed: Grant, rules: Grant) -> Grant {
    let ttl_cap = match (narrowed.ttl_cap, rules.ttl_cap) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut names = narrowed.rules;
    names.extend(rules.rules);
    Grant {
        scopes: narrowed
            .scopes
            .into_iter()
            .filter(|s| rules.scopes.contains(s))
            .collect(),
        ttl_cap,
        rules: names,
        require_dpop: narrowed.require_dpop || rules.require_dpop,
        require_mtls: narrowed.require_mtls || rules.require_mtls,
        ..narrowed
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    fn parent() -> Parent {
        Parent {
            audiences: v(&["a", "b"]),
            scopes: v(&["r", "w"]),
            exp: 1_000,
            boundaries: vec![json!({"accessBoundaryRules": []})],
            bound: true,
            ancestors: v(&["j0"]),
            jti: "j1".into(),
            claims: json!({"tenant": "t1"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn the_parents_own_claims_are_carried_unchanged() {
        let g = narrow(&parent(), &v(&["a"]), &v(&["r"]), None, 400).unwrap();
        assert_eq!(serde_json::Value::Object(g.claims), json!({"tenant": "t1"}));
    }

    #[test]
    fn narrowing_never_widens() {
        let p = parent();
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            Result<(&'a [&'a str], &'a [&'a str]), ErrorCode>,
        );
        let cases: [Case<'_>; 7] = [
            (&["a"], &["r"], Ok((&["a"], &["r"]))),
            (&["a", "b"], &[], Ok((&["a", "b"], &["r", "w"]))),
            (&["b"], &["r", "w"], Ok((&["b"], &["r", "w"]))),
            (&["c"], &[], Err(ErrorCode::InvalidTarget)),
            (&["a", "c"], &["r"], Err(ErrorCode::InvalidTarget)),
            (&["a"], &["x"], Err(ErrorCode::InvalidScope)),
            (&[], &[], Err(ErrorCode::InvalidRequest)),
        ];
        for (t, s, want) in cases {
            let got = narrow(&p, &v(t), &v(s), None, 400);
            match want {
                Ok((aud, sc)) => {
                    let g = got.unwrap();
                    assert_eq!((g.audiences, g.scopes), (v(aud), v(sc)));
                    assert_eq!(g.ttl_cap, Some(600));
                    assert!(g.require_dpop);
                }
                Err(code) => assert_eq!(got.unwrap_err().code, code, "{t:?} {s:?}"),
            }
        }
    }

    #[test]
    fn boundaries_add_up_and_lineage_is_bounded() {
        let p = parent();
        let extra = json!({"accessBoundaryRules": [{"availableResource": "x"}]});
        let g = narrow(&p, &v(&["a"]), &[], Some(extra.clone()), 400).unwrap();
        assert_eq!(g.access_boundaries.unwrap().len(), 2);
        assert_eq!(lineage(&p).unwrap(), v(&["j0", "j1"]));
        let deep = Parent {
            ancestors: (0..MAX_NARROWING_DEPTH).map(|i| i.to_string()).collect(),
            ..parent()
        };
        assert!(lineage(&deep).is_err());
        assert_eq!(targets(&[], &v(&["a"])), v(&["a"]));
        assert_eq!(targets(&v(&["b"]), &v(&["a"])), v(&["b"]));
    }

    #[test]
    fn within_takes_what_both_allow() {
        let narrowed = narrow(&parent(), &v(&["a"]), &[], None, 400).unwrap();
        let rules = Grant {
            audiences: v(&["a"]),
            scopes: v(&["r", "x"]),
            ttl_cap: Some(300),
            rules: v(&["audiences[0].rules[0]"]),
            require_dpop: false,
            require_mtls: false,
            access_boundaries: None,
            claims: serde_json::Map::new(),
        };
        let g = within(narrowed, rules);
        assert_eq!(g.scopes, v(&["r"]));
        assert_eq!(g.ttl_cap, Some(300));
        assert!(g.require_dpop);
        assert_eq!(g.rules, v(&["downscoping", "audiences[0].rules[0]"]));
    }
}
