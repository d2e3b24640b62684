use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::expr::Cel;
use crate::policy::{Audience, Effect, POLICY_VARS, Rule};

const VARS: &[&str] = CLAIM_VARS;

fn template(cel: &Cel, aud: usize, name: &str, src: &str) -> ClaimTemplate {
    ClaimTemplate {
        name: name.into(),
        path: format!("audiences[{aud}].claims.{name}"),
        expr: cel.compile(src, VARS).unwrap(),
    }
}

fn policy(a: Vec<(&str, &str)>, b: Vec<(&str, &str)>) -> Policy {
    let cel = Cel::new();
    let audience = |i: usize, name: &str, claims: &[(&str, &str)]| Audience {
        name: name.into(),
        default_ttl: None,
        rules: vec![Rule {
            path: format!("audiences[{i}].rules[0]"),
            effect: Effect::Allow,
            expr: cel.compile("true", POLICY_VARS).unwrap(),
            scopes: vec![],
            max_ttl: None,
            message: None,
            require_dpop: false,
        }],
        ignore_unknown_scopes: false,
        message: None,
        require_dpop: false,
        require_mtls: false,
        claims: claims
            .iter()
            .map(|(n, s)| template(&cel, i, n, s))
            .collect(),
    };
    let auds = vec![audience(0, "a", &a), audience(1, "b", &b)];
    Policy::new(cel, auds, false)
}

fn principal() -> Principal {
    Principal {
        provider: "github".into(),
        subject: "repo:acme/app".into(),
        groups: vec!["deployers".into(), "ops".into()],
        attributes: BTreeMap::from([("repository".into(), "acme/app".into())]),
        original_issuer: "https://issuer".into(),
        ..Principal::default()
    }
}

fn claims_for(p: &Policy, targets: &[&str]) -> Result<Map<String, Json>, OAuthError> {
    let principal = principal();
    let targets: Vec<String> = targets.iter().map(|t| (*t).to_owned()).collect();
    let grant = p.decide(&principal, Some("ci"), &targets, &[], None, None)?;
    let situation = Situation::default();
    let who = Asker {
        situation: &situation,
        principal: &principal,
        client_id: Some("ci"),
    };
    p.custom_claims(&who, &grant, None)
}

#[test]
fn each_value_type_becomes_its_json_twin() {
    let p = policy(
        vec![
            ("repository", "attribute.repository"),
            ("tenant_no", "7"),
            ("ratio", "0.5"),
            ("ci", "client_id == 'ci'"),
            ("teams", "groups"),
            ("aud_seen", "request.audience"),
        ],
        vec![],
    );
    let c = claims_for(&p, &["a"]).unwrap();
    assert_eq!(
        Json::Object(c),
        json!({"repository": "acme/app", "tenant_no": 7, "ratio": 0.5, "ci": true,
               "teams": ["deployers", "ops"], "aud_seen": "a"})
    );
    // The twin without claims: an audience with none adds nothing.
    assert!(claims_for(&p, &["b"]).unwrap().is_empty());
}

#[test]
fn a_value_of_another_type_or_an_error_is_refused_naming_the_claim() {
    for (src, why) in [
        ("{'a': 'b'}", "map"),
        ("[1, 2]", "list item"),
        ("null", "null"),
        ("b'x'", "bytes"),
        (&format!("'{}'", "x".repeat(1025)), "too long"),
        (
            &format!("[{}]", vec!["'x'"; 65].join(",")),
            "too many items",
        ),
    ] {
        let p = policy(vec![("ok", "'fine'"), ("bad", src)], vec![]);
        let e = claims_for(&p, &["a"]).expect_err(why);
        assert!(!e.detail.contains("Undeclared"), "{why}: {}", e.detail);
        assert_eq!(e.step, Step::Claims, "{why}");
        assert_eq!(e.rule.as_deref(), Some("audiences[0].claims.bad"), "{why}");
        assert_eq!(e.description, desc::CLAIMS_FAILED, "{why}");
    }
}

#[test]
fn an_expression_error_is_refused_beside_its_twin() {
    let e = claims_for(&policy(vec![("bad", "attribute.missing")], vec![]), &["a"]).unwrap_err();
    assert_eq!(e.rule.as_deref(), Some("audiences[0].claims.bad"));
    assert!(e.detail.starts_with("expression error"), "{}", e.detail);
    let ok = claims_for(
        &policy(vec![("bad", "attribute.repository")], vec![]),
        &["a"],
    );
    assert_eq!(ok.unwrap().len(), 1);
}

#[test]
fn requested_scopes_and_audiences_are_not_there_to_read() {
    // However written, `request.scopes` is no member of the claims' `request`; the twin
    // reads a member that is.
    for src in ["request['scopes']", "request['audiences']"] {
        let e = claims_for(&policy(vec![("x", src)], vec![]), &["a"]).unwrap_err();
        assert_eq!(e.step, Step::Claims, "{src}");
    }
    let ok = claims_for(&policy(vec![("x", "request['audience']")], vec![]), &["a"]);
    assert_eq!(Json::Object(ok.unwrap()), json!({"x": "a"}));
    assert!(source_problem("'w' in request . scopes").is_some());
    assert!(source_problem("request[\"audiences\"]").is_some());
    assert!(source_problem("request.audience").is_none());
}

/// The bounds themselves pass: a 1 KiB value, 64 items, and own claims just under the
/// token's total; one more byte or item is refused (above and in the total test).
#[test]
fn values_at_their_bounds_pass() {
    let kib = format!("'{}'", "x".repeat(MAX_VALUE_BYTES));
    let items = format!("[{}]", vec!["'x'"; MAX_LIST_ITEMS].join(","));
    let c = claims_for(&policy(vec![("v", &kib), ("l", &items)], vec![]), &["a"]).unwrap();
    assert_eq!(c.len(), 2);
    // Total: each claim costs its name, its JSON value and 4 bytes; four 1000-byte
    // strings named c0..c3 come to 4 × (2 + 1002 + 4) = 4032 ≤ 4096, five do not.
    let claim = format!("'{}'", "x".repeat(1000));
    let names = ["c0", "c1", "c2", "c3", "c4"];
    let under: Vec<(&str, &str)> = names[..4].iter().map(|n| (*n, claim.as_str())).collect();
    assert_eq!(claims_for(&policy(under, vec![]), &["a"]).unwrap().len(), 4);
    let over: Vec<(&str, &str)> = names.iter().map(|n| (*n, claim.as_str())).collect();
    assert!(claims_for(&policy(over, vec![]), &["a"]).is_err());
}

#[test]
fn two_audiences_must_agree_on_a_shared_name() {
    let p = policy(vec![("tenant", "'t1'")], vec![("tenant", "'t1'")]);
    assert_eq!(
        Json::Object(claims_for(&p, &["a", "b"]).unwrap()),
        json!({"tenant": "t1"})
    );
    let p = policy(vec![("tenant", "'t1'")], vec![("tenant", "'t2'")]);
    let e = claims_for(&p, &["a", "b"]).unwrap_err();
    assert_eq!(e.rule.as_deref(), Some("audiences[1].claims.tenant"));
}

#[test]
fn the_total_size_is_bounded() {
    let claims: Vec<(String, String)> = (0..6)
        .map(|i| (format!("c{i}"), format!("'{}'", "x".repeat(1000))))
        .collect();
    let refs: Vec<(&str, &str)> = claims
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let e = claims_for(&policy(refs.clone(), vec![]), &["a"]).unwrap_err();
    assert!(e.detail.contains("exceed"), "{}", e.detail);
    // Twin: three such values fit.
    assert_eq!(
        claims_for(&policy(refs[..3].to_vec(), vec![]), &["a"])
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn reserved_and_malformed_names_are_refused() {
    for n in [
        "sub",
        "email",
        "Email",
        "access_boundaries",
        "ferry",
        "_x",
        "",
        "a b",
        "é",
    ] {
        assert!(name_problem(n).is_some(), "{n:?}");
    }
    for n in [
        "repository",
        "tenant_id",
        "https://acme.example/tenant",
        "x-team",
    ] {
        assert!(name_problem(n).is_none(), "{n:?}");
    }
}
