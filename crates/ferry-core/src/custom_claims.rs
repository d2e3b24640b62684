//! An audience's own claims (`audiences[].claims`): CEL expressions over the principal
//! and the request, evaluated after the decision and added as top-level members of
//! tokens for that audience. A name of Ferry's profile or of the IANA registry is
//! refused when the configuration loads; a value must be a string, a number, a bool or
//! a list of strings, within [`MAX_VALUE_BYTES`], [`MAX_LIST_ITEMS`] and, for all of a
//! token's claims together, [`MAX_TOTAL_BYTES`]. A token narrowed from a parent keeps
//! the parent's claims as they are: they are never evaluated again.

use cel::Value;
use serde_json::{Map, Number, Value as Json};

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::mapping::Principal;
pub use crate::policy::ClaimTemplate;
use crate::policy::{Grant, Policy, Situation};
use crate::rule_vars::claims_request_value;

/// Variables a claim may use: the principal's, the client, and the request's context —
/// not `actor`, `request.scopes` or `request.audiences`, which a token narrowed (or
/// delegated) from this one changes while it carries the claim unchanged: a claim read
/// from them would describe a grant its holder no longer has.
pub const CLAIM_VARS: &[&str] = &[
    "subject",
    "provider",
    "groups",
    "attribute",
    "client_id",
    "request",
    "subject_act",
];

/// Why `src` may not be an audience's claim, when it reads `request.scopes` or
/// `request.audiences` (evaluation refuses them anyway: the claims' `request` has
/// neither; this says so when the configuration loads).
pub fn source_problem(src: &str) -> Option<&'static str> {
    let compact: String = src.chars().filter(|c| !c.is_whitespace()).collect();
    ["scopes", "audiences"]
        .iter()
        .any(|f| {
            compact.contains(&format!("request.{f}"))
                || compact.contains(&format!("request['{f}']"))
                || compact.contains(&format!("request[\"{f}\"]"))
        })
        .then_some(
            "a claim is carried unchanged into tokens narrowed from this one: it may not \
             read request.scopes or request.audiences (nor actor), which narrowing changes",
        )
}

/// At most this many claims per audience.
pub const MAX_CLAIMS: usize = 32;
/// A claim name is at most this long.
pub const MAX_NAME_BYTES: usize = 128;
/// A string value (or one item of a list) is at most this long.
pub const MAX_VALUE_BYTES: usize = 1024;
/// A list value has at most this many items.
pub const MAX_LIST_ITEMS: usize = 64;
/// All of a token's own claims, serialized, are at most this long.
pub const MAX_TOTAL_BYTES: usize = 4096;

/// Whether `name` may be an audience's own claim: 1 to [`MAX_NAME_BYTES`] of ASCII
/// letters, digits and `_ - . : /` (a plain name or a collision-resistant URI, RFC 7519
/// §4.2), and not reserved ([`ferry_token::registered::is_reserved`]). The reason when
/// not.
pub fn name_problem(name: &str) -> Option<&'static str> {
    let charset = |b: u8| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b);
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.bytes().all(charset) {
        Some("a claim name is 1 to 128 ASCII letters, digits or _ - . : /")
    } else if ferry_token::registered::is_reserved(name) {
        Some(
            "is reserved: a claim of Ferry's token profile or of the IANA JSON Web Token \
             Claims registry (or a name starting with _) cannot be set; choose a name of \
             your own, e.g. a URI",
        )
    } else {
        None
    }
}

fn failed(path: &str, detail: String) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidTarget, Step::Claims, desc::CLAIMS_FAILED)
        .rule(path.to_owned())
        .detail(detail)
}

fn bounded_string(s: &str, path: &str) -> Result<Json, OAuthError> {
    if s.len() > MAX_VALUE_BYTES {
        return Err(failed(
            path,
            format!("a value of {} bytes exceeds {MAX_VALUE_BYTES}", s.len()),
        ));
    }
    Ok(Json::String(s.to_owned()))
}

/// A CEL value as a claim: a string, a finite number, a bool or a list of strings.
pub fn to_json(v: &Value, path: &str) -> Result<Json, OAuthError> {
    match v {
        Value::String(s) => bounded_string(s, path),
        Value::Bool(b) => Ok(Json::Bool(*b)),
        Value::Int(i) => Ok(Json::Number(Number::from(*i))),
        Value::UInt(u) => Ok(Json::Number(Number::from(*u))),
        Value::Float(f) => Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| failed(path, "a number that is not finite".into())),
        Value::List(items) => {
            if items.len() > MAX_LIST_ITEMS {
                return Err(failed(
                    path,
                    format!("a list of {} items exceeds {MAX_LIST_ITEMS}", items.len()),
                ));
            }
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => bounded_string(s, path),
                    other => Err(failed(
                        path,
                        format!("a list item of type {}, not a string", other.type_of()),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array)
        }
        other => Err(failed(
            path,
            format!(
                "a value of type {}: a claim is a string, number, bool or list of strings",
                other.type_of()
            ),
        )),
    }
}

/// Who is asking, for the claims' expressions ([`CLAIM_VARS`]).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The request's situation (`request.*`).
    pub situation: &'a Situation,
    /// The subject.
    pub principal: &'a Principal,
    /// The authenticated or named client.
    pub client_id: Option<&'a str>,
}

impl Policy {
    /// [`Policy::decide_in`], then the granted audiences' own claims
    /// ([`Policy::custom_claims`]): what `/token`, `ferry explain` and `ferry test` all
    /// call for a decision by the rules.
    #[allow(
        clippy::too_many_arguments,
        reason = "the request as the policy sees it"
    )]
    pub fn decide_with_claims(
        &self,
        situation: &Situation,
        principal: &Principal,
        client_id: Option<&str>,
        targets: &[String],
        requested: &[String],
        actor: Option<&Principal>,
        mut trace: Option<&mut Vec<String>>,
    ) -> Result<Grant, OAuthError> {
        let mut grant = self.decide_in(
            situation,
            principal,
            client_id,
            targets,
            requested,
            actor,
            trace.as_deref_mut(),
        )?;
        let who = Asker {
            situation,
            principal,
            client_id,
        };
        grant.claims = self.custom_claims(&who, &grant, trace)?;
        Ok(grant)
    }

    /// The claims of a token with `grant`: every audience's, in the order of the grant's
    /// audiences. Two audiences giving one name different values, an expression error,
    /// a value of another type or too large: refused at [`Step::Claims`], naming the
    /// claim. With `trace`, each value is recorded for `ferry explain`.
    pub fn custom_claims(
        &self,
        who: &Asker<'_>,
        grant: &Grant,
        mut trace: Option<&mut Vec<String>>,
    ) -> Result<Map<String, Json>, OAuthError> {
        let mut out = Map::new();
        let mut total = 0usize;
        let mut ctx = None;
        for target in &grant.audiences {
            let Some(templates) = self.claim_templates(target).filter(|t| !t.is_empty()) else {
                continue;
            };
            // Built once per request, for the first audience with claims; only `request`
            // differs from one audience to the next.
            let ctx = ctx.get_or_insert_with(|| {
                self.principal_context(who.principal, who.client_id.unwrap_or_default())
            });
            ctx.add_variable_from_value("request", claims_request_value(target, who.situation));
            for t in templates {
                let value = t
                    .expr
                    .eval(ctx)
                    .map_err(|e| failed(&t.path, format!("expression error: {e}")))
                    .and_then(|v| to_json(&v, &t.path));
                if let Some(tr) = trace.as_deref_mut() {
                    tr.push(match &value {
                        Ok(v) => format!("claims {}: `{}` → {v}", t.path, t.expr.source()),
                        Err(e) => format!(
                            "claims {}: `{}` → error: {}",
                            t.path,
                            t.expr.source(),
                            e.detail
                        ),
                    });
                }
                let value = value?;
                match out.get(&t.name) {
                    Some(prev) if *prev != value => {
                        return Err(failed(
                            &t.path,
                            "another audience of the token gives this claim another value".into(),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        total = total
                            .saturating_add(t.name.len())
                            .saturating_add(value.to_string().len())
                            .saturating_add(4);
                        if total > MAX_TOTAL_BYTES {
                            return Err(failed(
                                &t.path,
                                format!("the token's own claims exceed {MAX_TOTAL_BYTES} bytes"),
                            ));
                        }
                        out.insert(t.name.clone(), value);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "custom_claims_tests.rs"]
mod tests;
