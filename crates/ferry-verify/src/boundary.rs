//! Enforcing the access boundaries a downscoped Ferry token carries.
//!
//! A token narrowed with a Google Credential Access Boundary carries
//! `access_boundaries`: a list of boundaries, the parent's first, each
//! `{"accessBoundaryRules": [{"availableResource", "availablePermissions",
//! "availabilityCondition": {"expression"}}]}`. An access is allowed when **every**
//! boundary in the list allows it; a boundary allows it when one of its rules names the
//! resource (exactly), lists the permission (exactly, e.g. `inRole:roles/storage.objectViewer`
//! — the relying service decides which permission string an operation needs) and, if it
//! has a condition, the condition evaluates to `true`.
//!
//! Conditions are CEL over `resource` (`name`, `type`, `service`), `api` and `request`
//! (empty maps: Ferry has no request attributes to offer). A condition that fails to
//! compile or evaluate, or evaluates to anything but `true`, denies: boundaries fail
//! closed. A token without `access_boundaries` is not narrowed by this module.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program, Value as Cel};
use serde_json::{Map, Value};

/// Most boundaries accepted in one token (a derivation chain adds one per step).
pub const MAX_BOUNDARIES: usize = 16;
/// Most rules in one boundary (Google's limit).
pub const MAX_RULES: usize = 10;

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
    .clone()
}

/// Why the `access_boundaries` claim could not be used. A relying service should deny
/// every access of a token whose boundaries do not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed access_boundaries: {0}")]
pub struct BoundaryError(String);

/// One access a relying service is about to allow.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceAccess<'a> {
    /// The resource a rule names in `availableResource`, e.g.
    /// `//storage.googleapis.com/projects/_/buckets/bucket-123`.
    pub resource: &'a str,
    /// The permission the operation needs, as rules list it.
    pub permission: &'a str,
    /// `resource.name` in conditions, e.g. `projects/_/buckets/bucket-123/objects/a.txt`.
    pub name: &'a str,
    /// `resource.type` in conditions.
    pub kind: &'a str,
    /// `resource.service` in conditions.
    pub service: &'a str,
}

#[derive(Debug)]
struct Rule {
    resource: String,
    permissions: Vec<String>,
    condition: Option<(String, Program)>,
}

/// Why an access was denied: which boundary, and why none of its rules allowed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access boundary {boundary} denies: {reason}")]
pub struct BoundaryDenied {
    /// Index in `access_boundaries` (0 = the outermost parent's).
    pub boundary: usize,
    /// The last reason a rule gave (`no rule for the resource and permission`, or the
    /// condition that was not true).
    pub reason: String,
}

/// The parsed, compiled `access_boundaries` of a token.
#[derive(Debug, Default)]
pub struct AccessBoundaries {
    boundaries: Vec<Vec<Rule>>,
}

fn bad(s: &str) -> BoundaryError {
    BoundaryError(s.to_owned())
}

impl AccessBoundaries {
    /// Reads `access_boundaries` from a token's claims; `Ok(None)` when it has none.
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Option<Self>, BoundaryError> {
        let Some(v) = claims.get("access_boundaries") else {
            return Ok(None);
        };
        Self::parse(v).map(Some)
    }

    /// Reads the `access_boundaries` of a Ferry token read as Ferry's token profile;
    /// `Ok(None)` when it has none.
    pub fn from_token(claims: &ferry_token::AccessClaims) -> Result<Option<Self>, BoundaryError> {
        claims
            .access_boundaries
            .as_deref()
            .map(Self::parse_list)
            .transpose()
    }

    /// Parses and compiles a list of boundaries.
    pub fn parse(v: &Value) -> Result<Self, BoundaryError> {
        Self::parse_list(v.as_array().ok_or_else(|| bad("not a list"))?)
    }

    /// Parses and compiles a list of boundaries, each `{"accessBoundaryRules": […]}`.
    pub fn parse_list(list: &[Value]) -> Result<Self, BoundaryError> {
        if list.is_empty() || list.len() > MAX_BOUNDARIES {
            return Err(bad("between 1 and 16 boundaries"));
        }
        let env = env();
        let mut boundaries = Vec::with_capacity(list.len());
        for b in list {
            let rules = b
                .get("accessBoundaryRules")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("accessBoundaryRules missing"))?;
            if rules.is_empty() || rules.len() > MAX_RULES {
                return Err(bad("between 1 and 10 rules"));
            }
            let mut parsed = Vec::with_capacity(rules.len());
            for r in rules {
                let resource = r
                    .get("availableResource")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| bad("availableResource missing"))?;
                let permissions: Vec<String> = r
                    .get("availablePermissions")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("availablePermissions missing"))?
                    .iter()
                    .map(|p| p.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("a permission is not a string"))?;
                let condition = match r.get("availabilityCondition") {
                    None => None,
                    Some(c) => {
                        let expr = c
                            .get("expression")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad("availabilityCondition without expression"))?;
                        let program = env
                            .compile(expr)
                            .map_err(|_| bad("a condition does not compile"))?;
                        Some((expr.to_owned(), program))
                    }
                };
                parsed.push(Rule {
                    resource: resource.to_owned(),
                    permissions,
                    condition,
                });
            }
            boundaries.push(parsed);
        }
        Ok(Self { boundaries })
    }

    /// How many boundaries apply.
    pub fn len(&self) -> usize {
        self.boundaries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.boundaries.is_empty()
    }

    /// Checks one access against every boundary.
    pub fn check(&self, access: &ResourceAccess<'_>) -> Result<(), BoundaryDenied> {
        let ctx = context(access);
        for (i, rules) in self.boundaries.iter().enumerate() {
            let mut reason = "no rule for the resource and permission".to_owned();
            let allowed = rules.iter().any(|r| {
                if r.resource != access.resource
                    || !r.permissions.iter().any(|p| p == access.permission)
                {
                    return false;
                }
                let Some((source, program)) = &r.condition else {
                    return true;
                };
                match program.execute(&ctx) {
                    Ok(Cel::Bool(true)) => true,
                    Ok(_) => {
                        reason = format!("condition `{source}` is not true");
                        false
                    }
                    Err(_) => {
                        reason = format!("condition `{source}` failed to evaluate");
                        false
                    }
                }
            });
            if !allowed {
                return Err(BoundaryDenied {
                    boundary: i,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Whether every boundary allows the access.
    pub fn allows(&self, access: &ResourceAccess<'_>) -> bool {
        self.check(access).is_ok()
    }
}

fn string(s: &str) -> Cel {
    Cel::String(Arc::new(s.to_owned()))
}

fn map(entries: &[(&str, Cel)]) -> Cel {
    let m: HashMap<Key, Cel> = entries
        .iter()
        .map(|(k, v)| (Key::String(Arc::new((*k).to_owned())), v.clone()))
        .collect();
    Cel::Map(CelMap { map: Arc::new(m) })
}

fn context(access: &ResourceAccess<'_>) -> Context<'static, 'static> {
    let mut ctx = Context::with_env(env());
    ctx.add_variable_from_value(
        "resource",
        map(&[
            ("name", string(access.name)),
            ("type", string(access.kind)),
            ("service", string(access.service)),
        ]),
    );
    ctx.add_variable_from_value("api", map(&[]));
    ctx.add_variable_from_value("request", map(&[]));
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BUCKET: &str = "//storage.googleapis.com/projects/_/buckets/bucket-123";
    const VIEWER: &str = "inRole:roles/storage.objectViewer";

    fn boundary(cond: Option<&str>) -> Value {
        let mut rule = json!({"availableResource": BUCKET, "availablePermissions": [VIEWER]});
        if let Some(c) = cond {
            rule["availabilityCondition"] = json!({"expression": c});
        }
        json!({"accessBoundaryRules": [rule]})
    }

    fn access(name: &str) -> ResourceAccess<'_> {
        ResourceAccess {
            resource: BUCKET,
            permission: VIEWER,
            name,
            kind: "storage.googleapis.com/Object",
            service: "storage.googleapis.com",
        }
    }

    const A: &str = "projects/_/buckets/bucket-123/objects/customer-a/1.txt";
    const B: &str = "projects/_/buckets/bucket-123/objects/customer-b/1.txt";

    #[test]
    fn condition_allows_its_prefix_only() {
        let cond = "resource.name.startsWith('projects/_/buckets/bucket-123/objects/customer-a')";
        let b = AccessBoundaries::parse(&json!([boundary(Some(cond))])).unwrap();
        assert!(b.allows(&access(A)));
        let denied = b.check(&access(B)).unwrap_err();
        assert_eq!(denied.boundary, 0);
        assert!(denied.reason.contains("is not true"), "{denied}");
    }

    #[test]
    fn resource_and_permission_must_match_exactly() {
        let b = AccessBoundaries::parse(&json!([boundary(None)])).unwrap();
        assert!(b.allows(&access(A)));
        let mut other = access(A);
        other.resource = "//storage.googleapis.com/projects/_/buckets/bucket-1234";
        assert!(!b.allows(&other));
        let mut write = access(A);
        write.permission = "inRole:roles/storage.objectAdmin";
        assert!(!b.allows(&write));
    }

    #[test]
    fn every_boundary_must_allow() {
        let cond = "resource.name.endsWith('.txt')";
        let narrow = "resource.name.startsWith('projects/_/buckets/bucket-123/objects/customer-a')";
        let both = AccessBoundaries::parse(&json!([boundary(Some(cond)), boundary(Some(narrow))]))
            .unwrap();
        assert!(both.allows(&access(A)));
        let denied = both.check(&access(B)).unwrap_err();
        assert_eq!(denied.boundary, 1);
        // The outer boundary alone allows B.
        let outer = AccessBoundaries::parse(&json!([boundary(Some(cond))])).unwrap();
        assert!(outer.allows(&access(B)));
    }

    #[test]
    fn conditions_that_fail_deny() {
        // Twin of condition_allows_its_prefix_only: a condition over a missing attribute
        // or of the wrong type denies instead of allowing.
        for cond in ["resource.missing == 'x'", "resource.name", "api.x.y == 1"] {
            let b = AccessBoundaries::parse(&json!([boundary(Some(cond))])).unwrap();
            assert!(!b.allows(&access(A)), "{cond}");
        }
        let ok = AccessBoundaries::parse(&json!([boundary(Some("resource.name != ''"))])).unwrap();
        assert!(ok.allows(&access(A)));
    }

    #[test]
    fn malformed_claims_are_errors() {
        assert!(
            AccessBoundaries::parse(&json!([boundary(Some("resource.name.startsWith(("))]))
                .is_err()
        );
        assert!(AccessBoundaries::parse(&json!([])).is_err());
        assert!(AccessBoundaries::parse(&json!({"accessBoundaryRules": []})).is_err());
        let eleven = json!([{"accessBoundaryRules": vec![json!({"availableResource": "r", "availablePermissions": ["p"]}); 11]}]);
        assert!(AccessBoundaries::parse(&eleven).is_err());
        let ten = json!([{"accessBoundaryRules": vec![json!({"availableResource": "r", "availablePermissions": ["p"]}); 10]}]);
        assert_eq!(AccessBoundaries::parse(&ten).unwrap().len(), 1);
        let mut claims = Map::new();
        assert!(AccessBoundaries::from_claims(&claims).unwrap().is_none());
        claims.insert("access_boundaries".into(), json!([boundary(None)]));
        assert!(AccessBoundaries::from_claims(&claims).unwrap().is_some());
    }
}
