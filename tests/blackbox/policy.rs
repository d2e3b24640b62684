//! `ferry explain` and `ferry test` through the real binary.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::json;

use crate::harness::{TempDir, bin};

const CONFIG: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: idp
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { file: idp-jwks.json }
    condition: assertion.org_id == '65'
    mapping:
      subject: "'repo:' + assertion.repository"
      attributes:
        repository: assertion.repository
        actor: assertion.actor
audiences:
  - audience: https://deploy.example.com
    rules:
      - name: no-bots
        deny: attribute.actor.endsWith('[bot]')
        message: bots may not deploy
      - name: app
        allow: attribute.repository == 'acme/app'
        scopes: [deploy:read, deploy:write]
        max_ttl: 10m
"#;

fn setup(tmp: &Path) -> Issuer {
    let idp = Issuer::new("https://idp.example.com", TestKey::rsa("k1"));
    std::fs::write(tmp.join("idp-jwks.json"), jwks(&[&idp.key]).to_string()).unwrap();
    std::fs::write(tmp.join("ferry.yaml"), CONFIG).unwrap();
    idp
}

fn claims(actor: &str, repo: &str) -> serde_json::Value {
    json!({"iss": "https://idp.example.com", "aud": "https://ferry.example.com", "sub": "x",
           "org_id": "65", "repository": repo, "actor": actor, "iat": 1_700_000_000, "exp": 1_700_000_300})
}

fn ferry(args: &[&str], dir: &Path) -> Output {
    Command::new(bin("ferry"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn explain_an_allowed_and_a_denied_request() {
    let tmp = TempDir::new("explain");
    let idp = setup(tmp.path());
    std::fs::write(
        tmp.path().join("ok.json"),
        claims("octocat", "acme/app").to_string(),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("bot.json"),
        claims("deployer[bot]", "acme/app").to_string(),
    )
    .unwrap();

    let args = |file: &str| {
        vec![
            "explain",
            "--config",
            "ferry.yaml",
            "--claims",
            file,
            "--audience",
            "https://deploy.example.com",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        ferry(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            tmp.path(),
        )
    };

    let ok = run(args("ok.json"));
    let out = text(&ok);
    assert!(ok.status.success(), "{out}");
    for needle in [
        "provider: idp (static)",
        "verify: skipped",
        "condition providers[0].condition `assertion.org_id == '65'` → true",
        "mapping subject `'repo:' + assertion.repository` → \"repo:acme/app\"",
        "audiences[0].rules[0] (no-bots) deny `attribute.actor.endsWith('[bot]')` → false",
        "audiences[0].rules[1] (app) allow `attribute.repository == 'acme/app'` → true",
        "decision: ALLOW",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }

    let bot = run(args("bot.json"));
    let out = text(&bot);
    assert_eq!(bot.status.code(), Some(1), "{out}");
    assert!(
        out.contains("→ true")
            && out.contains(
                "decision: DENY — invalid_target at policy by audiences[0].rules[0] (no-bots)"
            ),
        "{out}"
    );

    // With a real token the signature and claim checks are run and shown.
    let t = now();
    let token = idp.token(
        &json!({"iss": "https://idp.example.com", "aud": "https://ferry.example.com", "sub": "x",
        "org_id": "65", "repository": "acme/app", "actor": "octocat", "iat": t, "exp": t + 300}),
    );
    std::fs::write(tmp.path().join("token.jwt"), format!("{token}\n")).unwrap();
    let mut a = args("x");
    a[3] = "--token".into();
    a[4] = "token.jwt".into();
    let real = run(a);
    let out = text(&real);
    assert!(real.status.success(), "{out}");
    assert!(
        out.contains("verify: signature ok (RS256, kid k1)") && out.contains("decision: ALLOW"),
        "{out}"
    );
}

#[test]
fn policy_test_tables_pass_and_fail() {
    let tmp = TempDir::new("policy-test");
    setup(tmp.path());
    let case = |name: &str, actor: &str, repo: &str, expect: &str, extra: &str| {
        format!(
            "  - name: {name}\n    claims: {}\n    audience: https://deploy.example.com\n    expect: {expect}\n{extra}",
            claims(actor, repo)
        )
    };
    let passing = format!(
        "cases:\n{}{}{}{}",
        case(
            "app may deploy",
            "octocat",
            "acme/app",
            "allow",
            "    rule: audiences[0].rules[1] (app)\n    scopes: [deploy:read, deploy:write]\n"
        ),
        case(
            "narrow scope",
            "octocat",
            "acme/app",
            "allow",
            "    scope: deploy:read\n    scopes: [deploy:read]\n"
        ),
        case(
            "bots may not",
            "ci[bot]",
            "acme/app",
            "deny",
            "    rule: audiences[0].rules[0] (no-bots)\n    step: policy\n    error: invalid_target\n"
        ),
        case(
            "other repos may not",
            "octocat",
            "acme/other",
            "deny",
            "    error: invalid_target\n    rule: 'audience https://deploy.example.com: default deny'\n"
        ),
    );
    std::fs::write(tmp.path().join("cases.yaml"), &passing).unwrap();
    let o = ferry(
        &["test", "--config", "ferry.yaml", "cases.yaml"],
        tmp.path(),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("4 passed, 0 failed"), "{out}");

    // The same table with one wrong expectation fails, naming the case.
    let failing = format!(
        "cases:\n{}{}{}",
        case("app may deploy", "octocat", "acme/app", "allow", ""),
        case(
            "bots may deploy (wrong)",
            "ci[bot]",
            "acme/app",
            "allow",
            ""
        ),
        case("never reached", "octocat", "acme/app", "allow", ""),
    );
    std::fs::write(tmp.path().join("failing.yaml"), &failing).unwrap();
    let o = ferry(
        &["test", "--config", "ferry.yaml", "failing.yaml"],
        tmp.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL case 2 (bots may deploy (wrong))") && out.contains("no-bots"),
        "{out}"
    );
    assert!(!out.contains("never reached"), "{out}");
}

/// `ferry explain --source-ip …` and `ferry test` cases with `request:` evaluate the
/// request's context (`request.*`) as /token would; each beside its twin.
#[test]
fn explain_and_test_take_the_requests_context() {
    let tmp = TempDir::new("explain-context");
    setup(tmp.path());
    let office = CONFIG.replace(
        "      - name: no-bots",
        "      - name: office-only\n        deny: \"!cidr('10.0.0.0/8').containsIP(request.source_ip) && !request.sender_constrained\"\n      - name: no-bots",
    );
    std::fs::write(tmp.path().join("ferry.yaml"), office).unwrap();
    std::fs::write(
        tmp.path().join("ok.json"),
        claims("octocat", "acme/app").to_string(),
    )
    .unwrap();
    let explain = |extra: &[&str]| {
        let mut a = vec![
            "explain",
            "--config",
            "ferry.yaml",
            "--claims",
            "ok.json",
            "--audience",
            "https://deploy.example.com",
        ];
        a.extend_from_slice(extra);
        ferry(&a, tmp.path())
    };
    let inside = explain(&["--source-ip", "10.1.2.3"]);
    assert!(inside.status.success(), "{}", text(&inside));
    let outside = explain(&["--source-ip", "192.0.2.1"]);
    assert_eq!(outside.status.code(), Some(1), "{}", text(&outside));
    assert!(
        text(&outside).contains("(office-only)"),
        "{}",
        text(&outside)
    );
    let bound = explain(&["--source-ip", "192.0.2.1", "--sender-constrained"]);
    assert!(bound.status.success(), "{}", text(&bound));

    let c = claims("octocat", "acme/app");
    let cases = json!({"cases": [
        {"name": "office", "claims": c, "audience": "https://deploy.example.com",
         "request": {"source_ip": "10.9.9.9"}, "expect": "allow"},
        {"name": "cafe", "claims": c, "audience": "https://deploy.example.com",
         "request": {"source_ip": "198.51.100.7"}, "expect": "deny", "rule": "audiences[0].rules[0] (office-only)"},
        {"name": "cafe but bound", "claims": c, "audience": "https://deploy.example.com",
         "request": {"source_ip": "198.51.100.7", "sender_constrained": true}, "expect": "allow"}
    ]});
    std::fs::write(tmp.path().join("cases.yaml"), cases.to_string()).unwrap();
    let t = ferry(
        &["test", "--config", "ferry.yaml", "cases.yaml"],
        tmp.path(),
    );
    assert!(t.status.success(), "{}", text(&t));
    assert!(text(&t).contains("3 passed, 0 failed"), "{}", text(&t));
}

/// `ferry explain` prints an audience's own claims, and `ferry test` checks them with
/// `token_claims`: the right values pass, a wrong one fails naming the case; a claim
/// whose expression fails denies at the step `claims`.
#[test]
fn explain_and_test_show_the_audiences_own_claims() {
    let tmp = TempDir::new("explain-claims");
    setup(tmp.path());
    let with_claims = CONFIG.replace(
        "        max_ttl: 10m\n",
        "        max_ttl: 10m\n    claims:\n      repository: attribute.repository\n      build: \"int(attribute.actor)\"\n",
    );
    std::fs::write(tmp.path().join("ferry.yaml"), with_claims).unwrap();
    std::fs::write(
        tmp.path().join("ok.json"),
        claims("7", "acme/app").to_string(),
    )
    .unwrap();
    let o = ferry(
        &[
            "explain",
            "--config",
            "ferry.yaml",
            "--claims",
            "ok.json",
            "--audience",
            "https://deploy.example.com",
        ],
        tmp.path(),
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(r#"claims: {"build":7,"repository":"acme/app"}"#),
        "{out}"
    );
    assert!(
        out.contains("claims audiences[0].claims.build: `int(attribute.actor)` → 7"),
        "{out}"
    );

    let c = claims("7", "acme/app");
    let case = |name: &str, claims: &serde_json::Value, extra: serde_json::Value| {
        let mut v = json!({"name": name, "claims": claims,
                           "audience": "https://deploy.example.com", "expect": "allow"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        v
    };
    let run = |cases: serde_json::Value| {
        std::fs::write(
            tmp.path().join("cases.yaml"),
            json!({"cases": cases}).to_string(),
        )
        .unwrap();
        ferry(
            &["test", "--config", "ferry.yaml", "cases.yaml"],
            tmp.path(),
        )
    };
    let right = json!({"token_claims": {"repository": "acme/app", "build": 7}});
    let t = run(json!([case("right", &c, right)]));
    assert!(t.status.success(), "{}", text(&t));
    let wrong = json!({"token_claims": {"repository": "acme/other", "build": 7}});
    let t = run(json!([case("wrong", &c, wrong)]));
    assert_eq!(t.status.code(), Some(1), "{}", text(&t));
    assert!(
        text(&t).contains("FAIL case 1 (wrong): token claims"),
        "{}",
        text(&t)
    );
    // An actor that is not a number: `int()` fails, the request is denied at `claims`.
    let octocat = claims("octocat", "acme/app");
    let denied = json!({"expect": "deny", "step": "claims", "rule": "audiences[0].claims.build"});
    let t = run(json!([case("not a number", &octocat, denied)]));
    assert!(t.status.success(), "{}", text(&t));
}
