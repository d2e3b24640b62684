//! Trusted issuers through the real binary: OIDC discovery against a mock issuer on
//! 127.0.0.1:0 (rotation, stampede, flood, outage), the GitHub and Kubernetes presets
//! with tokens shaped like the real ones, and JWKS files reloaded when they change.

use std::process::Command;
use std::time::Duration;

use ferry_testkit::idp::Mode;
use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, MockIdp, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, bin};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const FERRY: &str = "https://ferry.example.com";
const DEPLOY: &str = "https://deploy.example.com";

/// A configuration with one provider block (indented as a list item) and one audience.
fn config(provider: &str, insecure: &[&str]) -> String {
    let origins: Vec<String> = insecure.iter().map(|o| format!("\"{o}\"")).collect();
    format!(
        "issuer: {FERRY}\ndata_dir: data\nlimits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}\noutbound:\n  allow_insecure_origins: [{}]\nproviders:\n{provider}\naudiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n        scopes: [deploy]\n",
        origins.join(", ")
    )
}

async fn exchange(ferry: &Ferry, token: &str) -> (u16, Value) {
    let body = format!(
        "grant_type={TE}&subject_token={token}&subject_token_type={JWT}&audience={}",
        DEPLOY.replace(':', "%3A").replace('/', "%2F")
    );
    let r = reqwest::Client::new()
        .post(format!("{}/token", ferry.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn oidc_provider(idp: &MockIdp) -> String {
    format!(
        "  - id: idp\n    kind: oidc\n    issuer: {}\n    audiences: [{FERRY}]\n    cache: {{ refetch_interval: 10d, error_ttl: 1s }}\n",
        idp.url
    )
}

fn signed(issuer: &Issuer, kid: &str, extra: Value) -> String {
    issuer.token_with_header(
        &json!({"alg": issuer.key.alg(), "kid": kid, "typ": "JWT"}),
        &issuer.claims(FERRY, "workload", now(), extra),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_a_cold_stampede_and_a_rotation() {
    let setup = Setup::new("oidc");
    let key = TestKey::ec("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    let issuer = Issuer::new(idp.url.clone(), key);
    let ferry = setup.start(&config(&oidc_provider(&idp), &[&idp.url]));

    // 100 concurrent exchanges against a cold cache: one discovery, one JWKS fetch.
    let token = signed(&issuer, "k1", json!({}));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (url, t) = (ferry.url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let f = Ferry::attach(url);
            exchange(&f, &t).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));

    // The issuer rotates: the new kid is fetched once, without a restart.
    let rotated = Issuer::new(idp.url.clone(), TestKey::rsa("k2"));
    idp.set_jwks(jwks(&[&rotated.key]));
    let (s, body) = exchange(&ferry, &signed(&rotated, "k2", json!({}))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_kids_costs_at_most_one_refetch() {
    let setup = Setup::new("flood");
    let key = TestKey::rsa("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    let issuer = Issuer::new(idp.url.clone(), key);
    let ferry = setup.start(&config(&oidc_provider(&idp), &[&idp.url]));
    // Twin: the real kid is accepted.
    assert_eq!(
        exchange(&ferry, &signed(&issuer, "k1", json!({}))).await.0,
        200
    );

    let tokens: Vec<String> = (0..1_000)
        .map(|i| signed(&issuer, &format!("junk-{i}"), json!({})))
        .collect();
    let mut handles = Vec::new();
    for chunk in tokens.chunks(100) {
        let (url, chunk) = (ferry.url.clone(), chunk.to_vec());
        handles.push(tokio::spawn(async move {
            let f = Ferry::attach(url);
            let mut statuses = Vec::new();
            for t in chunk {
                statuses.push(exchange(&f, &t).await.0);
            }
            statuses
        }));
    }
    for h in handles {
        assert!(h.await.unwrap().iter().all(|s| *s == 400));
    }
    assert!(
        idp.jwks_fetches() <= 2,
        "JWKS fetched {} times",
        idp.jwks_fetches()
    );
}

#[tokio::test]
async fn an_unreachable_issuer_without_cached_keys_is_503_and_recovers() {
    let setup = Setup::new("outage");
    let key = TestKey::rsa("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    idp.set_mode(Mode::Error500);
    let issuer = Issuer::new(idp.url.clone(), key);
    let ferry = setup.start(&config(&oidc_provider(&idp), &[&idp.url]));
    let token = signed(&issuer, "k1", json!({}));
    let (s, body) = exchange(&ferry, &token).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );

    // Twin: the issuer comes back; after the error TTL (1 s here) keys are fetched.
    idp.set_mode(Mode::Normal);
    let mut status = 0;
    for _ in 0..100 {
        status = exchange(&ferry, &token).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_token_from_an_unconfigured_issuer_causes_no_outbound_request() {
    let setup = Setup::new("unconfigured");
    let key = TestKey::rsa("k1");
    let configured = MockIdp::start(jwks(&[&key])).await.unwrap();
    let stranger = MockIdp::start(jwks(&[&key])).await.unwrap();
    let ferry = setup.start(&config(
        &oidc_provider(&configured),
        &[&configured.url, &stranger.url],
    ));
    let foreign = Issuer::new(stranger.url.clone(), TestKey::rsa("k1"));
    let (s, _) = exchange(&ferry, &signed(&foreign, "k1", json!({}))).await;
    assert_eq!(s, 400);
    assert_eq!(
        (stranger.discovery_fetches(), stranger.jwks_fetches()),
        (0, 0)
    );
    // Twin: the configured issuer's token is accepted.
    let own = Issuer::new(configured.url.clone(), key);
    assert_eq!(
        exchange(&ferry, &signed(&own, "k1", json!({}))).await.0,
        200
    );
}

/// The claim shape of a GitHub Actions token (values illustrative).
fn github_claims(owner_id: &str) -> Value {
    json!({
        "sub": "repo:octo-org/octo-repo:environment:prod", "environment": "prod",
        "ref": "refs/heads/main", "sha": "example-sha", "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org", "actor_id": "12", "repository_visibility": "private",
        "repository_id": "74", "repository_owner_id": owner_id, "run_id": "1", "run_number": "10",
        "run_attempt": "2", "runner_environment": "github-hosted", "actor": "octocat",
        "workflow": "deploy", "head_ref": "", "base_ref": "", "event_name": "workflow_dispatch",
        "ref_type": "branch", "ref_protected": "true",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
        "enterprise": "octo-enterprise", "enterprise_id": "2",
    })
}

#[tokio::test]
async fn github_shaped_tokens_through_the_preset() {
    let setup = Setup::new("github");
    let key = TestKey::rsa("gh1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    // GitHub's issuer string, with keys served by the mock (GitHub is never contacted).
    let gh = Issuer::new("https://token.actions.githubusercontent.com", key);
    let provider = format!(
        "  - id: github\n    kind: github\n    audiences: [{FERRY}]\n    jwks: {{ uri: {}/jwks }}\n    condition: assertion.repository_owner_id == '65' && assertion.event_name != 'pull_request_target'\n    mapping:\n      subject: \"'repo:' + assertion.repository + ':' + assertion.ref\"\n",
        idp.url
    );
    let ferry = setup.start(&config(&provider, &[&idp.url]));

    let t = now();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5t": "example-thumbprint", "kid": "gh1"});
    // GitHub sets nbf before iat and tokens live five minutes.
    let claims = |owner: &str| {
        let mut c = github_claims(owner);
        let o = c.as_object_mut().unwrap();
        o.insert(
            "iss".into(),
            json!("https://token.actions.githubusercontent.com"),
        );
        o.insert("aud".into(), json!(FERRY));
        o.insert("jti".into(), json!("example-id"));
        o.insert("nbf".into(), json!(t - 300));
        o.insert("iat".into(), json!(t));
        o.insert("exp".into(), json!(t + 300));
        c
    };
    let (s, body) = exchange(&ferry, &gh.token_with_header(&header, &claims("65"))).await;
    assert_eq!(s, 200, "{body}");
    // The preset does not cap at GitHub's five-minute exp: jobs run longer.
    assert_eq!(body["expires_in"], json!(900));
    let issued = ferry_testkit::mint::payload(body["access_token"].as_str().unwrap());
    assert_eq!(issued["sub"], "repo:octo-org/octo-repo:refs/heads/main");

    // A different owner id, same everything else: refused by the pinned condition.
    let (s, body) = exchange(&ferry, &gh.token_with_header(&header, &claims("66"))).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
}

#[test]
fn an_unpinned_github_provider_is_refused_at_load() {
    let setup = Setup::new("unpinned");
    let provider = |extra: &str| {
        format!(
            "  - id: github\n    kind: github\n    audiences: [{FERRY}]\n    condition: assertion.repository_owner == 'octo-org'\n{extra}"
        )
    };
    let bad = setup.write("bad.yaml", config(&provider(""), &[]));
    let out = Command::new(bin("ferry"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("providers[0].condition: a github provider must pin"),
        "{err}"
    );
    // serve refuses too.
    let out = Command::new(bin("ferry"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());

    // Twin: the same provider with the explicit opt-out loads, with warnings.
    let ok = setup.write(
        "ok.yaml",
        config(&provider("    allow_unpinned: true\n"), &[]),
    );
    let out = Command::new(bin("ferry"))
        .args(["check", "--config"])
        .arg(&ok)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("pull_request_target") && err.contains("by name"),
        "{err}"
    );
}

fn k8s_claims(namespace: &str) -> Value {
    let t = now();
    json!({
        "aud": [FERRY], "exp": t + 3600, "iat": t, "nbf": t,
        "iss": "https://kubernetes.default.svc.cluster.local", "jti": "example-uuid",
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "node-1", "uid": "example-node-uid"},
            "pod": {"name": "api-7d4f9", "uid": "example-pod-uid"},
            "serviceaccount": {"name": "api", "uid": "example-sa-uid"},
            "warnafter": t + 600
        },
        "sub": format!("system:serviceaccount:{namespace}:api")
    })
}

#[tokio::test]
async fn kubernetes_shaped_tokens_through_the_preset_with_a_jwks_file() {
    let setup = Setup::new("k8s");
    let cluster = Issuer::new(
        "https://kubernetes.default.svc.cluster.local",
        TestKey::rsa("c1"),
    );
    setup.write("cluster-jwks.json", jwks(&[&cluster.key]).to_string());
    // A second issuer names the same file: the providers share one key set (loaded
    // and watched once), and both follow its rotation.
    let provider = format!(
        "  - id: prod-cluster\n    kind: kubernetes\n    issuer: https://kubernetes.default.svc.cluster.local\n    audiences: [{FERRY}]\n    jwks: {{ file: cluster-jwks.json }}\n    condition: assertion['kubernetes.io'].namespace == 'payments'\n    mapping:\n      subject: assertion.sub\n      attributes:\n        namespace: assertion['kubernetes.io'].namespace\n  - id: twin-cluster\n    kind: kubernetes\n    issuer: https://twin.cluster.example\n    audiences: [{FERRY}]\n    jwks: {{ file: cluster-jwks.json }}\n    mapping:\n      subject: assertion.sub\n"
    );
    let twin = |namespace: &str| {
        let mut c = k8s_claims(namespace);
        c["iss"] = json!("https://twin.cluster.example");
        c
    };
    let ferry = setup.start(&config(&provider, &[]));
    let header = json!({"alg": "RS256", "kid": "c1"});

    let (s, body) = exchange(
        &ferry,
        &cluster.token_with_header(&header, &k8s_claims("payments")),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let issued = ferry_testkit::mint::payload(body["access_token"].as_str().unwrap());
    assert_eq!(issued["attributes"]["namespace"], "payments");
    let (s, body) = exchange(
        &ferry,
        &cluster.token_with_header(&header, &twin("default")),
    )
    .await;
    assert_eq!(s, 200, "the twin provider: {body}");
    // Another namespace: refused by the condition.
    let (s, _) = exchange(
        &ferry,
        &cluster.token_with_header(&header, &k8s_claims("default")),
    )
    .await;
    assert_eq!(s, 400);
    // A legacy-shaped token (no exp, no aud): refused.
    let mut legacy = k8s_claims("payments");
    legacy.as_object_mut().unwrap().remove("exp");
    let (s, _) = exchange(&ferry, &cluster.token_with_header(&header, &legacy)).await;
    assert_eq!(s, 400);

    // The cluster rotates its keys: the JWKS file is replaced and reloaded, no restart.
    let rotated = Issuer::new(
        "https://kubernetes.default.svc.cluster.local",
        TestKey::rsa("c2"),
    );
    setup.write("cluster-jwks.json", jwks(&[&rotated.key]).to_string());
    let (s, body) = exchange(
        &ferry,
        &rotated.token_with_header(
            &json!({"alg": "RS256", "kid": "c2"}),
            &k8s_claims("payments"),
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let c2 = json!({"alg": "RS256", "kid": "c2"});
    let (s, body) = exchange(&ferry, &rotated.token_with_header(&c2, &twin("default"))).await;
    assert_eq!(s, 200, "the twin provider after the rotation: {body}");
    // The old key is gone for both.
    let (s, _) = exchange(
        &ferry,
        &cluster.token_with_header(&header, &twin("default")),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn kubernetes_discovery_sends_the_bearer_token_to_the_api_server_only() {
    let setup = Setup::new("k8s-discovery");
    let key = TestKey::rsa("c1");
    let api = MockIdp::start(jwks(&[&key])).await.unwrap();
    let keys_host = MockIdp::start(jwks(&[&key])).await.unwrap();
    // The discovery document names a JWKS on another origin.
    api.set_mode(Mode::JwksUri(format!("{}/jwks", keys_host.url)));
    setup.write("sa-token", "projected-sa-token\n");
    let provider = format!(
        "  - id: cluster\n    kind: kubernetes\n    issuer: {api}\n    audiences: [{FERRY}]\n    api_server: {{ url: {api}, token_file: sa-token }}\n",
        api = api.url
    );
    let ferry = setup.start(&config(&provider, &[&api.url, &keys_host.url]));
    let cluster = Issuer::new(api.url.clone(), key);
    let (s, body) = exchange(&ferry, &signed(&cluster, "c1", json!({}))).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        api.authorization_seen()
            .iter()
            .all(|a| a.as_deref() == Some("Bearer projected-sa-token"))
    );
    assert!(keys_host.authorization_seen().iter().all(Option::is_none));
    assert!(!keys_host.authorization_seen().is_empty());
}

/// A cluster whose discovery document names the API server's advertise address (another
/// origin than `api_server.url`): listed in `api_server.jwks_origins`, that origin gets
/// the API server's token too. Twin: the test above, where it is not listed and gets none.
#[tokio::test]
async fn kubernetes_jwks_origins_are_the_api_servers_own() {
    let setup = Setup::new("k8s-advertise");
    let key = TestKey::rsa("c1");
    let api = MockIdp::start(jwks(&[&key])).await.unwrap();
    let advertised = MockIdp::start(jwks(&[&key])).await.unwrap();
    api.set_mode(Mode::JwksUri(format!("{}/jwks", advertised.url)));
    setup.write("sa-token", "projected-sa-token\n");
    let provider = format!(
        "  - id: cluster\n    kind: kubernetes\n    issuer: {api}\n    audiences: [{FERRY}]\n    api_server: {{ url: {api}, token_file: sa-token, jwks_origins: [{adv}] }}\n",
        api = api.url,
        adv = advertised.url
    );
    let ferry = setup.start(&config(&provider, &[&api.url, &advertised.url]));
    let cluster = Issuer::new(api.url.clone(), key);
    let (s, body) = exchange(&ferry, &signed(&cluster, "c1", json!({}))).await;
    assert_eq!(s, 200, "{body}");
    let seen = advertised.authorization_seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|a| a.as_deref() == Some("Bearer projected-sa-token")),
        "{seen:?}"
    );
}
