//! CEL behaviours: compile-time checks, claim use, the runtime's functions.
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
    assert!(err.contains("invalid regex"), "{err}");
}

#[test]
fn extract_table() {
    assert_eq!(extract("repo:acme/app:ref:x", "repo:{repo}:"), "acme/app");
    assert_eq!(extract("user@example.com", "{user}@example.com"), "user");
    assert_eq!(extract("abc", "x{y}"), "");
    assert_eq!(extract("abc", "no placeholder"), "");
}
