//! Configuration traps: each refused case beside an accepted twin that differs only in
//! the trapped part.

use super::*;

/// Every trap's twin: this configuration loads.
const BASE: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: gh
    kind: github
    audiences: [https://ferry.example.com]
    condition: CONDITION
  - id: idp
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { file: keys.json }
clients:
  - { id: ci, auth: client_secret_basic, secret_sha256: SECRET }
  - { id: ci-jwt, auth: private_key_jwt, jwks: { file: ci.json } }
  - { id: ci-public, auth: none }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: RULE
"#;

const PIN: &str = "assertion.repository_owner_id == '123' && assertion.event_name == 'push'";
const REAL: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn config(condition: &str, rule: &str, secret: &str, extra: &str) -> String {
    BASE.replace("CONDITION", &format!("\"{condition}\"{extra}"))
        .replace("RULE", &format!("\"{rule}\""))
        .replace("SECRET", secret)
}

/// The problems of a configuration, as `path: message`.
fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("/")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.into_iter().map(|(p, m)| format!("{p}: {m}")).collect(),
    }
}

#[test]
fn the_base_loads() {
    assert_eq!(
        problems(&config(PIN, "true", REAL, "")),
        Vec::<String>::new()
    );
}

#[test]
fn a_github_pin_is_read_from_the_condition_not_its_text() {
    let cases = [
        (PIN, true),
        (
            "assertion.repository_owner_id == '123' && assertion.workflow == 'ci'",
            true,
        ),
        ("assertion.repository_id in ['1', '2']", true),
        (
            "assertion['enterprise_id'] == '7' && assertion.ref == 'refs/heads/main'",
            true,
        ),
        ("has(assertion.repository_owner_id) || true", false),
        ("assertion.repository_owner_id != '1'", false),
        (
            "assertion.repository_owner_id == '123' || assertion.event_name == 'push'",
            false,
        ),
        ("assertion.repository_owner == 'acme'", false),
        ("assertion.repository_owner_id == ''", false),
    ];
    for (condition, ok) in cases {
        let p = problems(&config(condition, "true", REAL, ""));
        if ok {
            assert!(p.is_empty(), "{condition}: {p:?}");
        } else {
            assert!(
                p.iter().any(|e| e.starts_with("providers[0].condition:")),
                "{condition}: {p:?}"
            );
        }
    }
    // allow_unpinned still overrides, deliberately.
    let unpinned = config(
        "has(assertion.repository_owner_id) || true",
        "true",
        REAL,
        "\n    allow_unpinned: true",
    );
    assert!(problems(&unpinned).is_empty());
}

#[test]
fn a_github_provider_verifies_rs256_only() {
    for (algs, ok) in [
        ("[RS256]", true),
        ("[RS256, ES256]", false),
        ("[ES256]", false),
        ("[RS256, RS256]", false),
        ("[PS256]", false),
    ] {
        let text = config(PIN, "true", REAL, &format!("\n    algorithms: {algs}"));
        let p = problems(&text);
        assert_eq!(p.is_empty(), ok, "{algs}: {p:?}");
        if !ok {
            assert!(p[0].starts_with("providers[0].algorithms:"), "{p:?}");
        }
    }
}

#[test]
fn github_actions_issuer_is_trusted_only_by_the_github_preset() {
    let second = |kind: &str, issuer: &str| {
        config(PIN, "true", REAL, "").replace(
            "  - id: idp\n    issuer: https://idp.example.com\n",
            &format!("  - id: idp\n{kind}    issuer: {issuer}\n"),
        )
    };
    for (kind, issuer, ok) in [
        ("", "https://token.actions.githubusercontent.com", false),
        (
            "    kind: oidc\n",
            "https://token.actions.githubusercontent.com",
            false,
        ),
        (
            "    kind: static\n",
            "https://token.actions.githubusercontent.com",
            false,
        ),
        (
            "    kind: oidc\n",
            "https://token.actions.githubusercontent.com/acme",
            false,
        ),
        // Twins: the same provider for another issuer.
        ("", "https://idp.example.com", true),
        ("    kind: oidc\n", "https://token.example.com", true),
    ] {
        let p = problems(&second(kind, issuer));
        assert_eq!(p.is_empty(), ok, "{kind}{issuer}: {p:?}");
        if !ok {
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with("providers[1].kind:"), "{p:?}");
        }
    }
}

#[test]
fn a_client_secret_hash_is_not_the_empty_strings() {
    for (hash, ok) in [
        (REAL, true),
        (EMPTY, false),
        (&EMPTY.to_ascii_uppercase() as &str, false),
    ] {
        let p = problems(&config(PIN, "true", hash, ""));
        assert_eq!(p.is_empty(), ok, "{hash}: {p:?}");
        if !ok {
            assert!(p[0].starts_with("clients[0].secret_sha256:"), "{p:?}");
        }
    }
}

#[test]
fn client_id_is_compared_only_with_confidential_clients() {
    for (rule, ok) in [
        ("client_id == 'ci'", true),
        ("'ci-jwt' == client_id", true),
        ("client_id in ['ci', 'ci-jwt']", true),
        ("client_id != 'ci' && true", true),
        ("client_id == 'ci-public'", false),
        ("client_id == 'stranger'", false),
        ("client_id in ['ci', 'stranger']", false),
        ("client_id != 'ci-public'", false),
        ("client_id == ''", false),
        ("subject == 'ci-public'", true),
    ] {
        let p = problems(&config(PIN, rule, REAL, ""));
        assert_eq!(p.is_empty(), ok, "{rule}: {p:?}");
        if !ok {
            assert!(p[0].starts_with("audiences[0].rules[0]:"), "{p:?}");
            assert!(
                p[0].contains("not a registered confidential client"),
                "{p:?}"
            );
        }
    }
    // Any other test of client_id can be met by a label anyone sends (twin: `== 'ci'`
    // above, a registered confidential client).
    for rule in [
        "client_id.startsWith('ci')",
        "client_id.matches('^ci$')",
        "client_id == 'c' + 'i'",
        "client_id in [subject]",
        "size(client_id) > 0",
    ] {
        let p = problems(&config(PIN, rule, REAL, ""));
        assert_eq!(p.len(), 1, "{rule}: {p:?}");
        assert!(
            p[0].starts_with("audiences[0].rules[0]:") && p[0].contains("other than by comparing"),
            "{p:?}"
        );
    }
}

#[test]
fn accepted_types_add_kinds_but_never_a_non_identity_one() {
    let with = |types: &str| {
        config(PIN, "true", REAL, "").replace(
            "    jwks: { file: keys.json }",
            &format!("    jwks: {{ file: keys.json }}\n    accepted_types: {types}"),
        )
    };
    for (types, ok) in [
        ("[foo+jwt]", true),
        ("[application/foo+jwt, jwt]", true),
        ("[dpop+jwt]", false),
        ("[foo+jwt, application/Logout+JWT]", false),
        ("[secevent+jwt]", false),
        ("['']", false),
        ("['foo jwt']", false),
    ] {
        let p = problems(&with(types));
        assert_eq!(p.is_empty(), ok, "{types}: {p:?}");
        if !ok {
            assert!(p[0].starts_with("providers[1].accepted_types:"), "{p:?}");
        }
    }
    let c = parse(&with("[foo+jwt]"), Path::new("/")).unwrap();
    assert_eq!(c.providers[1].accepted_types, vec!["foo+jwt"]);
    assert!(c.providers[0].accepted_types.is_empty());
}

#[test]
fn a_service_account_opts_in_to_the_token_endpoint_audience() {
    let text = |extra: &str| {
        format!(
            "{}service_accounts:\n  - id: builder\n    jwks: {{ file: b.json }}\n{extra}",
            config(PIN, "true", REAL, "")
        )
    };
    let c = parse(&text(""), Path::new("/")).unwrap();
    assert!(!c.service_accounts[0].accept_token_endpoint_audience);
    let c = parse(
        &text("    accept_token_endpoint_audience: true\n"),
        Path::new("/"),
    )
    .unwrap();
    assert!(c.service_accounts[0].accept_token_endpoint_audience);
}

/// A provider may not take a name Ferry writes itself (`ferry` for narrowed tokens,
/// `service-account` for service accounts' own assertions): its tokens would pass for
/// those in rules and revocation. Twin: any other name, and `service-account` for the
/// service_account kind.
#[test]
fn reserved_provider_ids_are_refused() {
    let base = config(PIN, "true", REAL, "");
    for id in ["ferry", "service-account"] {
        let text = base.replace("  - id: idp\n", &format!("  - id: {id}\n"));
        assert_eq!(
            problems(&text),
            vec![format!(
                "providers[1].id: is reserved: 'ferry' always, 'service-account' for any kind but service_account"
            )],
            "{id}"
        );
    }
    let twin = base.replace("  - id: idp\n", "  - id: ferry-idp\n");
    assert_eq!(problems(&twin), Vec::<String>::new());
    let sa = base.replace(
        "  - id: idp\n",
        "  - id: service-account\n    kind: service_account\n  - id: idp\n",
    );
    assert!(
        !problems(&sa).iter().any(|p| p.contains("reserved")),
        "{:?}",
        problems(&sa)
    );
}

/// `ca_file` and `allow_private_network` are for keys fetched over the network; on a
/// key file they would silently do nothing, so they are refused. Twin: on `jwks.uri`.
#[test]
fn network_options_need_fetched_keys() {
    let base = config(PIN, "true", REAL, "");
    let on_file = base.replace(
        "    jwks: { file: keys.json }\n",
        "    jwks: { file: keys.json }\n    ca_file: ca.pem\n    allow_private_network: true\n",
    );
    assert_eq!(
        problems(&on_file),
        vec![
            "providers[1].ca_file: applies only to keys fetched over the network (jwks.uri, discovery or metadata.url)".to_owned(),
            "providers[1].allow_private_network: applies only to keys fetched over the network (jwks.uri, discovery or metadata.url)".to_owned(),
        ]
    );
    let on_uri = base.replace(
        "    jwks: { file: keys.json }\n",
        "    jwks: { uri: \"https://10.1.2.3:8443/keys\" }\n    ca_file: ca.pem\n    allow_private_network: true\n",
    );
    assert_eq!(problems(&on_uri), Vec::<String>::new());
}

/// Who a token is does not depend on where the request comes from: a provider's
/// condition cannot read `request.*` (an unknown variable at load). Twin: an audience
/// rule can.
#[test]
fn provider_conditions_do_not_see_the_request() {
    let in_condition = config(
        "assertion.repository_owner_id == '123' && request.source_ip == '10.0.0.1'",
        "true",
        REAL,
        "",
    );
    let p = problems(&in_condition);
    assert!(
        p.iter()
            .any(|m| m.contains("providers[0].condition")
                && m.contains("unknown variable 'request'")),
        "{p:?}"
    );
    let in_rule = config(PIN, "request.source_ip == '10.0.0.1'", REAL, "");
    assert_eq!(problems(&in_rule), Vec::<String>::new());
}
