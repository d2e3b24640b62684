//! CEL behaviours: compile-time checks, claim use, the runtime's functions.
use super::*;

#[test]
fn unknown_variables_are_rejected_at_compile_time() {
    assert!(Expr::compile("assertion.sub", &["assertion"]).is_ok());
    let err = Expr::compile("assertin.sub", &["assertion"]).unwrap_err();
    assert!(
        err.to_string().contains("unknown variable 'assertin'"),
        "{err}"
    );
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
    let mut ctx = Cel::new().context();
    ctx.add_variable_from_value(
        "assertion",
        claims_to_cel(claims.as_object().unwrap(), &ClaimUse::All),
    );
    assert!(e.eval_string(&ctx).is_err());
}

/// CEL as operators write it, over GitHub- and Kubernetes-shaped claims.
#[test]
fn cel_behaviour_table() {
    let claims = serde_json::json!({
        "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app",
        "ref_type": "branch",
        "groups": ["team-a", "admins"],
        "kubernetes.io": {"namespace": "payments", "serviceaccount": {"name": "api"}},
        "n": 3
    });
    let cel = Cel::new();
    let table: &[(&str, Result<Value, ()>)] = &[
        ("has(assertion.sub)", Ok(Value::Bool(true))),
        ("has(assertion.nope)", Ok(Value::Bool(false))),
        (
            "assertion.groups.exists(g, g == 'admins')",
            Ok(Value::Bool(true)),
        ),
        (
            "assertion.groups.all(g, g.startsWith('team-'))",
            Ok(Value::Bool(false)),
        ),
        (
            "assertion.sub.startsWith('repo:acme/')",
            Ok(Value::Bool(true)),
        ),
        (
            "assertion.sub.matches('^repo:acme/[a-z]+:ref:refs/heads/main$')",
            Ok(Value::Bool(true)),
        ),
        (
            "matches(assertion.sub, '^repo:other/')",
            Ok(Value::Bool(false)),
        ),
        (
            "assertion.sub.split(':')[1]",
            Ok(Value::String(Arc::new("acme/app".into()))),
        ),
        (
            "assertion.sub.extract('repo:{repo}:')",
            Ok(Value::String(Arc::new("acme/app".into()))),
        ),
        (
            "assertion.sub.extract('ref:{ref}')",
            Ok(Value::String(Arc::new("refs/heads/main".into()))),
        ),
        (
            "assertion['kubernetes.io'].namespace",
            Ok(Value::String(Arc::new("payments".into()))),
        ),
        (
            "assertion['kubernetes.io'].serviceaccount.name == 'api'",
            Ok(Value::Bool(true)),
        ),
        (
            "'admins' in assertion.groups && size(assertion.groups) == 2",
            Ok(Value::Bool(true)),
        ),
        ("{'a': 1}['a'] + assertion.n", Ok(Value::Int(4))),
        (
            "assertion.ref_type == 'branch' ? 'b' : 't'",
            Ok(Value::String(Arc::new("b".into()))),
        ),
        ("assertion.nope == 'x'", Err(())),
        ("assertion.sub.matches('(unclosed')", Err(())),
    ];
    for (src, want) in table {
        let e = cel.compile(src, &["assertion"]);
        let got = e.and_then(|e| {
            let mut ctx = cel.context();
            ctx.add_variable_from_value(
                "assertion",
                claims_to_cel(claims.as_object().unwrap(), e.claims()),
            );
            e.eval(&ctx)
        });
        assert_eq!(got.map_err(|_| ()), *want, "{src}");
    }
}

#[test]
fn literal_regexes_are_checked_at_load() {
    let cel = Cel::new();
    assert!(
        cel.compile("assertion.sub.matches('^ok$')", &["assertion"])
            .is_ok()
    );
    let err = cel
        .compile("assertion.sub.matches('(bad')", &["assertion"])
        .unwrap_err();
    assert!(err.to_string().contains("invalid regex"), "{err}");
}

#[test]
fn extract_table() {
    assert_eq!(extract("repo:acme/app:ref:x", "repo:{repo}:"), "acme/app");
    assert_eq!(extract("user@example.com", "{user}@example.com"), "user");
    assert_eq!(extract("abc", "x{y}"), "");
    assert_eq!(extract("abc", "no placeholder"), "");
}

/// The fast path of `eval_bool` gives CEL's answer, error text included, on every
/// expression and context here: strings that match and do not, missing variables,
/// missing fields, fields that are numbers, lists or maps, and shapes the fast path does
/// not take (which must fall through to CEL unchanged).
#[test]
#[allow(clippy::too_many_lines, reason = "one table of cases")]
fn fast_path_agrees_with_cel() {
    let cel = Cel::new();
    let exprs = [
        "attribute.repository == 'octo/app' && attribute.environment == 'prod'",
        "attribute.repository == 'octo/app' || attribute.environment != 'prod'",
        "!(attribute.repository == 'octo/app')",
        "subject.endsWith('[bot]')",
        "subject.startsWith('repo:') && !subject.contains('evil')",
        "'prod' == attribute.environment",
        "assertion.n == '3'",
        "assertion.ref.matches('^refs/(heads|tags)/') && assertion.event != 'pull_request_target'",
        "assertion.missing == 'x' && true",
        "false && assertion.missing == 'x'",
        "assertion.missing == 'x' || true",
        "true || assertion.missing == 'x'",
        "assertion.groups == 'x'",
        "assertion.nested == 'x'",
        "nosuch == 'x'",
        "nosuch.field == 'x'",
        "client_id == '' || client_id.startsWith('ci-')",
        "true",
        "!false",
        "has(assertion.ref) && assertion.ref == 'refs/heads/main'",
        "has(attribute.environment) || has(nosuch.x)",
        // Not on the fast path: CEL evaluates these.
        "'admins' in assertion.groups",
        "assertion.n > 2",
    ];
    let subjects = [
        "repo:octo/app:ref:refs/heads/main",
        "dependabot[bot]",
        "repo:evil",
    ];
    let attributes = [
        BTreeMap::from([
            ("repository".to_owned(), "octo/app".to_owned()),
            ("environment".to_owned(), "prod".to_owned()),
        ]),
        BTreeMap::from([("repository".to_owned(), "octo/other".to_owned())]),
        BTreeMap::new(),
    ];
    let claims = [
        serde_json::json!({"ref": "refs/heads/main", "event": "push", "n": 3,
            "groups": ["a"], "nested": {"x": "y"}}),
        serde_json::json!({"ref": "refs/pull/1/merge", "n": "3", "groups": "x"}),
        serde_json::json!({}),
    ];
    let mut fast = 0;
    let mut compared = 0;
    let mut answered = 0;
    for source in exprs {
        let allowed = ["attribute", "subject", "assertion", "client_id", "nosuch"];
        let e = cel.compile(source, &allowed).unwrap();
        fast += usize::from(e.has_fast_path());
        for subject in subjects {
            for attrs in &attributes {
                for c in &claims {
                    for with_client in [false, true] {
                        let mut ctx = cel.context();
                        ctx.add_variable_from_value("subject", subject.to_owned());
                        ctx.add_variable_from_value("attribute", string_map(attrs));
                        ctx.add_variable_from_value(
                            "assertion",
                            claims_to_cel(c.as_object().unwrap(), &ClaimUse::All),
                        );
                        if with_client {
                            ctx.add_variable_from_value("client_id", "ci-deploy".to_owned());
                        }
                        let by_cel = match e.eval(&ctx) {
                            Ok(Value::Bool(b)) => Ok(b),
                            Ok(other) => Err(format!("expected a bool, got {}", other.type_of())),
                            Err(err) => Err(err.to_string()),
                        };
                        assert_eq!(
                            e.eval_bool(&ctx).map_err(|e| e.to_string()),
                            by_cel,
                            "{source} {subject} {attrs:?} {c}"
                        );
                        if let Some(b) = e.fast.as_ref().and_then(|f| f.eval(&ctx)) {
                            assert_eq!(Ok(b), by_cel);
                            answered += 1;
                        }
                        compared += 1;
                    }
                }
            }
        }
    }
    // Every expression above the marker takes the fast path; the two below do not.
    assert_eq!(fast, exprs.len() - 2);
    assert_eq!(compared, exprs.len() * 54);
    // The fast path answers most of the time, and gives up where CEL errs.
    assert!(answered > compared / 3, "{answered} of {compared}");
}

/// The same for string expressions (mappings): concatenations and `has(…) ? … : …`.
#[test]
fn fast_string_path_agrees_with_cel() {
    let cel = Cel::new();
    let exprs = [
        "'repo:' + assertion.repository + ':' + assertion.ref",
        "assertion.ref",
        "has(assertion.environment) ? assertion.environment : 'none'",
        "assertion.ref == 'refs/heads/main' ? 'main' : assertion.ref",
        "assertion.empty",
        "assertion.n",
        "assertion.missing + 'x'",
        "'x' + assertion.groups",
        "'fixed'",
        // Not on the fast path.
        "assertion.repository.split('/')[0]",
        "assertion.n + 1",
    ];
    let claims = [
        serde_json::json!({"repository": "octo/app", "ref": "refs/heads/main",
            "environment": "prod", "empty": "", "n": 3, "groups": ["a"]}),
        serde_json::json!({"repository": "octo/app", "ref": "refs/tags/v1", "environment": 5}),
        serde_json::json!({"ref": ""}),
    ];
    let (mut fast, mut answered) = (0, 0);
    for source in exprs {
        let e = cel.compile(source, &["assertion"]).unwrap();
        fast += usize::from(e.fast_str.is_some());
        for c in &claims {
            let mut ctx = cel.context();
            ctx.add_variable_from_value(
                "assertion",
                claims_to_cel(c.as_object().unwrap(), e.claims()),
            );
            let by_cel = match e.eval(&ctx) {
                Ok(Value::String(s)) if !s.is_empty() => Ok(s.to_string()),
                Ok(Value::String(_)) => Err("evaluated to an empty string".to_owned()),
                Ok(other) => Err(format!("expected a string, got {}", other.type_of())),
                Err(err) => Err(err.to_string()),
            };
            assert_eq!(
                e.eval_string(&ctx).map_err(|e| e.to_string()),
                by_cel,
                "{source} {c}"
            );
            if let Some(s) = e.eval_string_fast(&ctx) {
                assert_eq!(Ok(s), by_cel, "{source} {c}");
                answered += 1;
            }
        }
    }
    assert_eq!(fast, exprs.len() - 2);
    assert!(answered >= 10, "{answered}");
}

/// One runtime compiles an expression of the configuration once: providers written from
/// one template share the compiled program; other variables or another source compile
/// anew; expressions compiled for requests (`compile`) are never kept.
#[test]
fn identical_expressions_are_compiled_once() {
    let cel = Cel::new();
    let a = cel
        .compile_shared("assertion.sub == 'x'", &["assertion"])
        .unwrap();
    let b = cel
        .compile_shared("assertion.sub == 'x'", &["assertion"])
        .unwrap();
    assert!(Arc::ptr_eq(&a.program, &b.program));
    let other_vars = cel
        .compile_shared("assertion.sub == 'x'", &["assertion", "google"])
        .unwrap();
    assert!(!Arc::ptr_eq(&a.program, &other_vars.program));
    let other_source = cel
        .compile_shared("assertion.sub == 'y'", &["assertion"])
        .unwrap();
    assert!(!Arc::ptr_eq(&a.program, &other_source.program));
    // A runtime of its own (another configuration) shares nothing.
    let c = Cel::new()
        .compile_shared("assertion.sub == 'x'", &["assertion"])
        .unwrap();
    assert!(!Arc::ptr_eq(&a.program, &c.program));
    // Errors are not kept as successes.
    assert!(cel.compile_shared("assertin.sub", &["assertion"]).is_err());
    assert!(cel.compile_shared("assertin.sub", &["assertion"]).is_err());
    // Request-time compilation neither reads nor fills the shared map.
    let r1 = cel.compile("request.x == 'y'", &["request"]).unwrap();
    let r2 = cel.compile("request.x == 'y'", &["request"]).unwrap();
    assert!(!Arc::ptr_eq(&r1.program, &r2.program));
    let shared = cel
        .compile_shared("assertion.sub == 'x'", &["assertion"])
        .unwrap();
    let fresh = cel.compile("assertion.sub == 'x'", &["assertion"]).unwrap();
    assert!(Arc::ptr_eq(&a.program, &shared.program));
    assert!(!Arc::ptr_eq(&a.program, &fresh.program));
    assert_eq!(
        cel.cache().len(),
        3,
        "only the configuration's expressions are kept"
    );
}

/// The typed errors print the messages `ferry check`, `ferry explain` and audit details
/// showed when they were strings.
#[test]
fn expression_errors_keep_their_messages() {
    let long = "a".repeat(MAX_EXPRESSION_LEN + 1);
    let cases: Vec<(Result<Expr, ExprError>, &str)> = vec![
        (
            Expr::compile(&long, &["a"]),
            "expression longer than 4096 bytes",
        ),
        (
            Expr::compile("assertin.sub", &["assertion", "client_id"]),
            "unknown variable 'assertin' (available: assertion, client_id)",
        ),
        (Expr::compile("(", &["a"]), "does not compile: "),
        (
            Expr::compile("'x'.matches('(bad')", &[]),
            "invalid regex: regex parse error",
        ),
    ];
    for (result, prefix) in cases {
        let msg = result.unwrap_err().to_string();
        assert!(
            msg.starts_with(prefix),
            "{msg} does not start with {prefix}"
        );
    }
    let cel = Cel::new();
    let ctx = cel.context();
    let eval = |src: &str| Expr::compile(src, &[]).unwrap();
    assert_eq!(
        eval("1").eval_bool(&ctx).unwrap_err().to_string(),
        "expected a bool, got int"
    );
    assert_eq!(
        eval("true").eval_string(&ctx).unwrap_err().to_string(),
        "expected a string, got bool"
    );
    assert_eq!(
        eval("''").eval_string(&ctx).unwrap_err().to_string(),
        "evaluated to an empty string"
    );
    assert_eq!(
        eval("'a'").eval_string_list(&ctx).unwrap_err().to_string(),
        "expected a list, got string"
    );
    assert_eq!(
        eval("['a', 1]")
            .eval_string_list(&ctx)
            .unwrap_err()
            .to_string(),
        "expected a list of strings, found int"
    );
    assert_eq!(
        eval("{'a': 1}['b']")
            .eval_bool(&ctx)
            .unwrap_err()
            .to_string(),
        eval("{'a': 1}['b']").eval(&ctx).unwrap_err().to_string()
    );
}
