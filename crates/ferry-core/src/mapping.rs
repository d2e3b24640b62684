//! A provider's condition and attribute mapping: verified claims in, a [`Principal`] out.
//! Compiled once at load; per request only the claims the programs reference are
//! converted into CEL values.
//!
//! Google's workload identity federation names are accepted as they are:
//! `google.subject`, `google.groups` and `attribute.NAME` in the mapping, and `assertion`,
//! `google` and `attribute` in the condition. A condition that reads only `assertion` runs
//! before the mapping; one that reads the mapped `google` or `attribute` runs after it.

use std::collections::BTreeMap;
use std::sync::Arc;

use cel::objects::{Key, Map as CelMap};
use cel::{Context, Value};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::expr::{Cel, ClaimUse, Expr, ExprError, Vars, claims_to_cel, string_list, string_map};

/// Variables a mapping expression may use.
pub const MAPPING_VARS: &[&str] = &["assertion"];
/// Variables a provider's condition may use.
pub const CONDITION_VARS: &[&str] = &["assertion", "google", "attribute"];

/// Longest mapped subject accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 512;
/// Most attributes a mapping may define.
pub const MAX_ATTRIBUTES: usize = 50;

/// The identity a verified subject token maps to.
#[derive(Debug, Clone, Default, Serialize)]
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
    /// When the subject is a Ferry token being narrowed: the `jti`s of its ancestors,
    /// oldest first, ending with the parent's (`ferry.ancestors` of the child). Empty
    /// for a provider's token. Not visible to rules.
    #[serde(skip)]
    pub ancestors: Vec<String>,
    /// The `act` the subject token carried (an upstream one kept under its issuer's
    /// name, or a Ferry parent's chain): `subject_act` in rules.
    #[serde(skip)]
    pub subject_act: Option<ferry_token::Act>,
}

/// A provider's condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The expression.
    pub expr: Expr,
    /// The message a denial shows the client, when the operator exposes messages.
    pub message: Option<String>,
}

/// A compiled condition and mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Where this mapping lives in the configuration, e.g. `providers[0]`.
    pub path: String,
    /// Optional condition; false denies.
    pub condition: Option<Condition>,
    /// The subject expression.
    pub subject: Expr,
    /// Optional groups expression.
    pub groups: Option<Expr>,
    /// Named attribute expressions.
    pub attributes: Vec<(String, Expr)>,
    /// Whether operator messages are shown to clients.
    pub expose_messages: bool,
    cel: Cel,
    claims: ClaimUse,
    late_condition: bool,
}

fn deny(description: &'static str, rule: String, detail: String) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, Step::Mapping, description)
        .rule(rule)
        .detail(detail)
}

/// A denial because an expression failed to evaluate (counted in metrics).
fn deny_eval(description: &'static str, rule: String, detail: String) -> OAuthError {
    let mut e = deny(description, rule, detail);
    e.expression_error = true;
    e
}

/// Records a line for `ferry explain`; the line is only built when someone listens.
fn note(trace: &mut Option<&mut Vec<String>>, line: impl FnOnce() -> String) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(line());
    }
}

fn quote(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Mapping {
    /// Assembles a mapping from compiled parts.
    pub fn new(
        cel: Cel,
        path: String,
        condition: Option<Condition>,
        subject: Expr,
        groups: Option<Expr>,
        attributes: Vec<(String, Expr)>,
    ) -> Self {
        let mut claims = subject.claims().clone();
        let exprs = condition
            .iter()
            .map(|c| &c.expr)
            .chain(groups.iter())
            .chain(attributes.iter().map(|(_, e)| e));
        for e in exprs {
            claims = claims.union(e.claims());
        }
        let late_condition = condition
            .as_ref()
            .is_some_and(|c| c.expr.uses("google") || c.expr.uses("attribute"));
        Self {
            path,
            condition,
            subject,
            groups,
            attributes,
            expose_messages: false,
            cel,
            claims,
            late_condition,
        }
    }

    /// The CEL context of the mapping: `assertion`, with the claims it reads.
    fn context(&self, claims: &Map<String, Json>) -> Context<'static, 'static> {
        let mut ctx = self.cel.context();
        ctx.add_variable_from_value("assertion", claims_to_cel(claims, &self.claims));
        ctx
    }

    fn check_condition(
        &self,
        eval: impl FnOnce(&Expr) -> Result<bool, ExprError>,
        trace: &mut Option<&mut Vec<String>>,
    ) -> Result<(), OAuthError> {
        let Some(cond) = &self.condition else {
            return Ok(());
        };
        let result = eval(&cond.expr);
        let rule = || format!("{}.condition", self.path);
        note(trace, || {
            format!(
                "condition {} `{}` → {}",
                rule(),
                cond.expr.source(),
                match &result {
                    Ok(b) => b.to_string(),
                    Err(e) => format!("error: {e}"),
                }
            )
        });
        let err = match result {
            Ok(true) => return Ok(()),
            Ok(false) => deny(desc::CONDITION_DENIED, rule(), "condition is false".into()),
            Err(e) => deny_eval(desc::CONDITION_DENIED, rule(), e.to_string()),
        };
        Err(match (&cond.message, self.expose_messages) {
            (Some(m), true) => err.operator_message(m),
            _ => err,
        })
    }

    /// Step 3 of [`Mapping::apply`]: the groups, when the mapping has them.
    fn map_groups(
        &self,
        claims: &Map<String, Json>,
        ctx: &mut Option<Context<'static, 'static>>,
        trace: &mut Option<&mut Vec<String>>,
    ) -> Result<Vec<String>, OAuthError> {
        let Some(g) = &self.groups else {
            return Ok(Vec::new());
        };
        let groups = g
            .eval_string_list(ctx.get_or_insert_with(|| self.context(claims)))
            .map_err(|e| {
                deny_eval(
                    desc::MAPPING_FAILED,
                    format!("{}.mapping.groups", self.path),
                    e.to_string(),
                )
            })?;
        note(trace, || format!("mapping groups → {groups:?}"));
        Ok(groups)
    }

    /// Step 4 of [`Mapping::apply`]: the condition over the mapped values, with
    /// `google.subject`, `google.groups` and `attribute.*` added to the context.
    fn check_late_condition(
        &self,
        ctx: &mut Context<'static, 'static>,
        subject: &str,
        groups: &[String],
        attributes: &BTreeMap<String, String>,
        trace: &mut Option<&mut Vec<String>>,
    ) -> Result<(), OAuthError> {
        let google: std::collections::HashMap<Key, Value> = [
            (
                Key::String(Arc::new("subject".into())),
                Value::String(Arc::new(subject.to_owned())),
            ),
            (Key::String(Arc::new("groups".into())), string_list(groups)),
        ]
        .into_iter()
        .collect();
        ctx.add_variable_from_value(
            "google",
            Value::Map(CelMap {
                map: Arc::new(google),
            }),
        );
        ctx.add_variable_from_value("attribute", string_map(attributes));
        self.check_condition(|e| e.eval_bool(ctx), trace)
    }

    /// Applies the condition and mapping to verified claims. With `trace`, each step is
    /// recorded for `ferry explain`.
    pub fn apply(
        &self,
        provider: &str,
        claims: &Map<String, Json>,
        mut trace: Option<&mut Vec<String>>,
    ) -> Result<Principal, OAuthError> {
        // Expressions the CEL fast path answers read the claims where they are; the CEL
        // context is built for the first one it cannot (see `expr::fast`).
        let view = ClaimsView(claims);
        let mut ctx = None;
        let string = |e: &Expr, ctx: &mut Option<Context<'static, 'static>>| {
            e.eval_string_fast(&view).map_or_else(
                || e.eval_string(ctx.get_or_insert_with(|| self.context(claims))),
                Ok,
            )
        };

        // 1. A condition over the claims alone: false or an error (a missing claim) denies.
        if !self.late_condition {
            self.check_condition(
                |e| {
                    e.eval_bool_fast(&view).map_or_else(
                        || e.eval_bool(ctx.get_or_insert_with(|| self.context(claims))),
                        Ok,
                    )
                },
                &mut trace,
            )?;
        }
        // 2. The subject: a non-empty string of bounded length.
        let rule = || format!("{}.mapping.subject", self.path);
        let subject = string(&self.subject, &mut ctx)
            .map_err(|e| deny_eval(desc::MAPPING_FAILED, rule(), e.to_string()))?;
        if subject.len() > MAX_SUBJECT_LEN {
            return Err(deny(
                desc::MAPPING_FAILED,
                rule(),
                format!("subject longer than {MAX_SUBJECT_LEN} bytes"),
            ));
        }
        note(&mut trace, || {
            format!(
                "mapping subject `{}` → {}",
                self.subject.source(),
                quote(&subject)
            )
        });
        // 3. Groups and attributes.
        let groups = self.map_groups(claims, &mut ctx, &mut trace)?;
        let mut attributes = BTreeMap::new();
        for (name, e) in &self.attributes {
            let v = string(e, &mut ctx).map_err(|err| {
                deny_eval(
                    desc::MAPPING_FAILED,
                    format!("{}.mapping.attribute.{name}", self.path),
                    err.to_string(),
                )
            })?;
            note(&mut trace, || {
                format!("mapping attribute.{name} `{}` → {}", e.source(), quote(&v))
            });
            attributes.insert(name.clone(), v);
        }
        // 4. A condition over the mapped values (Google's `google.*` and `attribute.*`).
        if self.late_condition {
            let ctx = ctx.get_or_insert_with(|| self.context(claims));
            self.check_late_condition(ctx, &subject, &groups, &attributes, &mut trace)?;
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
            ancestors: Vec::new(),
            subject_act: None,
        })
    }
}

/// `assertion` read from the verified claims where they are, for the CEL fast path: the
/// same strings and keys as the `assertion` map of [`Mapping::context`] for every claim
/// an expression of the mapping names (the map holds exactly those).
struct ClaimsView<'a>(&'a Map<String, Json>);

impl Vars for ClaimsView<'_> {
    fn string(&self, _: &str) -> Option<&str> {
        None
    }

    fn field<'b>(&'b self, name: &str, field: &'b str) -> Option<&'b str> {
        (name == "assertion")
            .then(|| self.0.get(field).and_then(Json::as_str))
            .flatten()
    }

    fn has(&self, name: &str, field: &str) -> Option<bool> {
        (name == "assertion").then(|| self.0.contains_key(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(cond: Option<&str>, subject: &str) -> Mapping {
        let cel = Cel::new();
        Mapping::new(
            cel.clone(),
            "providers[0]".into(),
            cond.map(|c| Condition {
                expr: cel.compile(c, CONDITION_VARS).unwrap(),
                message: None,
            }),
            cel.compile(subject, MAPPING_VARS).unwrap(),
            None,
            vec![(
                "repo".into(),
                cel.compile("assertion.repository", MAPPING_VARS).unwrap(),
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
        let p = ok.apply("gh", &claims(), None).unwrap();
        assert_eq!(p.subject, "gh:repo:acme/app");
        assert_eq!(p.attributes["repo"], "acme/app");

        let no = mapping(Some("assertion.owner_id == '66'"), "'gh:' + assertion.sub");
        let err = no.apply("gh", &claims(), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(err.rule.as_deref(), Some("providers[0].condition"));
    }

    #[test]
    fn a_condition_may_read_mapped_attributes_like_google() {
        let ok = mapping(
            Some("attribute.repo == 'acme/app' && google.subject.startsWith('repo:')"),
            "assertion.sub",
        );
        assert!(ok.apply("gh", &claims(), None).is_ok());
        let no = mapping(Some("attribute.repo == 'acme/other'"), "assertion.sub");
        assert!(no.apply("gh", &claims(), None).is_err());
    }

    #[test]
    fn a_missing_claim_denies_instead_of_mapping_to_empty() {
        let m = mapping(None, "assertion.nope");
        let err = m.apply("gh", &claims(), None).unwrap_err();
        assert_eq!(err.rule.as_deref(), Some("providers[0].mapping.subject"));
        let m = mapping(None, "assertion.sub");
        assert!(m.apply("gh", &claims(), None).is_ok());
    }

    /// The claims view answers as the mapping's CEL context does, for every claim an
    /// expression names, whatever its JSON type, and for claims that are absent.
    #[test]
    fn the_claims_view_answers_as_the_cel_context_does() {
        let m = mapping(
            Some("has(assertion.n) && assertion.owner_id == '65'"),
            "assertion.sub + assertion.env + assertion.list + assertion.obj + assertion.nul + assertion.absent",
        );
        let claims = json!({"sub": "s", "owner_id": "65", "repository": "r", "n": 3,
            "env": "", "list": ["a"], "obj": {"a": "b"}, "nul": null, "unnamed": "u"});
        let claims = claims.as_object().unwrap();
        let ctx = m.context(claims);
        let view = ClaimsView(claims);
        let mut strings = 0;
        for field in [
            "sub",
            "owner_id",
            "repository",
            "n",
            "env",
            "list",
            "obj",
            "nul",
            "absent",
        ] {
            assert_eq!(
                view.field("assertion", field),
                Vars::field(&ctx, "assertion", field),
                "{field}"
            );
            assert_eq!(
                view.has("assertion", field),
                Vars::has(&ctx, "assertion", field),
                "{field}"
            );
            strings += usize::from(view.field("assertion", field).is_some());
        }
        assert_eq!(view.string("assertion"), Vars::string(&ctx, "assertion"));
        assert_eq!(strings, 4);
        // The result through the fast path and through CEL alone.
        let p = m.apply("gh", claims, None);
        assert!(p.is_err(), "assertion.list is not a string");
    }
}
