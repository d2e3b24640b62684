//! A fast path for the expressions most rules and mappings are written in: comparisons
//! of a string variable or a map variable's field (`subject`, `attribute.repository`,
//! `assertion.ref`) with each other or with string literals (`==`, `!=`, `startsWith`,
//! `endsWith`, `contains`, `matches` with a literal pattern) and `has(…)`, joined by
//! `&&`, `||` and `!`; and string expressions that concatenate such operands or choose
//! between two by such a condition (`has(assertion.environment) ? assertion.environment
//! : 'none'`). Operands are read through [`Vars`]: a CEL context, or a view of the same
//! values that never built one (the policy's principal, the mapping's claims).
//!
//! Evaluating one through the CEL interpreter costs a qualified-name resolution per
//! identifier (a joined string, lookups in every scope and the type registry); here it
//! is a hash lookup and a string comparison. The fast path only ever answers when the
//! answer cannot differ from CEL's: every operand it reads must be present and a string,
//! else it gives up ([`None`]) and the caller evaluates the expression with CEL, which
//! then also produces CEL's exact error for the explain trace and the audit event.
//! `&&` and `||` answer early exactly where CEL's short-circuit does (a `false` left of
//! `&&`, a `true` left of `||`); a left side the fast path cannot decide hands the whole
//! expression to CEL. `expr::tests` checks the two against each other.

use std::sync::Arc;

use cel::Context;
use cel::common::ast::{Expr as Ast, IdedExpr, LiteralValue, operators};
use cel::common::types::{CelMap, CelMapKey, CelString};
use cel::common::value::CowVal;

use super::regexes::Regexes;

/// A compiled fast-path expression.
#[derive(Debug)]
pub(super) enum Fast {
    Bool(bool),
    Not(Box<Fast>),
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Cmp(Op, Operand, Operand),
    Matches(Operand, Arc<regex::Regex>),
    /// `has(name.field)` on a map variable.
    Has(String, String),
}

/// A compiled fast-path string expression: a concatenation of operands, or a choice
/// between two by a fast-path condition (`has(assertion.x) ? assertion.x : 'none'`).
#[derive(Debug)]
pub(super) enum FastStr {
    Concat(Vec<Operand>),
    Cond(Fast, Box<FastStr>, Box<FastStr>),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Eq,
    Ne,
    StartsWith,
    EndsWith,
    Contains,
}

/// A string-valued operand.
#[derive(Debug)]
pub(super) enum Operand {
    Lit(String),
    /// A top-level variable.
    Var(String),
    /// A field of a map variable: `attribute.repository`, `assertion.ref`.
    Field(String, String),
}

/// The fast string form of `e`, when all of it has one.
pub(super) fn compile_str(e: &IdedExpr, regexes: &Regexes) -> Option<FastStr> {
    if let Ast::Call(call) = &e.expr
        && call.target.is_none()
        && call.func_name == operators::CONDITIONAL
        && let [c, a, b] = call.args.as_slice()
    {
        return Some(FastStr::Cond(
            compile(c, regexes)?,
            Box::new(compile_str(a, regexes)?),
            Box::new(compile_str(b, regexes)?),
        ));
    }
    let mut parts = Vec::new();
    concat(e, &mut parts)?;
    Some(FastStr::Concat(parts))
}

/// The operands of `a + b + …`, left to right.
fn concat(e: &IdedExpr, out: &mut Vec<Operand>) -> Option<()> {
    match &e.expr {
        Ast::Call(call) if call.target.is_none() && call.func_name == operators::ADD => {
            let [a, b] = call.args.as_slice() else {
                return None;
            };
            concat(a, out)?;
            concat(b, out)
        }
        _ => {
            out.push(operand(e)?);
            Some(())
        }
    }
}

/// The fast form of `e`, when all of it has one.
pub(super) fn compile(e: &IdedExpr, regexes: &Regexes) -> Option<Fast> {
    match &e.expr {
        Ast::Literal(LiteralValue::Boolean(b)) => Some(Fast::Bool(*b.inner())),
        Ast::Select(sel) if sel.test => match &sel.operand.expr {
            Ast::Ident(name) if !name.starts_with('@') && !name.contains('.') => {
                Some(Fast::Has(name.clone(), sel.field.clone()))
            }
            _ => None,
        },
        Ast::Call(call) => {
            let name = call.func_name.as_str();
            match (&call.target, call.args.as_slice()) {
                (None, [a]) if name == operators::LOGICAL_NOT => {
                    Some(Fast::Not(Box::new(compile(a, regexes)?)))
                }
                (None, [a, b]) if name == operators::LOGICAL_AND => Some(Fast::And(
                    Box::new(compile(a, regexes)?),
                    Box::new(compile(b, regexes)?),
                )),
                (None, [a, b]) if name == operators::LOGICAL_OR => Some(Fast::Or(
                    Box::new(compile(a, regexes)?),
                    Box::new(compile(b, regexes)?),
                )),
                (None, [a, b]) if name == operators::EQUALS => {
                    Some(Fast::Cmp(Op::Eq, operand(a)?, operand(b)?))
                }
                (None, [a, b]) if name == operators::NOT_EQUALS => {
                    Some(Fast::Cmp(Op::Ne, operand(a)?, operand(b)?))
                }
                (Some(t), [arg]) => {
                    let target = operand(t)?;
                    let Ast::Literal(LiteralValue::String(lit)) = &arg.expr else {
                        return None;
                    };
                    let op = match name {
                        "startsWith" => Op::StartsWith,
                        "endsWith" => Op::EndsWith,
                        "contains" => Op::Contains,
                        "matches" => {
                            return regexes
                                .get(lit.inner())
                                .ok()
                                .map(|re| Fast::Matches(target, re));
                        }
                        _ => return None,
                    };
                    Some(Fast::Cmp(op, target, Operand::Lit(lit.inner().to_owned())))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn operand(e: &IdedExpr) -> Option<Operand> {
    match &e.expr {
        Ast::Literal(LiteralValue::String(s)) => Some(Operand::Lit(s.inner().to_owned())),
        Ast::Ident(name) if !name.starts_with('@') && !name.contains('.') => {
            Some(Operand::Var(name.clone()))
        }
        Ast::Select(sel) if !sel.test => match &sel.operand.expr {
            Ast::Ident(name) if !name.starts_with('@') && !name.contains('.') => {
                Some(Operand::Field(name.clone(), sel.field.clone()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Where the fast path reads its operands: a CEL context, or a view of the same values
/// that never built one (the policy's, over the principal). An implementation answers
/// exactly what the CEL context holding the same variables would, or `None` where that
/// is not a string.
pub trait Vars {
    /// The variable `name`, when it is a string.
    fn string(&self, name: &str) -> Option<&str>;
    /// The field `field` of the map variable `name`, when it is a string.
    fn field<'a>(&'a self, name: &str, field: &'a str) -> Option<&'a str>;
    /// Whether the map variable `name` has the key `field`; `None` when it is not a map
    /// (or the view does not know).
    fn has(&self, name: &str, field: &str) -> Option<bool>;
}

impl Vars for Context<'_, '_> {
    fn string(&self, name: &str) -> Option<&str> {
        match self.get_variable(name)? {
            CowVal::Borrowed(v) => v.downcast_ref::<CelString>().map(|s| s.inner()),
            CowVal::Owned(_) => None,
        }
    }

    fn field<'a>(&'a self, name: &str, field: &'a str) -> Option<&'a str> {
        let CowVal::Borrowed(v) = self.get_variable(name)? else {
            return None;
        };
        let map = v.downcast_ref::<CelMap>()?;
        let value = map.get(&CelMapKey::String(CelString::from(field)))?;
        value.downcast_ref::<CelString>().map(|s| s.inner())
    }

    fn has(&self, name: &str, field: &str) -> Option<bool> {
        let CowVal::Borrowed(v) = self.get_variable(name)? else {
            return None;
        };
        let map = v.downcast_ref::<CelMap>()?;
        Some(
            map.get(&CelMapKey::String(CelString::from(field)))
                .is_some(),
        )
    }
}

impl Operand {
    /// The operand's string, or `None` when it is missing or not a string.
    fn get<'a, V: Vars + ?Sized>(&'a self, vars: &'a V) -> Option<&'a str> {
        match self {
            Operand::Lit(s) => Some(s),
            Operand::Var(name) => vars.string(name),
            Operand::Field(name, field) => vars.field(name, field),
        }
    }
}

impl Fast {
    /// The expression's value, when the fast path can be sure it is CEL's.
    pub(super) fn eval<V: Vars + ?Sized>(&self, vars: &V) -> Option<bool> {
        match self {
            Fast::Bool(b) => Some(*b),
            Fast::Not(a) => a.eval(vars).map(|b| !b),
            Fast::And(a, b) => match a.eval(vars)? {
                false => Some(false),
                true => b.eval(vars),
            },
            Fast::Or(a, b) => match a.eval(vars)? {
                true => Some(true),
                false => b.eval(vars),
            },
            Fast::Cmp(op, a, b) => {
                let (x, y) = (a.get(vars)?, b.get(vars)?);
                Some(match op {
                    Op::Eq => x == y,
                    Op::Ne => x != y,
                    Op::StartsWith => x.starts_with(y),
                    Op::EndsWith => x.ends_with(y),
                    Op::Contains => x.contains(y),
                })
            }
            Fast::Matches(a, re) => a.get(vars).map(|x| re.is_match(x)),
            Fast::Has(name, field) => vars.has(name, field),
        }
    }
}

impl FastStr {
    /// The string, when the fast path can be sure it is CEL's (and it is not empty:
    /// an empty result is CEL's to report).
    pub(super) fn eval<V: Vars + ?Sized>(&self, vars: &V) -> Option<String> {
        match self {
            FastStr::Concat(parts) => {
                let mut out = String::new();
                for p in parts {
                    out.push_str(p.get(vars)?);
                }
                (!out.is_empty()).then_some(out)
            }
            FastStr::Cond(c, a, b) => {
                if c.eval(vars)? {
                    a.eval(vars)
                } else {
                    b.eval(vars)
                }
            }
        }
    }
}
