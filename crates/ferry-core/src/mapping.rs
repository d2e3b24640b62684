//! A provider's condition and attribute mapping: verified claims in, a [`Principal`] out.
//! Compiled once at load; per request only the claims the programs reference are
//! converted into CEL values.

use std::collections::BTreeMap;

use cel::Context;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::expr::{ClaimUse, Expr, claims_to_cel};

/// Variables a provider's condition and mapping may use.
pub const MAPPING_VARS: &[&str] = &["assertion"];

/// Longest mapped subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 512;

/// The identity a verified subject token maps to.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// The provider that verified the token.
    pub provider: String,
    /// The mapped subject.
    pub subject: String,
    /// Mapped groups.
    pub groups: Vec<String>,
    /// Mapped attributes.
    pub attributes: BTreeMap<String, String>,
    /// The subject token's `iss`.
    pub original_issuer: String,
    /// The subject token's `sub`, when it had one.
    pub original_subject: Option<String>,
}

/// A compiled condition and mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Where this mapping lives in the configuration, e.g. `providers[0]`.
    pub path: String,
    /// Optional condition; false denies.
    pub condition: Option<Expr>,
    /// The subject expression.
    pub subject: Expr,
    /// Optional groups expression.
    pub groups: Option<Expr>,
    /// Named attribute expressions.
    pub attributes: Vec<(String, Expr)>,
    claims: ClaimUse,
}

fn deny(description: &'static str, rule: String, detail: String) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, Step::Mapping, description)
        .rule(rule)
        .detail(detail)
}

impl Mapping {
    /// Assembles a mapping from compiled parts.
    pub fn new(
        path: String,
        condition: Option<Expr>,
        subject: Expr,
        groups: Option<Expr>,
        attributes: Vec<(String, Expr)>,
    ) -> Self {
        let mut claims = subject.claims().clone();
        for e in condition
            .iter()
            .chain(groups.iter())
            .chain(attributes.iter().map(|(_, e)| e))
        {
            claims = claims.union(e.claims());
        }
        Self {
            path,
            condition,
            subject,
            groups,
            attributes,
            claims,
        }
    }

    /// Applies the condition and mapping to verified claims.
    pub fn apply(
        &self,
        provider: &str,
        claims: &Map<String, Json>,
    ) -> Result<Principal, OAuthError> {
        let mut ctx = Context::default();
        ctx.add_variable_from_value("assertion", claims_to_cel(claims, &self.claims));

        // 1. The condition: false or an evaluation error (a missing claim) denies.
        if let Some(cond) = &self.condition {
            let rule = format!("{}.condition", self.path);
            match cond.eval_bool(&ctx) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(deny(
                        desc::CONDITION_DENIED,
                        rule,
                        "condition is false".into(),
                    ));
                }
                Err(e) => return Err(deny(desc::CONDITION_DENIED, rule, e)),
            }
        }
        // 2. The subject: a non-empty string of bounded length.
        let rule = format!("{}.mapping.subject", self.path);
        let subject = self
            .subject
            .eval_string(&ctx)
            .map_err(|e| deny(desc::MAPPING_FAILED, rule.clone(), e))?;
        if subject.len() > MAX_SUBJECT_LEN {
            return Err(deny(
                desc::MAPPING_FAILED,
                rule,
                format!("subject longer than {MAX_SUBJECT_LEN} bytes"),
            ));
        }
        // 3. Groups and attributes.
        let groups = match &self.groups {
            Some(g) => g.eval_string_list(&ctx).map_err(|e| {
                deny(
                    desc::MAPPING_FAILED,
                    format!("{}.mapping.groups", self.path),
                    e,
                )
            })?,
            None => Vec::new(),
        };
        let mut attributes = BTreeMap::new();
        for (name, e) in &self.attributes {
            let v = e.eval_string(&ctx).map_err(|err| {
                deny(
                    desc::MAPPING_FAILED,
                    format!("{}.mapping.attributes.{name}", self.path),
                    err,
                )
            })?;
            attributes.insert(name.clone(), v);
        }
        Ok(Principal {
            provider: provider.to_owned(),
            subject,
            groups,
            attributes,
            original_issuer: claims
                .get("iss")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            original_subject: claims.get("sub").and_then(Json::as_str).map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(cond: Option<&str>, subject: &str) -> Mapping {
        Mapping::new(
            "providers[0]".into(),
            cond.map(|c| Expr::compile(c, MAPPING_VARS).unwrap()),
            Expr::compile(subject, MAPPING_VARS).unwrap(),
            None,
            vec![(
                "repo".into(),
                Expr::compile("assertion.repository", MAPPING_VARS).unwrap(),
            )],
        )
    }

    fn claims() -> Map<String, Json> {
        json!({"iss": "https://idp", "sub": "repo:acme/app", "repository": "acme/app", "owner_id": "65"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn condition_true_maps_and_false_denies_naming_the_rule() {
        let ok = mapping(Some("assertion.owner_id == '65'"), "'gh:' + assertion.sub");
        let p = ok.apply("gh", &claims()).unwrap();
        assert_eq!(p.subject, "gh:repo:acme/app");
        assert_eq!(p.attributes["repo"], "acme/app");

        let no = mapping(Some("assertion.owner_id == '66'"), "'gh:' + assertion.sub");
        let err = no.apply("gh", &claims()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(err.rule.as_deref(), Some("providers[0].condition"));
    }

    #[test]
    fn a_missing_claim_denies_instead_of_mapping_to_empty() {
        let m = mapping(None, "assertion.nope");
        let err = m.apply("gh", &claims()).unwrap_err();
        assert_eq!(err.rule.as_deref(), Some("providers[0].mapping.subject"));
        let m = mapping(None, "assertion.sub");
        assert!(m.apply("gh", &claims()).is_ok());
    }
}
