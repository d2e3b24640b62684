//! Google Credential Access Boundaries, as Google's downscoping clients send them in
//! the `options` parameter: `{"accessBoundary": {"accessBoundaryRules": [{
//! "availableResource", "availablePermissions", "availabilityCondition": {"expression",
//! "title", "description"}}]}}`. Python's client percent-encodes the JSON twice, Node's
//! and Rust's once: after form decoding, a value starting with `%` is decoded once more.
//! At most 10 rules; every condition must compile (CEL over `resource`, `api` and
//! `request`); a condition's `title` is at most 256 bytes and its `description` at most
//! 1024 (they are copied into the issued token, and so into any stored reference
//! token). The validated boundary is carried in the issued token for relying services
//! to enforce.

use serde_json::{Map, Value, json};

use crate::error::{ErrorCode, OAuthError, Step};
use crate::expr::Cel;

/// Most rules in one boundary (Google's limit).
pub const MAX_RULES: usize = 10;
/// Longest condition `title`, bytes.
pub const MAX_TITLE: usize = 256;
/// Longest condition `description`, bytes.
pub const MAX_DESCRIPTION: usize = 1024;

fn bad(detail: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, Step::Request, "invalid options").detail(detail)
}

fn percent_decode(s: &str) -> String {
    crate::form::percent_decode(s.as_bytes()).into_owned()
}

/// Parses and validates `options`; returns the boundary in Google's JSON shape, or
/// `None` when the options carry none.
pub fn access_boundary(options: &str, cel: &Cel) -> Result<Option<Value>, OAuthError> {
    let text = if options.trim_start().starts_with('%') {
        percent_decode(options)
    } else {
        options.to_owned()
    };
    let v: Value = serde_json::from_str(&text).map_err(|_| bad("options is not JSON"))?;
    let Some(ab) = v.get("accessBoundary") else {
        return Ok(None);
    };
    let rules = ab
        .get("accessBoundaryRules")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("accessBoundaryRules is missing"))?;
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(bad(format!("between 1 and {MAX_RULES} rules")));
    }
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let resource = r
            .get("availableResource")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("availableResource missing"))?;
        let perms: Vec<&str> = r
            .get("availablePermissions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if perms.is_empty() {
            return Err(bad("availablePermissions missing"));
        }
        let mut rule = Map::new();
        rule.insert("availableResource".to_owned(), json!(resource));
        rule.insert("availablePermissions".to_owned(), json!(perms));
        if let Some(c) = r.get("availabilityCondition") {
            rule.insert("availabilityCondition".to_owned(), condition(c, cel)?);
        }
        out.push(Value::Object(rule));
    }
    Ok(Some(json!({"accessBoundaryRules": out})))
}

/// One rule's `availabilityCondition`: its expression compiles, its title and
/// description are bounded.
fn condition(c: &Value, cel: &Cel) -> Result<Value, OAuthError> {
    let expr = c
        .get("expression")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("availabilityCondition without expression"))?;
    cel.compile(expr, &["resource", "api", "request"])
        .map_err(|e| bad(format!("condition: {e}")))?;
    let mut cond = Map::new();
    cond.insert("expression".to_owned(), json!(expr));
    for (k, max) in [("title", MAX_TITLE), ("description", MAX_DESCRIPTION)] {
        if let Some(t) = c.get(k).and_then(Value::as_str) {
            if t.len() > max {
                return Err(bad(format!("condition {k} longer than {max} bytes")));
            }
            cond.insert(k.to_owned(), json!(t));
        }
    }
    Ok(Value::Object(cond))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAB: &str = r#"{"accessBoundary":{"accessBoundaryRules":[{"availableResource":"//storage.googleapis.com/projects/_/buckets/bucket-123","availablePermissions":["inRole:roles/storage.objectViewer"],"availabilityCondition":{"expression":"resource.name.startsWith('projects/_/buckets/bucket-123/objects/customer-a')","title":"customer-a-objects"}}]}}"#;

    #[test]
    fn single_and_double_encoded_boundaries() {
        let cel = Cel::new();
        let once = access_boundary(CAB, &cel).unwrap().unwrap();
        assert_eq!(
            once["accessBoundaryRules"][0]["availabilityCondition"]["title"],
            "customer-a-objects"
        );
        let encoded: String = form_urlencoded::byte_serialize(CAB.as_bytes()).collect();
        assert_eq!(access_boundary(&encoded, &cel).unwrap().unwrap(), once);
        assert!(access_boundary(&CAB.replace("startsWith('", "startsWith(("), &cel).is_err());
        let eleven = format!(
            r#"{{"accessBoundary":{{"accessBoundaryRules":[{}]}}}}"#,
            [r#"{"availableResource":"r","availablePermissions":["p"]}"#; 11].join(",")
        );
        assert!(access_boundary(&eleven, &cel).is_err());
        assert_eq!(access_boundary("{}", &cel).unwrap(), None);
    }

    #[test]
    fn title_and_description_are_bounded() {
        let cel = Cel::new();
        let with = |title: usize, description: usize| {
            let v = serde_json::json!({"accessBoundary": {"accessBoundaryRules": [{
                "availableResource": "r", "availablePermissions": ["p"],
                "availabilityCondition": {"expression": "true",
                    "title": "t".repeat(title), "description": "d".repeat(description)}}]}});
            access_boundary(&v.to_string(), &cel)
        };
        assert!(with(MAX_TITLE, MAX_DESCRIPTION).unwrap().is_some());
        assert!(with(MAX_TITLE + 1, 0).is_err());
        assert!(with(0, MAX_DESCRIPTION + 1).is_err());
    }
}
