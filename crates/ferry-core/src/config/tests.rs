//! Configuration validation tests.

use super::*;

const GOOD: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: dev
    issuer: https://idp.example.com
    audiences: [https://ferry.example.com]
    jwks: { file: keys.json }
    condition: assertion.sub.startsWith('repo:')
    mapping:
      subject: assertion.sub
      attributes: { repository: assertion.repository }
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: provider == 'dev'
        scopes: [deploy]
        max_ttl: 15m
"#;

#[test]
fn a_good_config_loads() {
    let c = parse(GOOD, Path::new("/etc/ferry")).unwrap();
    assert_eq!(
        c.providers[0].keys,
        KeysConfig::File("/etc/ferry/keys.json".into())
    );
    assert_eq!(
        c.providers[0].algorithms,
        vec![Algorithm::RS256, Algorithm::ES256]
    );
    assert_eq!(c.data_dir, PathBuf::from("/etc/ferry/ferry-data"));
    assert!(c.provider_for_issuer("https://idp.example.com").is_some());
    assert!(c.provider_for_issuer("https://idp.example.com/").is_none());
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let bad = GOOD
        .replace("audiences: [https://ferry.example.com]", "audiences: []")
        .replace("assertion.sub.startsWith", "assertin.sub.startsWith")
        .replace("max_ttl: 15m", "max_ttl: 15x")
        .replace("provider == 'dev'", "provider ==");
    let errs = parse(&bad, Path::new("/")).unwrap_err();
    let paths: Vec<&str> = errs.0.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "providers[0].audiences",
            "providers[0].condition",
            "audiences[0].rules[0].allow",
            "audiences[0].rules[0].max_ttl",
        ],
        "{errs}"
    );
    assert!(
        errs.to_string()
            .contains("providers[0].audiences: must not be empty")
    );
    assert!(errs.to_string().contains("unknown variable 'assertin'"));
}

#[test]
fn unknown_fields_and_hmac_are_refused() {
    assert!(parse(&format!("{GOOD}\nsurprise: 1\n"), Path::new("/")).is_err());
    let hs = GOOD.replace(
        "jwks: { file: keys.json }",
        "jwks: { file: keys.json }\n    algorithms: [HS256]",
    );
    let errs = parse(&hs, Path::new("/")).unwrap_err();
    assert_eq!(errs.0[0].0, "providers[0].algorithms");
}

#[test]
fn issuer_must_be_https_or_loopback() {
    for (iss, ok) in [
        ("https://x.example", true),
        ("http://127.0.0.1:8080", true),
        ("http://localhost", true),
        ("http://example.com", false),
        ("http://127.0.0.1.evil.com", false),
        ("https://x.example/", false),
    ] {
        let text = GOOD.replace(
            "issuer: https://ferry.example.com",
            &format!("issuer: {iss}"),
        );
        assert_eq!(parse(&text, Path::new("/")).is_ok(), ok, "{iss}");
    }
}

const GH: &str = r#"
issuer: https://ferry.example.com
outbound: { allow_insecure_origins: ["http://127.0.0.1:9000"] }
providers:
  - id: gh
    kind: github
    audiences: [https://ferry.example.com]
    condition: assertion.repository_owner_id == '65' && assertion.event_name != 'pull_request_target'
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: provider == 'gh'
"#;

fn err_paths(text: &str) -> Vec<String> {
    parse(text, Path::new("/"))
        .err()
        .map(|e| e.0.into_iter().map(|(p, _)| p).collect())
        .unwrap_or_default()
}

#[test]
fn github_preset_defaults() {
    let c = parse(GH, Path::new("/")).unwrap();
    let p = &c.providers[0];
    assert_eq!(p.issuer, GITHUB_ISSUER);
    assert_eq!(p.algorithms, vec![Algorithm::RS256]);
    assert!(!p.cap_lifetime_at_subject_expiry);
    let discovery = format!("{GITHUB_ISSUER}/.well-known/openid-configuration");
    assert_eq!(p.keys, KeysConfig::Discovery(discovery.parse().unwrap()));
    assert!(
        c.warnings.iter().all(|w| !w.contains("event_name")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn an_unpinned_github_provider_is_refused_unless_explicitly_allowed() {
    let unpinned = GH.replace(
        "assertion.repository_owner_id == '65'",
        "assertion.repository_owner == 'acme'",
    );
    assert_eq!(err_paths(&unpinned), vec!["providers[0].condition"]);
    let allowed = unpinned.replace("kind: github", "kind: github\n    allow_unpinned: true");
    let c = parse(&allowed, Path::new("/")).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("by name")),
        "{:?}",
        c.warnings
    );

    let no_condition = GH.replace("    condition: assertion.repository_owner_id == '65' && assertion.event_name != 'pull_request_target'\n", "");
    assert_eq!(err_paths(&no_condition), vec!["providers[0].condition"]);

    let default_aud = GH.replace(
        "audiences: [https://ferry.example.com]",
        "audiences: [https://github.com/acme]",
    );
    assert_eq!(err_paths(&default_aud), vec!["providers[0].audiences"]);
}

#[test]
fn github_issuer_shapes() {
    for (iss, ok) in [
        ("https://token.actions.githubusercontent.com", true),
        (
            "https://token.actions.githubusercontent.com/acme-corp",
            true,
        ),
        ("https://token.actions.acme.ghe.com", true),
        ("https://github.acme.internal/_services/token", true),
        ("https://token.actions.githubusercontent.com/a/b", false),
        ("http://token.actions.githubusercontent.com", false),
        (
            "https://evil.example/token.actions.githubusercontent.com",
            false,
        ),
    ] {
        assert_eq!(github_issuer_shape_ok(iss), ok, "{iss}");
    }
}

#[test]
fn remote_key_urls_must_be_https_or_opted_in() {
    let oidc = |keys: &str| {
        format!(
            "issuer: https://ferry.example.com\noutbound: {{ allow_insecure_origins: [\"http://127.0.0.1:9000\"] }}\nproviders:\n  - id: o\n    kind: oidc\n    issuer: {keys}\n    audiences: [x]\naudiences:\n  - audience: a\n    rules: [{{allow: 'true'}}]\n"
        )
    };
    assert!(err_paths(&oidc("https://idp.example.com")).is_empty());
    assert!(err_paths(&oidc("http://127.0.0.1:9000")).is_empty());
    assert_eq!(
        err_paths(&oidc("http://127.0.0.1:9001")),
        vec!["providers[0].issuer"]
    );
    assert_eq!(
        err_paths(&oidc("http://idp.example.com")),
        vec!["providers[0].issuer"]
    );
}

#[test]
fn kubernetes_legacy_issuer_is_refused() {
    let k8s = |iss: &str| {
        format!(
            "issuer: https://ferry.example.com\nproviders:\n  - id: k\n    kind: kubernetes\n    issuer: {iss}\n    audiences: [x]\n    jwks: {{ file: k.json }}\naudiences:\n  - audience: a\n    rules: [{{allow: 'true'}}]\n"
        )
    };
    assert!(err_paths(&k8s("https://kubernetes.default.svc.cluster.local")).is_empty());
    assert_eq!(
        err_paths(&k8s("kubernetes/serviceaccount")),
        vec!["providers[0].issuer"]
    );
}

/// A Google workload identity pool provider's mapping and condition, pasted unchanged.
const GOOGLE_STYLE: &str = r#"
issuer: https://ferry.example.com
providers:
  - id: gh
    kind: github
    audiences: [https://ferry.example.com]
    jwks: { inline: {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]} }
    condition: "assertion.repository_owner_id == '65' && attribute.repository.startsWith('acme/')"
    mapping:
      google.subject: assertion.sub
      attribute.actor: assertion.actor
      attribute.repository: assertion.repository
      attribute.repository_owner_id: assertion.repository_owner_id
audiences:
  - audience: https://deploy.example.com
    rules:
      - allow: attribute.repository == 'acme/app'
"#;

#[test]
fn a_google_style_mapping_ports_unchanged() {
    let c = parse(GOOGLE_STYLE, Path::new("/")).unwrap();
    let claims = serde_json::json!({
        "iss": GITHUB_ISSUER, "sub": "repo:acme/app:ref:refs/heads/main", "actor": "octocat",
        "repository": "acme/app", "repository_owner_id": "65"
    });
    let p = c.providers[0]
        .mapping
        .apply("gh", claims.as_object().unwrap(), None)
        .unwrap();
    assert_eq!(p.subject, "repo:acme/app:ref:refs/heads/main");
    assert_eq!(p.attributes["actor"], "octocat");
    assert_eq!(p.attributes["repository_owner_id"], "65");
    // The condition reads the mapped attribute: another repository is denied.
    let other = serde_json::json!({
        "iss": GITHUB_ISSUER, "sub": "x", "actor": "o", "repository": "evil/app", "repository_owner_id": "65"
    });
    assert!(
        c.providers[0]
            .mapping
            .apply("gh", other.as_object().unwrap(), None)
            .is_err()
    );

    let bad = GOOGLE_STYLE.replace("attribute.actor:", "attribute.Actor!:");
    assert_eq!(
        err_paths(&bad),
        vec!["providers[0].mapping.attribute.Actor!"]
    );
    let unknown = GOOGLE_STYLE.replace("google.subject:", "google.subjekt:");
    assert!(err_paths(&unknown).contains(&"providers[0].mapping.google.subjekt".to_owned()));
}

#[test]
fn deny_rules_and_operator_messages() {
    let text = GOOGLE_STYLE.replace(
        "      - allow: attribute.repository == 'acme/app'\n",
        "      - name: no-forks\n        deny: attribute.actor == 'mallory'\n        message: forks may not deploy\n      - allow: attribute.repository == 'acme/app'\n",
    );
    let principal = |actor: &str| crate::mapping::Principal {
        provider: "gh".into(),
        subject: "s".into(),
        groups: vec![],
        attributes: [
            ("actor".to_owned(), actor.to_owned()),
            ("repository".to_owned(), "acme/app".to_owned()),
        ]
        .into_iter()
        .collect(),
        original_issuer: GITHUB_ISSUER.into(),
        original_subject: None,
        ancestors: Vec::new(),
        subject_act: None,
    };
    let aud = vec!["https://deploy.example.com".to_owned()];
    for expose in [false, true] {
        let t = if expose {
            format!("expose_denial_messages: true\n{text}")
        } else {
            text.clone()
        };
        let c = parse(&t, Path::new("/")).unwrap();
        let err = c
            .policy
            .decide(&principal("mallory"), None, &aud, &[], None, None)
            .unwrap_err();
        assert_eq!(
            err.rule.as_deref(),
            Some("audiences[0].rules[0] (no-forks)")
        );
        let want = if expose {
            "forks may not deploy"
        } else {
            crate::error::desc::TARGET_NOT_ALLOWED
        };
        assert_eq!(err.description, want);
        // Twin: another actor passes the deny rule and is allowed by the next.
        assert!(
            c.policy
                .decide(&principal("octocat"), None, &aud, &[], None, None)
                .is_ok()
        );
    }
    let both = text.replace(
        "deny: attribute.actor",
        "allow: 'true'\n        deny: attribute.actor",
    );
    assert_eq!(err_paths(&both), vec!["audiences[0].rules[0]"]);
}

#[test]
fn unknown_scopes_are_dropped_only_where_configured() {
    let principal = crate::mapping::Principal {
        provider: "gh".into(),
        subject: "s".into(),
        groups: vec![],
        attributes: [("repository".to_owned(), "acme/app".to_owned())]
            .into_iter()
            .collect(),
        original_issuer: GITHUB_ISSUER.into(),
        original_subject: None,
        ancestors: Vec::new(),
        subject_act: None,
    };
    let aud = vec!["https://deploy.example.com".to_owned()];
    let cloud = vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()];
    let with_scopes = GOOGLE_STYLE.replace(
        "      - allow: attribute.repository == 'acme/app'\n",
        "      - allow: attribute.repository == 'acme/app'\n        scopes: [deploy]\n",
    );
    let c = parse(&with_scopes, Path::new("/")).unwrap();
    let err = c
        .policy
        .decide(&principal, None, &aud, &cloud, None, None)
        .unwrap_err();
    assert_eq!(err.code, crate::error::ErrorCode::InvalidScope);
    let ignoring = with_scopes.replace(
        "    rules:\n",
        "    ignore_unknown_scopes: true\n    rules:\n",
    );
    let c = parse(&ignoring, Path::new("/")).unwrap();
    let g = c
        .policy
        .decide(&principal, None, &aud, &cloud, None, None)
        .unwrap();
    assert_eq!(g.scopes, vec!["deploy"]);
}

#[test]
fn redis_replay_urls() {
    // In a configuration: a bad URL names its path; fail_open and timeout are read.
    let with = |replay: &str| format!("{GOOGLE_STYLE}replay: {replay}\n");
    let c = parse(
        &with("{ redis: \"redis://127.0.0.1:7000\", fail_open: true, timeout: 2s }"),
        Path::new("/"),
    )
    .unwrap();
    let r = c.replay_redis.unwrap();
    assert_eq!((r.fail_open, r.timeout_ms), (true, 2000));
    let err = parse(&with("{ redis: \"http://x\" }"), Path::new("/")).unwrap_err();
    assert!(err.to_string().contains("replay.redis"), "{err}");
    assert!(
        parse(GOOGLE_STYLE, Path::new("/"))
            .unwrap()
            .replay_redis
            .is_none()
    );
}

#[test]
fn a_shared_postgres_key_store() {
    let with = |pg: &str| {
        format!("{GOOGLE_STYLE}signing: {{ jwks_max_age: 20s, leeway: 10s, postgres: {pg} }}\n")
    };
    let c = parse(
        &with("{ url: { env: FERRY_PG }, poll_interval: 250ms, timeout: 3s, ca_file: ca.pem }"),
        Path::new("/"),
    )
    .unwrap();
    let pg = c.signing.postgres.unwrap();
    assert_eq!(pg.url, SecretSource::Env("FERRY_PG".into()));
    assert_eq!((pg.poll_interval_ms, pg.timeout_ms), (250, 3000));
    assert_eq!(pg.ca_file.as_deref(), Some(Path::new("/ca.pem")));
    // Default poll: a tenth of the publish-ahead margin (30 s here).
    let d = parse(&with("{ url: { env: FERRY_PG } }"), Path::new("/")).unwrap();
    assert_eq!(d.signing.postgres.unwrap().poll_interval_ms, 3000);
    // A poll slower than a tenth of the margin is refused, naming its path; twin: 3s.
    let err = parse(
        &with("{ url: { env: FERRY_PG }, poll_interval: 4s }"),
        Path::new("/"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("signing.postgres.poll_interval"),
        "{err}"
    );
    assert!(
        parse(
            &with("{ url: { env: FERRY_PG }, poll_interval: 3s }"),
            Path::new("/")
        )
        .is_ok()
    );
    // The connection string is required and read like a secret, never inline.
    let err = parse(&with("{ poll_interval: 1s }"), Path::new("/")).unwrap_err();
    assert!(err.to_string().contains("signing.postgres.url"), "{err}");
    assert!(
        parse(
            &with("{ url: \"postgres://u:pw@db/ferry\" }"),
            Path::new("/")
        )
        .is_err()
    );
    assert!(
        parse(GOOGLE_STYLE, Path::new("/"))
            .unwrap()
            .signing
            .postgres
            .is_none()
    );
}

#[test]
fn only_a_basic_client_may_be_registered_for_the_revocation_list() {
    let hash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    let with = |auth: &str| {
        format!(
            "{GOOD}clients:\n  - {{ id: rs, auth: {auth}, secret_sha256: {hash}, revocations: true }}\n"
        )
    };
    let c = parse(&with("client_secret_basic"), Path::new("/")).unwrap();
    assert!(c.clients[0].revocations && !c.clients[0].introspect);
    let err = parse(&with("client_secret_post"), Path::new("/")).unwrap_err();
    assert!(err.to_string().contains("clients[0].revocations"), "{err}");
}

#[test]
fn connection_limits_have_defaults_and_are_validated_with_their_paths() {
    let c = parse(GOOD, Path::new("/")).unwrap();
    assert_eq!(
        (
            c.limits.header_read_timeout,
            c.limits.idle_timeout,
            c.limits.max_connections_per_source
        ),
        (10, 60, 256)
    );
    let set = |limits: &str| format!("{GOOD}\nlimits: {{ {limits} }}\n");
    let c = parse(
        &set("header_read_timeout: 2s, idle_timeout: 5m, max_connections_per_source: 8"),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(
        (
            c.limits.header_read_timeout,
            c.limits.idle_timeout,
            c.limits.max_connections_per_source
        ),
        (2, 300, 8)
    );
    assert_eq!(
        err_paths(&set(
            "header_read_timeout: 0s, idle_timeout: 10x, max_connections_per_source: 0"
        )),
        vec![
            "limits.idle_timeout",
            "limits.header_read_timeout",
            "limits.max_connections_per_source",
        ]
    );
}
