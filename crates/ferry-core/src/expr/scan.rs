//! What an expression reads, found once at compile time by walking its syntax tree: its
//! free variables (checked against the variables its place offers), the claims of
//! `assertion` it reads (only those are converted per request) and the literal patterns
//! of its `matches` calls (compiled at load).

use std::collections::BTreeSet;

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr as Ast, IdedExpr, LiteralValue,
};

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

/// Collects free variables (minus comprehension variables in scope) and the claims of
/// `assertion` that are read.
pub(super) fn walk(
    e: &IdedExpr,
    bound: &mut Vec<String>,
    free: &mut BTreeSet<String>,
    claims: &mut ClaimUse,
) {
    if let Some(claim) = assertion_claim(e, bound) {
        free.insert("assertion".to_owned());
        *claims = claims.union(&ClaimUse::Some(BTreeSet::from([claim])));
        return;
    }
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
        Ast::Select(sel) => walk(&sel.operand, bound, free, claims),
        Ast::Call(call) => {
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
        Ast::Comprehension(c) => walk_comprehension(c, bound, free, claims),
    }
}

/// The one claim `e` reads when it is `assertion.name` or `assertion['name']`, with
/// `assertion` not shadowed by a comprehension variable. (A computed index,
/// `assertion[x]`, reads them all: `walk` then meets `assertion` as a value.)
fn assertion_claim(e: &IdedExpr, bound: &[String]) -> Option<String> {
    let (operand, key): (&IdedExpr, &str) = match &e.expr {
        Ast::Select(sel) => (&sel.operand, sel.field.as_str()),
        Ast::Call(call) if call.func_name == "_[_]" => match call.args.as_slice() {
            [
                operand,
                IdedExpr {
                    expr: Ast::Literal(LiteralValue::String(key)),
                    ..
                },
            ] => (operand, key.inner()),
            _ => return None,
        },
        _ => return None,
    };
    match &operand.expr {
        Ast::Ident(name) if name == "assertion" && !bound.iter().any(|b| b == name) => {
            Some(key.to_owned())
        }
        _ => None,
    }
}

/// [`walk`] into a comprehension: its variables are bound inside it.
fn walk_comprehension(
    c: &ComprehensionExpr,
    bound: &mut Vec<String>,
    free: &mut BTreeSet<String>,
    claims: &mut ClaimUse,
) {
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

/// Calls `f` on every function call in `e`, depth first: the walk the load-time checks of
/// literal arguments share (`matches` patterns here, `ip()`/`cidr()` in `net`).
pub(super) fn each_call(e: &IdedExpr, f: &mut dyn FnMut(&CallExpr)) {
    match &e.expr {
        Ast::Call(call) => {
            f(call);
            if let Some(t) = &call.target {
                each_call(t, f);
            }
            for a in &call.args {
                each_call(a, f);
            }
        }
        Ast::Select(sel) => each_call(&sel.operand, f),
        Ast::List(list) => list.elements.iter().for_each(|el| each_call(el, f)),
        Ast::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    each_call(&me.key, f);
                    each_call(&me.value, f);
                }
            }
        }
        Ast::Comprehension(c) => {
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                each_call(part, f);
            }
        }
        Ast::Struct(_) | Ast::Unspecified | Ast::Ident(_) | Ast::Literal(_) => {}
    }
}

/// A string literal argument, if `arg` is one.
pub(super) fn string_literal(arg: Option<&IdedExpr>) -> Option<String> {
    match arg {
        Some(IdedExpr {
            expr: Ast::Literal(LiteralValue::String(s)),
            ..
        }) => {
            let s: &str = s.as_ref();
            Some(s.to_owned())
        }
        _ => None,
    }
}

/// Collects the literal patterns of `matches` calls.
pub(super) fn literal_regexes(e: &IdedExpr, out: &mut Vec<String>) {
    each_call(e, &mut |call| {
        if call.func_name == "matches" {
            let pattern = if call.target.is_some() {
                call.args.first()
            } else {
                call.args.get(1)
            };
            out.extend(string_literal(pattern));
        }
    });
}
