use super::*;
use std::collections::BTreeMap;

fn rule(path: &str, allow: &str, scopes: &[&str], max_ttl: Option<u64>) -> Rule {
    Rule {
        path: path.into(),
        effect: Effect::Allow,
        expr: Expr::compile(allow, POLICY_VARS).unwrap(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        max_ttl,
        message: None,
        require_dpop: false,
    }
}

fn audience(name: &str, default_ttl: Option<u64>, rules: Vec<Rule>) -> Audience {
    Audience {
        name: name.into(),
        default_ttl,
        rules,
        ignore_unknown_scopes: false,
        message: None,
        require_dpop: false,
        require_mtls: false,
        claims: vec![],
    }
}

fn policy() -> Policy {
    Policy::new(
        Cel::new(),
        vec![
            audience(
                "a",
                Some(600),
                vec![
                    rule(
                        "a[0]",
                        "attribute.repo == 'acme/app'",
                        &["read", "write"],
                        Some(300),
                    ),
                    rule("a[1]", "provider == 'gh'", &["read"], None),
                ],
            ),
            audience(
                "b",
                None,
                vec![rule(
                    "b[0]",
                    "subject.startsWith('repo:')",
                    &["read"],
                    Some(900),
                )],
            ),
        ],
        false,
    )
}

fn principal(repo: &str) -> Principal {
    Principal {
        provider: "gh".into(),
        subject: "repo:x".into(),
        groups: vec![],
        attributes: BTreeMap::from([("repo".to_owned(), repo.to_owned())]),
        original_issuer: "https://idp".into(),
        original_subject: None,
        ancestors: Vec::new(),
        subject_act: None,
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn first_allowing_rule_decides() {
    let g = policy()
        .decide(&principal("acme/app"), None, &s(&["a"]), &[], None, None)
        .unwrap();
    assert_eq!(g.scopes, s(&["read", "write"]));
    assert_eq!(g.ttl_cap, Some(300));
    let g = policy()
        .decide(&principal("acme/other"), None, &s(&["a"]), &[], None, None)
        .unwrap();
    assert_eq!(g.scopes, s(&["read"]));
    assert_eq!(g.rules, s(&["a[1]"]));
}

#[test]
fn unknown_and_denied_audiences_look_alike() {
    let unknown = policy()
        .decide(&principal("acme/app"), None, &s(&["zzz"]), &[], None, None)
        .unwrap_err();
    let mut p = principal("acme/app");
    p.subject = "user:x".into();
    let denied = policy()
        .decide(&p, None, &s(&["b"]), &[], None, None)
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::InvalidTarget);
    assert_eq!(unknown.description, denied.description);
    assert_eq!(denied.code, ErrorCode::InvalidTarget);
}

#[test]
fn several_audiences_need_each_and_intersect_scopes() {
    let g = policy()
        .decide(
            &principal("acme/app"),
            None,
            &s(&["a", "b"]),
            &[],
            None,
            None,
        )
        .unwrap();
    assert_eq!(g.scopes, s(&["read"]));
    assert_eq!(g.ttl_cap, Some(300));
    let err = policy()
        .decide(
            &principal("acme/app"),
            None,
            &s(&["a", "zzz"]),
            &[],
            None,
            None,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidTarget);
}

#[test]
fn requested_scopes_must_be_granted() {
    let p = principal("acme/app");
    assert!(
        policy()
            .decide(&p, None, &s(&["a"]), &s(&["write"]), None, None)
            .is_ok()
    );
    let err = policy()
        .decide(&p, None, &s(&["a", "b"]), &s(&["write"]), None, None)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidScope);
}

/// The view the fast path reads holds exactly the strings of the CEL context a rule
/// would otherwise get: every variable and field asked of both answers alike.
#[test]
fn the_view_answers_as_the_cel_context_does() {
    let p = policy();
    let mut subject = principal("acme/app");
    subject.groups = s(&["admins"]);
    let actor = principal("acme/deployer");
    let targets = s(&["https://a", "https://b"]);
    let names = [
        "subject",
        "provider",
        "groups",
        "attribute",
        "client_id",
        "request",
        "actor",
        "nope",
    ];
    let fields = [
        "repo",
        "environment",
        "subject",
        "provider",
        "attribute",
        "audience",
        "audiences",
        "scopes",
        "source_ip",
        "nope",
    ];
    let situation = Situation {
        source_ip: Some("10.1.2.3".parse().unwrap()),
        ..Situation::default()
    };
    let mut strings = 0;
    for actor in [None, Some(&actor)] {
        for client_id in ["", "ci"] {
            for target in &targets {
                let view = View {
                    principal: &subject,
                    client_id,
                    actor,
                    audience: target,
                    source_ip: &std::cell::OnceCell::new(),
                    situation: &situation,
                };
                let ctx = p.rule_context(
                    &subject,
                    client_id,
                    actor,
                    target,
                    &targets,
                    &s(&["x"]),
                    &situation,
                );
                for name in names {
                    assert_eq!(view.string(name), Vars::string(&ctx, name), "{name}");
                    strings += usize::from(view.string(name).is_some());
                    for field in fields {
                        if let Some(has) = view.has(name, field) {
                            assert_eq!(
                                Some(has),
                                Vars::has(&ctx, name, field),
                                "has {name}.{field}"
                            );
                        }
                        assert_eq!(
                            view.field(name, field),
                            Vars::field(&ctx, name, field),
                            "{name}.{field}"
                        );
                        strings += usize::from(view.field(name, field).is_some());
                    }
                }
            }
        }
    }
    // subject, provider, client_id, attribute.repo, request.audience, request.source_ip;
    // actor's two (empty strings without an actor).
    assert_eq!(strings, 8 * 6 + 8 * 2);
}
