//! Access policy: which principal may get which audience, scopes and lifetime. Rules
//! are ordered; the first whose expression is true decides (`allow` grants, `deny`
//! refuses). With no rule deciding, the answer is deny. An audience Ferry does not serve
//! and an audience no rule allows get the same fixed answer, so a holder of any trusted
//! token cannot list the configured audiences — unless the operator chooses to show
//! their own denial messages.

use std::collections::HashMap;

use crate::error::{ErrorCode, OAuthError, Step, desc};
use crate::expr::{Cel, Expr, ExprError, Vars, string_list, string_map};
use crate::mapping::Principal;

/// Variables an access rule may use.
pub const POLICY_VARS: &[&str] = &[
    "subject",
    "provider",
    "groups",
    "attribute",
    "client_id",
    "request",
    "actor",
    "subject_act",
];

pub use crate::rule_vars::Situation;
use crate::rule_vars::{actor_value, request_value, subject_act_value};

/// What a rule does when its expression is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grant the audience.
    Allow,
    /// Refuse it.
    Deny,
}

/// One ordered access rule of an audience.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Where the rule lives, e.g. `audiences[0].rules[1]`, with its name if it has one.
    pub path: String,
    /// Allow or deny.
    pub effect: Effect,
    /// The expression over the principal, provider, client and request.
    pub expr: Expr,
    /// Scopes an allow rule grants.
    pub scopes: Vec<String>,
    /// The longest lifetime an allow rule grants, in seconds.
    pub max_ttl: Option<u64>,
    /// A deny rule's message for the client (shown only when messages are exposed).
    pub message: Option<String>,
    /// An allow rule that grants only tokens bound to a key (DPoP).
    pub require_dpop: bool,
}

/// One claim of an audience.
#[derive(Debug, Clone)]
pub struct ClaimTemplate {
    /// The claim's name.
    pub name: String,
    /// Where it lives, e.g. `audiences[0].claims.tenant`.
    pub path: String,
    /// The expression, over the variables a claim may use (the principal, the client
    /// and the request's context).
    pub expr: Expr,
}

/// A relying service Ferry issues tokens for.
#[derive(Debug, Clone)]
pub struct Audience {
    /// The audience value (`aud`).
    pub name: String,
    /// The lifetime granted when no rule caps it lower, in seconds.
    pub default_ttl: Option<u64>,
    /// Ordered rules; the first whose expression is true decides.
    pub rules: Vec<Rule>,
    /// Requested scopes no rule knows are dropped instead of refused (Google's Node and
    /// Rust clients always send their cloud-platform scope).
    pub ignore_unknown_scopes: bool,
    /// The message of the default deny (shown only when messages are exposed).
    pub message: Option<String>,
    /// Tokens for this audience must be bound to a key (DPoP).
    pub require_dpop: bool,
    /// Tokens for this audience must be bound to the client's certificate (RFC 8705).
    pub require_mtls: bool,
    /// The audience's own claims, computed after the decision.
    pub claims: Vec<ClaimTemplate>,
}

/// What the policy grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Audiences, in the order requested.
    pub audiences: Vec<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The lowest lifetime cap of the rules and audiences involved, in seconds.
    pub ttl_cap: Option<u64>,
    /// The rule that allowed each audience.
    pub rules: Vec<String>,
    /// Whether an audience or rule involved requires a DPoP-bound token.
    pub require_dpop: bool,
    /// Whether an audience involved requires a certificate-bound token.
    pub require_mtls: bool,
    /// Access boundaries the token carries (downscoping), every one of which must allow.
    pub access_boundaries: Option<Vec<serde_json::Value>>,
    /// The audiences' own claims: computed after the decision, or a parent's, carried.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The compiled policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    cel: Cel,
    audiences: HashMap<String, Audience>,
    /// Whether operator-written denial messages are shown to clients.
    pub expose_messages: bool,
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

/// Records a line for `ferry explain`; the line is only built when someone listens.
fn note(trace: &mut Option<&mut Vec<String>>, line: impl FnOnce() -> String) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(line());
    }
}

impl Policy {
    /// The CEL runtime the configuration was compiled with.
    pub fn cel(&self) -> &Cel {
        &self.cel
    }

    /// A policy over these audiences.
    pub fn new(cel: Cel, audiences: Vec<Audience>, expose_messages: bool) -> Self {
        Self {
            cel,
            audiences: audiences.into_iter().map(|a| (a.name.clone(), a)).collect(),
            expose_messages,
        }
    }

    fn with_message(&self, err: OAuthError, message: Option<&String>) -> OAuthError {
        match message {
            Some(m) if self.expose_messages => err.operator_message(m),
            _ => err,
        }
    }

    /// The own claims of audience `name`, when it is served.
    pub(crate) fn claim_templates(&self, name: &str) -> Option<&[ClaimTemplate]> {
        self.audiences.get(name).map(|a| a.claims.as_slice())
    }

    /// The variables every policy expression sees: the principal's and the client.
    pub(crate) fn principal_context(
        &self,
        principal: &Principal,
        client_id: &str,
    ) -> cel::Context<'static, 'static> {
        let mut ctx = self.cel.context();
        ctx.add_variable_from_value("subject", principal.subject.clone());
        ctx.add_variable_from_value("provider", principal.provider.clone());
        ctx.add_variable_from_value("groups", string_list(&principal.groups));
        ctx.add_variable_from_value("attribute", string_map(&principal.attributes));
        ctx.add_variable_from_value("client_id", client_id.to_owned());
        ctx.add_variable_from_value("subject_act", subject_act_value(principal));
        ctx
    }

    /// The CEL context of a rule: the variables of [`POLICY_VARS`].
    #[allow(clippy::too_many_arguments, reason = "the variables of one rule")]
    fn rule_context(
        &self,
        principal: &Principal,
        client_id: &str,
        actor: Option<&Principal>,
        audience: &str,
        targets: &[String],
        requested: &[String],
        situation: &Situation,
    ) -> cel::Context<'static, 'static> {
        let mut ctx = self.principal_context(principal, client_id);
        ctx.add_variable_from_value("actor", actor_value(actor));
        ctx.add_variable_from_value(
            "request",
            request_value(audience, targets, requested, situation),
        );
        ctx
    }

    /// Decides a request for `targets` and `requested` scopes. With `trace`, every rule
    /// tried is recorded for `ferry explain`.
    pub fn decide(
        &self,
        principal: &Principal,
        client_id: Option<&str>,
        targets: &[String],
        requested: &[String],
        actor: Option<&Principal>,
        trace: Option<&mut Vec<String>>,
    ) -> Result<Grant, OAuthError> {
        let situation = Situation::default();
        self.decide_in(
            &situation, principal, client_id, targets, requested, actor, trace,
        )
    }

    /// [`Policy::decide`] for a request in `situation` (`request.*`).
    #[allow(
        clippy::too_many_arguments,
        reason = "the request as the policy sees it"
    )]
    pub fn decide_in(
        &self,
        situation: &Situation,
        principal: &Principal,
        client_id: Option<&str>,
        targets: &[String],
        requested: &[String],
        actor: Option<&Principal>,
        mut trace: Option<&mut Vec<String>>,
    ) -> Result<Grant, OAuthError> {
        let client_id = client_id.unwrap_or_default();
        // Written out only if a rule's fast path reads it.
        let source_ip = std::cell::OnceCell::new();
        let mut granted: Option<Vec<String>> = None;
        let mut ttl_cap = None;
        let mut rules = Vec::with_capacity(targets.len());
        let mut all_ignore_unknown = true;
        let mut require_dpop = false;
        let mut require_mtls = false;
        for target in targets {
            // 1. The audience must be served; unknown and denied look alike.
            let Some(aud) = self.audiences.get(target) else {
                note(&mut trace, || {
                    format!("policy audience {target}: not configured → deny")
                });
                return Err(not_allowed("audience not configured".into())
                    .rule(format!("audience {target}: not configured")));
            };
            all_ignore_unknown &= aud.ignore_unknown_scopes;
            let view = View {
                principal,
                client_id,
                actor,
                audience: target,
                source_ip: &source_ip,
                situation,
            };
            // 2. The first rule whose expression is true decides; an evaluation error
            //    (a missing attribute) counts as false and is reported. The CEL context
            //    is built only for a rule the fast path cannot answer (see `expr::fast`).
            let mut ctx = None;
            let eval = |e: &Expr| match e.eval_bool_fast(&view) {
                Some(b) => Ok(b),
                None => e.eval_bool(ctx.get_or_insert_with(|| {
                    self.rule_context(
                        principal, client_id, actor, target, targets, requested, situation,
                    )
                })),
            };
            let rule = match first_true_rule(aud, target, eval, &mut trace) {
                Ok(r) if r.effect == Effect::Allow => r,
                Ok(r) => {
                    let err = not_allowed("a deny rule matched".into()).rule(r.path.clone());
                    return Err(self.with_message(err, r.message.as_ref()));
                }
                Err(last_error) => {
                    let had_error = last_error.is_some();
                    let mut err = not_allowed(match last_error {
                        Some(e) => format!("no rule allows the audience; last error {e}"),
                        None => "no rule allows the audience".into(),
                    })
                    .rule(format!("audience {target}: default deny"));
                    err.expression_error = had_error;
                    note(&mut trace, || {
                        format!("policy audience {target}: no rule decided → default deny")
                    });
                    return Err(self.with_message(err, aud.message.as_ref()));
                }
            };
            rules.push(rule.path.clone());
            require_dpop |= rule.require_dpop || aud.require_dpop;
            require_mtls |= aud.require_mtls;
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
        // 4. Requested scopes must be a subset; unknown ones are dropped where every
        //    audience asked for says so; none requested means the granted ones.
        let scopes = wanted_scopes(granted, requested, all_ignore_unknown, &rules, &mut trace)?;
        note(&mut trace, || {
            format!("policy grants scopes {scopes:?} by {}", rules.join(", "))
        });
        Ok(Grant {
            audiences: targets.to_vec(),
            scopes,
            ttl_cap,
            rules,
            require_dpop,
            require_mtls,
            ..Grant::default()
        })
    }
}

/// The string variables of [`Policy::context`], read where they are (no CEL values are
/// built): what the fast path of a rule needs.
struct View<'a> {
    principal: &'a Principal,
    client_id: &'a str,
    actor: Option<&'a Principal>,
    audience: &'a str,
    source_ip: &'a std::cell::OnceCell<String>,
    situation: &'a Situation,
}

impl Vars for View<'_> {
    fn string(&self, name: &str) -> Option<&str> {
        match name {
            "subject" => Some(&self.principal.subject),
            "provider" => Some(&self.principal.provider),
            "client_id" => Some(self.client_id),
            _ => None,
        }
    }

    fn field<'b>(&'b self, name: &str, field: &'b str) -> Option<&'b str> {
        match (name, field) {
            ("attribute", f) => self.principal.attributes.get(f).map(String::as_str),
            ("actor", "subject") => Some(self.actor.map_or("", |a| a.subject.as_str())),
            ("actor", "provider") => Some(self.actor.map_or("", |a| a.provider.as_str())),
            ("request", "audience") => Some(self.audience),
            ("request", "source_ip") => Some(self.source_ip.get_or_init(|| {
                self.situation
                    .source_ip
                    .map(|i| i.to_string())
                    .unwrap_or_default()
            })),
            ("subject_act", "subject") => Some(
                self.principal
                    .subject_act
                    .as_ref()
                    .map_or("", |a| a.sub.as_str()),
            ),
            _ => None,
        }
    }
    fn has(&self, name: &str, field: &str) -> Option<bool> {
        (name == "attribute").then(|| self.principal.attributes.contains_key(field))
    }
}

/// Step 2 of [`Policy::decide`] for one audience: the first rule whose expression is
/// true decides; an evaluation error (a missing attribute) counts as false. Without a
/// deciding rule, the last error met, if any.
fn first_true_rule<'a>(
    aud: &'a Audience,
    target: &str,
    mut eval: impl FnMut(&Expr) -> Result<bool, ExprError>,
    trace: &mut Option<&mut Vec<String>>,
) -> Result<&'a Rule, Option<String>> {
    let mut last_error = None;
    for rule in &aud.rules {
        let result = eval(&rule.expr);
        let verb = if rule.effect == Effect::Allow {
            "allow"
        } else {
            "deny"
        };
        note(trace, || {
            format!(
                "policy audience {target}: {} {verb} `{}` → {}",
                rule.path,
                rule.expr.source(),
                match &result {
                    Ok(b) => b.to_string(),
                    Err(e) => format!("error: {e}"),
                }
            )
        });
        match result {
            Ok(true) => return Ok(rule),
            Ok(false) => {}
            Err(e) => last_error = Some(format!("{}: {e}", rule.path)),
        }
    }
    Err(last_error)
}

/// Step 4 of [`Policy::decide`]: the requested scopes, each granted (or dropped where
/// every audience ignores unknown scopes); the granted ones when none are requested.
fn wanted_scopes(
    granted: Vec<String>,
    requested: &[String],
    all_ignore_unknown: bool,
    rules: &[String],
    trace: &mut Option<&mut Vec<String>>,
) -> Result<Vec<String>, OAuthError> {
    let mut wanted: Vec<String> = Vec::with_capacity(requested.len());
    for s in requested {
        if granted.contains(s) {
            wanted.push(s.clone());
        } else if all_ignore_unknown {
            note(trace, || {
                format!("scope {s:?} not granted: ignored (ignore_unknown_scopes)")
            });
        } else {
            note(trace, || format!("scope {s:?} not granted → invalid_scope"));
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                Step::Policy,
                desc::SCOPE_NOT_ALLOWED,
            )
            .rule(rules.join(", "))
            .detail(format!(
                "a requested scope of {} bytes is not granted",
                s.len()
            )));
        }
    }
    Ok(if wanted.is_empty() { granted } else { wanted })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
