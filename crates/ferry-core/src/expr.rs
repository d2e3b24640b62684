//! CEL expressions, compiled once at load and evaluated per request. The language is
//! the one Google's workload identity federation and Kubernetes' structured
//! authentication use, so operators can port their rules.
//!
//! At compile time every free variable is checked against the variables the place of
//! the expression offers, so a typo (`assertin.sub`) fails `ferry check` with its path
//! instead of denying every request at run time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Program, Value};

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4_096;

/// A compiled expression with its source, for explain output and audit events.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    program: Arc<Program>,
    claims: ClaimUse,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

/// Which claims of `assertion` an expression reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClaimUse {
    /// None at all.
    #[default]
    None,
    /// Only these top-level claims (`assertion.sub`, `assertion['kubernetes.io']`).
    Some(BTreeSet<String>),
    /// The whole map (`assertion` used as a value, or indexed by a computed key).
    All,
}

impl ClaimUse {
    /// The union of two uses.
    pub fn union(&self, other: &ClaimUse) -> ClaimUse {
        match (self, other) {
            (ClaimUse::All, _) | (_, ClaimUse::All) => ClaimUse::All,
            (ClaimUse::None, x) | (x, ClaimUse::None) => x.clone(),
            (ClaimUse::Some(a), ClaimUse::Some(b)) => ClaimUse::Some(a.union(b).cloned().collect()),
        }
    }
}

impl Expr {
    /// Compiles `source`, allowing only the free variables in `allowed`.
    pub fn compile(source: &str, allowed: &[&str]) -> Result<Self, String> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(format!("expression longer than {MAX_EXPRESSION_LEN} bytes"));
        }
        let program = Program::compile(source).map_err(|e| {
            let msg = e.to_string();
            format!(
                "does not compile: {}",
                msg.lines().next().unwrap_or("syntax error")
            )
        })?;
        let mut free = BTreeSet::new();
        let mut claims = ClaimUse::None;
        walk(
            program.expression(),
            &mut Vec::new(),
            &mut free,
            &mut claims,
        );
        if let Some(unknown) = free.iter().find(|v| !allowed.contains(&v.as_str())) {
            return Err(format!(
                "unknown variable '{unknown}' (available: {})",
                allowed.join(", ")
            ));
        }
        Ok(Self {
            source: source.into(),
            program: Arc::new(program),
            claims,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The claims of `assertion` this expression reads.
    pub fn claims(&self) -> &ClaimUse {
        &self.claims
    }

    /// Evaluates the expression.
    pub fn eval(&self, ctx: &Context<'_, '_>) -> Result<Value, String> {
        self.program.execute(ctx).map_err(|e| e.to_string())
    }

    /// Evaluates to a boolean; any other type is an error.
    pub fn eval_bool(&self, ctx: &Context<'_, '_>) -> Result<bool, String> {
        match self.eval(ctx)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {}", other.type_of())),
        }
    }

    /// Evaluates to a string; any other type (or an empty string) is an error, so a
    /// missing claim never silently becomes "".
    pub fn eval_string(&self, ctx: &Context<'_, '_>) -> Result<String, String> {
        match self.eval(ctx)? {
            Value::String(s) if !s.is_empty() => Ok(s.to_string()),
            Value::String(_) => Err("evaluated to an empty string".to_owned()),
            other => Err(format!("expected a string, got {}", other.type_of())),
        }
    }

    /// Evaluates to a list of strings.
    pub fn eval_string_list(&self, ctx: &Context<'_, '_>) -> Result<Vec<String>, String> {
        match self.eval(ctx)? {
            Value::List(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.to_string()),
                    other => Err(format!(
                        "expected a list of strings, found {}",
                        other.type_of()
                    )),
                })
                .collect(),
            other => Err(format!("expected a list, got {}", other.type_of())),
        }
    }
}

/// Collects free variables (minus comprehension variables in scope) and the claims of
/// `assertion` that are read.
fn walk(e: &IdedExpr, bound: &mut Vec<String>, free: &mut BTreeSet<String>, claims: &mut ClaimUse) {
    match &e.expr {
        Ast::Unspecified | Ast::Literal(_) => {}
        Ast::Ident(name) => {
            if !name.starts_with('@') && !bound.iter().any(|b| b == name) {
                free.insert(name.clone());
                if name == "assertion" {
                    *claims = ClaimUse::All;
                }
            }
        }
        Ast::Select(sel) => {
            if let Ast::Ident(name) = &sel.operand.expr
                && name == "assertion"
                && !bound.iter().any(|b| b == name)
            {
                free.insert(name.clone());
                *claims = claims.union(&ClaimUse::Some(BTreeSet::from([sel.field.clone()])));
                return;
            }
            walk(&sel.operand, bound, free, claims);
        }
        Ast::Call(call) => {
            // assertion['name'] reads one claim; a computed index reads them all.
            if call.func_name == "_[_]"
                && call.args.len() == 2
                && let (Ast::Ident(name), Ast::Literal(cel::common::ast::LiteralValue::String(key))) =
                    (&call.args[0].expr, &call.args[1].expr)
                && name == "assertion"
                && !bound.iter().any(|b| b == name)
            {
                free.insert(name.clone());
                let key: &str = key.as_ref();
                *claims = claims.union(&ClaimUse::Some(BTreeSet::from([key.to_owned()])));
                return;
            }
            if let Some(t) = &call.target {
                walk(t, bound, free, claims);
            }
            for a in &call.args {
                walk(a, bound, free, claims);
            }
        }
        Ast::List(list) => {
            for el in &list.elements {
                walk(el, bound, free, claims);
            }
        }
        Ast::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, bound, free, claims);
                    walk(&me.value, bound, free, claims);
                }
            }
        }
        Ast::Struct(st) => {
            for entry in &st.entries {
                match &entry.expr {
                    EntryExpr::StructField(f) => walk(&f.value, bound, free, claims),
                    EntryExpr::MapEntry(me) => {
                        walk(&me.key, bound, free, claims);
                        walk(&me.value, bound, free, claims);
                    }
                }
            }
        }
        Ast::Comprehension(c) => {
            walk(&c.iter_range, bound, free, claims);
            let pushed = 2 + usize::from(c.iter_var2.is_some());
            bound.push(c.iter_var.clone());
            bound.push(c.accu_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            walk(&c.accu_init, bound, free, claims);
            walk(&c.loop_cond, bound, free, claims);
            walk(&c.loop_step, bound, free, claims);
            walk(&c.result, bound, free, claims);
            for _ in 0..pushed {
                bound.pop();
            }
        }
    }
}

/// Converts a JSON value into a CEL value. Integers stay integers; other numbers are
/// doubles.
pub fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(obj) => {
            let map: HashMap<Key, Value> = obj
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// Builds the `assertion` map from only the claims `uses` names.
pub fn claims_to_cel(
    claims: &serde_json::Map<String, serde_json::Value>,
    uses: &ClaimUse,
) -> Value {
    let map: HashMap<Key, Value> = match uses {
        ClaimUse::None => HashMap::new(),
        ClaimUse::All => claims
            .iter()
            .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
            .collect(),
        ClaimUse::Some(names) => names
            .iter()
            .filter_map(|k| {
                claims
                    .get(k)
                    .map(|v| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
            })
            .collect(),
    };
    Value::Map(Map { map: Arc::new(map) })
}

/// A string-keyed CEL map.
pub fn string_map(entries: &BTreeMap<String, String>) -> Value {
    let map: HashMap<Key, Value> = entries
        .iter()
        .map(|(k, v)| {
            (
                Key::String(Arc::new(k.clone())),
                Value::String(Arc::new(v.clone())),
            )
        })
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// A CEL list of strings.
pub fn string_list(items: &[String]) -> Value {
    Value::List(Arc::new(
        items
            .iter()
            .map(|s| Value::String(Arc::new(s.clone())))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_variables_are_rejected_at_compile_time() {
        assert!(Expr::compile("assertion.sub", &["assertion"]).is_ok());
        let err = Expr::compile("assertin.sub", &["assertion"]).unwrap_err();
        assert!(err.contains("unknown variable 'assertin'"), "{err}");
        // Comprehension variables are bound, not free.
        assert!(Expr::compile("assertion.groups.exists(g, g == 'a')", &["assertion"]).is_ok());
        assert!(Expr::compile("assertion.groups.exists(g, h == 'a')", &["assertion"]).is_err());
        assert!(Expr::compile("1 +", &["assertion"]).is_err());
    }

    #[test]
    fn claim_use_is_tracked() {
        let e = Expr::compile(
            "assertion.sub + assertion['kubernetes.io'].namespace",
            &["assertion"],
        )
        .unwrap();
        assert_eq!(
            e.claims(),
            &ClaimUse::Some(BTreeSet::from([
                "sub".to_owned(),
                "kubernetes.io".to_owned()
            ]))
        );
        let e = Expr::compile("size(assertion) > 0", &["assertion"]).unwrap();
        assert_eq!(e.claims(), &ClaimUse::All);
    }

    #[test]
    fn missing_claims_are_errors_not_empty_strings() {
        let e = Expr::compile("assertion.missing", &["assertion"]).unwrap();
        let claims = serde_json::json!({"sub": "x"});
        let mut ctx = Context::default();
        ctx.add_variable_from_value(
            "assertion",
            claims_to_cel(claims.as_object().unwrap(), &ClaimUse::All),
        );
        assert!(e.eval_string(&ctx).is_err());
    }
}
