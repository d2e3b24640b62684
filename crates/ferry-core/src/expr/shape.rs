//! Questions about what an expression *means*, answered on its parsed AST rather than on
//! its text: a configuration check that greps the source is fooled by
//! `has(assertion.repository_owner_id) || true`, which names the claim and pins nothing.

use cel::common::ast::{Expr as Ast, IdedExpr, LiteralValue, operators};

use super::Expr;

impl Expr {
    /// Whether the expression can be true only when one of `claims` of `assertion` is
    /// equal to a non-empty string literal: `assertion.C == 'v'` or
    /// `assertion.C in ['v', …]` (either side of `==`, `assertion['C']` alike), standing
    /// alone or as a conjunct of `&&`. A disjunction pins only when every branch does.
    /// Anything else — `!=`, `has()`, a pin under `||` beside an unpinned branch, a
    /// comparison with a computed value — does not pin.
    pub fn pins_claim(&self, claims: &[&str]) -> bool {
        pinned(self.program.expression(), claims)
    }

    /// Every use of variable `var` in the expression, in order: `Some(literal)` where it
    /// is compared with a string literal (`var == 'x'`, `'x' != var`, each element of
    /// `var in ['x', 'y']`), `None` for any other use (`var.startsWith('x')`,
    /// `var == 'a' + 'b'`, `var in some_list`, `var` passed anywhere).
    pub fn uses_of(&self, var: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        compared(self.program.expression(), var, &mut Vec::new(), &mut out);
        out
    }
}

/// `assertion.NAME` or `assertion['NAME']` (not `has()`, which only tests presence).
fn claim_name(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Ast::Select(sel) if !sel.test => match &sel.operand.expr {
            Ast::Ident(name) if name == "assertion" => Some(sel.field.as_str()),
            _ => None,
        },
        Ast::Call(call) if call.func_name == operators::INDEX && call.target.is_none() => {
            match call.args.as_slice() {
                [
                    IdedExpr {
                        expr: Ast::Ident(name),
                        ..
                    },
                    IdedExpr {
                        expr: Ast::Literal(LiteralValue::String(key)),
                        ..
                    },
                ] if name == "assertion" => Some(key.as_ref()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Ast::Literal(LiteralValue::String(s)) => Some(s.as_ref()),
        _ => None,
    }
}

fn pinned(e: &IdedExpr, claims: &[&str]) -> bool {
    let Ast::Call(call) = &e.expr else {
        return false;
    };
    if call.target.is_some() {
        return false;
    }
    let is_pin_claim = |e: &IdedExpr| claim_name(e).is_some_and(|c| claims.contains(&c));
    let non_empty = |e: &IdedExpr| string_literal(e).is_some_and(|s| !s.is_empty());
    match (call.func_name.as_str(), call.args.as_slice()) {
        (operators::LOGICAL_AND, args) => args.iter().any(|a| pinned(a, claims)),
        (operators::LOGICAL_OR, args) => !args.is_empty() && args.iter().all(|a| pinned(a, claims)),
        (operators::EQUALS, [a, b]) => {
            (is_pin_claim(a) && non_empty(b)) || (is_pin_claim(b) && non_empty(a))
        }
        (operators::IN, [a, list]) => {
            is_pin_claim(a)
                && matches!(&list.expr, Ast::List(l)
                    if !l.elements.is_empty() && l.elements.iter().all(non_empty))
        }
        _ => false,
    }
}

/// Collects the uses of `var` (see [`Expr::uses_of`]), skipping scopes where a
/// comprehension variable of the same name hides it.
fn compared(e: &IdedExpr, var: &str, bound: &mut Vec<String>, out: &mut Vec<Option<String>>) {
    let is_var = |e: &IdedExpr| {
        matches!(&e.expr, Ast::Ident(n) if n == var) && !bound.iter().any(|b| b == var)
    };
    match &e.expr {
        Ast::Call(call) => {
            match (call.func_name.as_str(), call.args.as_slice()) {
                (operators::EQUALS | operators::NOT_EQUALS, [a, b])
                    if (is_var(a) && string_literal(b).is_some())
                        || (is_var(b) && string_literal(a).is_some()) =>
                {
                    let lit = if is_var(a) { b } else { a };
                    out.push(string_literal(lit).map(str::to_owned));
                    return;
                }
                (operators::IN, [a, list]) if is_var(a) => {
                    if let Ast::List(l) = &list.expr
                        && !l.elements.is_empty()
                        && l.elements.iter().all(|x| string_literal(x).is_some())
                    {
                        out.extend(
                            l.elements
                                .iter()
                                .map(|x| string_literal(x).map(str::to_owned)),
                        );
                        return;
                    }
                }
                _ => {}
            }
            if let Some(t) = &call.target {
                compared(t, var, bound, out);
            }
            for a in &call.args {
                compared(a, var, bound, out);
            }
        }
        Ast::Select(sel) => compared(&sel.operand, var, bound, out),
        Ast::List(l) => {
            for el in &l.elements {
                compared(el, var, bound, out);
            }
        }
        Ast::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    compared(&me.key, var, bound, out);
                    compared(&me.value, var, bound, out);
                }
            }
        }
        Ast::Comprehension(c) => {
            compared(&c.iter_range, var, bound, out);
            let mut names = vec![c.iter_var.clone(), c.accu_var.clone()];
            names.extend(c.iter_var2.clone());
            let pushed = names.len();
            bound.extend(names);
            for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                compared(part, var, bound, out);
            }
            bound.truncate(bound.len() - pushed);
        }
        Ast::Ident(_) if is_var(e) => out.push(None),
        Ast::Struct(_) | Ast::Unspecified | Ast::Ident(_) | Ast::Literal(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::expr::Cel;

    const PIN: &[&str] = &["repository_owner_id", "repository_id", "enterprise_id"];

    /// Each refused shape beside an accepted twin.
    #[test]
    fn pins_are_read_from_the_ast() {
        let cel = Cel::new();
        let cases = [
            ("assertion.repository_owner_id == '123'", true),
            (
                "assertion.repository_owner_id == '123' && assertion.ref == 'x'",
                true,
            ),
            (
                "assertion.ref == 'x' && assertion.repository_owner_id == '123'",
                true,
            ),
            ("'123' == assertion.repository_owner_id", true),
            ("assertion['repository_id'] == '9'", true),
            ("assertion.enterprise_id in ['1', '2']", true),
            (
                "(assertion.repository_owner_id == '1' && true) && true",
                true,
            ),
            (
                "assertion.repository_id == '1' || assertion.repository_owner_id == '2'",
                true,
            ),
            // Refused twins.
            ("has(assertion.repository_owner_id) || true", false),
            ("has(assertion.repository_owner_id)", false),
            ("assertion.repository_owner_id != '1'", false),
            ("!(assertion.repository_owner_id != '1')", false),
            ("assertion.repository_owner_id == '123' || true", false),
            (
                "assertion.repository_owner_id == '123' || assertion.ref == 'x'",
                false,
            ),
            ("assertion.repository_owner_id == ''", false),
            ("assertion.repository_owner_id in []", false),
            (
                "assertion.repository_owner_id in ['1', assertion.sub]",
                false,
            ),
            (
                "assertion.repository_owner_id == assertion.repository_id",
                false,
            ),
            ("assertion.repository_owner_id.startsWith('1')", false),
            ("assertion.repository == 'acme/app'", false),
            ("assertion.repository_owner_id == '1' ? true : true", false),
            ("[1].all(x, assertion.repository_owner_id == '1')", false),
            ("true", false),
        ];
        for (src, want) in cases {
            let e = cel.compile(src, &["assertion"]).unwrap();
            assert_eq!(e.pins_claim(PIN), want, "{src}");
        }
    }

    #[test]
    fn uses_of_a_variable() {
        let cel = Cel::new();
        let lit = |s: &str| Some(s.to_owned());
        let cases: Vec<(&str, Vec<Option<String>>)> = vec![
            ("client_id == 'ci'", vec![lit("ci")]),
            ("'ci' == client_id", vec![lit("ci")]),
            (
                "client_id != 'a' && client_id in ['b', 'c']",
                vec![lit("a"), lit("b"), lit("c")],
            ),
            ("subject == 'ci'", vec![]),
            ("[1].exists(client_id, client_id == 'shadowed')", vec![]),
            ("[1].exists(x, client_id == 'seen')", vec![lit("seen")]),
            // Any other use is reported as such.
            ("client_id == subject", vec![None]),
            ("client_id.startsWith('c1')", vec![None]),
            ("client_id.matches('^ci$')", vec![None]),
            ("client_id == 'no' + 'body'", vec![None]),
            ("client_id in [subject]", vec![None]),
            ("size(client_id) > 0", vec![None]),
        ];
        for (src, want) in cases {
            let e = cel.compile(src, &["client_id", "subject"]).unwrap();
            assert_eq!(e.uses_of("client_id"), want, "{src}");
        }
    }
}
