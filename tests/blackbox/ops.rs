//! Operating Ferry: metrics, the admin listener and its authentication, the audit file,
//! rate limits (and which tokens count against a provider's bucket), size limits,
//! graceful shutdown with a request in flight, and HTTPS with a generated certificate.

use std::path::Path;
use std::time::Duration;

use ferry_testkit::idp::Mode;
use ferry_testkit::keys::jwks;
use ferry_testkit::mint::tamper_payload;
use ferry_testkit::{Issuer, MockIdp, TestKey, now};
use serde_json::json;

use crate::harness::{Ferry, Setup};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const FERRY: &str = "https://ferry.example.com";

/// A Ferry configuration trusting a GitHub-shaped issuer (`idp`), not started yet.
struct Env {
    setup: Setup,
    idp: Issuer,
}

fn setup(tag: &str, extra: &str) -> Env {
    let setup = Setup::new(tag);
    let idp = Issuer::new(
        "https://token.actions.githubusercontent.com",
        TestKey::rsa("gh"),
    );
    setup.jwks("gh.json", &[&idp.key]);
    setup.config(&format!(
        "issuer: {FERRY}\ndata_dir: data\n{extra}\nproviders:\n  - id: github\n    kind: github\n    audiences: [{FERRY}]\n    jwks: {{ file: gh.json }}\n    condition: assertion.repository_owner_id == '65'\naudiences:\n  - audience: https://deploy.example.com\n    rules:\n      - allow: \"true\"\n"
    ));
    Env { setup, idp }
}

impl Env {
    fn token(&self) -> String {
        self.idp.token(&self.idp.claims(
            FERRY,
            "repo:acme/app",
            now(),
            json!({"repository_owner_id": "65"}),
        ))
    }
}

async fn exchange_with(http: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    http.post(format!("{url}/token"))
        .form(&[
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("audience", "https://deploy.example.com"),
        ])
        .send()
        .await
        .unwrap()
}

async fn exchange(url: &str, token: &str) -> u16 {
    exchange_with(&reqwest::Client::new(), url, token)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn metrics_after_an_exchange_and_the_audit_file() {
    let s = setup("metrics", "audit: { file: audit.jsonl }");
    let ferry = s.setup.run();
    assert_eq!(exchange(&ferry.url, &s.token()).await, 200);
    let bad = tamper_payload(&s.token(), &json!({"sub": "x"}));
    assert_eq!(exchange(&ferry.url, &bad).await, 400);
    let admin = ferry.admin.clone().expect("admin listener");
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "ferry_token_exchanges_total{provider=\"github\",audience=\"https://deploy.example.com\",decision=\"allow\",error=\"\"} 1",
        "decision=\"deny\",error=\"invalid_request\"} 1",
        "ferry_http_requests_total{route=\"/token\",method=\"POST\",status=\"200\"} 1",
        "ferry_http_request_duration_seconds_bucket{le=",
        "ferry_signing_key_age_seconds ",
        "ferry_signing_key_next_rotation_seconds ",
        "ferry_config_reloads_total{result=\"ok\"} 0",
        "# EOF",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // The audit file holds one event per decision, never the token.
    let audit = std::fs::read_to_string(s.setup.path().join("audit.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.iter().filter(|e| e["type"] == "ferry.audit").count(),
        2
    );
    assert!(!audit.contains(&s.token()[..40]) && !audit.contains(bad.rsplit('.').next().unwrap()));
    let out = ferry.proc().output();
    assert!(
        !out.contains(bad.rsplit('.').next().unwrap()),
        "no token text in logs"
    );
}

#[tokio::test]
async fn admin_endpoints_need_a_valid_bearer_token_when_configured() {
    // printf %s secret | sha256sum
    let s = setup("admin", "admin: { bearer_token_hashes_file: admin-tokens }");
    std::fs::write(
        s.setup.path().join("admin-tokens"),
        "# current\n2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n",
    )
    .unwrap();
    let ferry = s.setup.run();
    let admin = ferry.admin.clone().unwrap();
    let http = reqwest::Client::new();
    let get = |auth: Option<&'static str>| {
        let mut r = http.get(format!("{admin}/metrics"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let none = get(None).await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    assert_eq!(
        get(Some("Bearer wrong")).await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        get(Some("Bearer secret")).await.unwrap().status().as_u16(),
        200
    );
    // The scheme is case-insensitive (RFC 7235 §2.1); the token is not.
    for (auth, want) in [
        ("bearer secret", 200),
        ("BEARER secret", 200),
        ("bearer Secret", 401),
    ] {
        assert_eq!(
            get(Some(auth)).await.unwrap().status().as_u16(),
            want,
            "{auth}"
        );
    }
    // POST /explain with the right token.
    let r = http
        .post(format!("{admin}/explain"))
        .header("authorization", "Bearer secret")
        .json(&json!({"token": s.token(), "audience": ["https://deploy.example.com"]}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["allowed"], true, "{body}");
    assert!(
        body["report"]
            .as_str()
            .unwrap()
            .contains("verify: signature ok")
    );
    // The request's context as rules would see it (`request.*`) is accepted; a member it
    // does not know is a 4xx.
    let with_context = |request: serde_json::Value| {
        http.post(format!("{admin}/explain"))
            .header("authorization", "Bearer secret")
            .json(
                &json!({"token": s.token(), "audience": ["https://deploy.example.com"],
                          "request": request}),
            )
            .send()
    };
    let r = with_context(json!({"source_ip": "10.1.2.3", "sender_constrained": true}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = with_context(json!({"source": "10.1.2.3"})).await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let denied = http
        .post(format!("{admin}/explain"))
        .json(&json!({"token": s.token(), "audience": ["https://deploy.example.com"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    // Admin requests are audited.
    assert!(ferry.proc().output().contains("\"type\":\"ferry.admin\""));
}

#[tokio::test]
async fn the_source_rate_limit_answers_429_with_retry_after() {
    let s = setup("rate", "limits: { rate_per_source: 1 }");
    let ferry = s.setup.run();
    let http = reqwest::Client::new();
    // The bucket bursts to twice the rate: the first two pass (the twin)…
    assert_eq!(
        exchange_with(&http, &ferry.url, &s.token())
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        exchange_with(&http, &ferry.url, &s.token())
            .await
            .status()
            .as_u16(),
        200
    );
    // …the next is limited.
    let r = exchange_with(&http, &ferry.url, &s.token()).await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn junk_tokens_claiming_github_do_not_consume_the_github_bucket() {
    let s = setup(
        "provider-bucket",
        "limits: { rate_per_source: 100000, rate_global: 100000, rate_per_provider: 1 }",
    );
    let ferry = s.setup.run();
    // Twenty junk tokens with GitHub's issuer (their signatures do not verify).
    for _ in 0..20 {
        let junk = tamper_payload(
            &s.token(),
            &json!({"iss": "https://token.actions.githubusercontent.com", "sub": "x"}),
        );
        assert_eq!(exchange(&ferry.url, &junk).await, 400);
    }
    // The bucket (burst 2) is untouched: verified tokens still pass…
    assert_eq!(exchange(&ferry.url, &s.token()).await, 200);
    assert_eq!(exchange(&ferry.url, &s.token()).await, 200);
    // …and verified tokens do count (the twin): the third is limited.
    assert_eq!(exchange(&ferry.url, &s.token()).await, 429);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let s = setup("headers", "");
    let ferry = s.setup.run();
    let http = reqwest::Client::new();
    let big = "a".repeat(20 * 1024);
    let r = http
        .get(format!("{}/healthz", ferry.url))
        .header("x-padding", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 431);
    let small = "a".repeat(8 * 1024);
    let r = http
        .get(format!("{}/healthz", ferry.url))
        .header("x-padding", &small)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(s);
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_and_exits_zero() {
    // A remote issuer that answers slowly keeps the first exchange in flight. No
    // shutdown delay: the listener stops accepting at once, and the request in flight
    // still finishes (rollout.rs tests the delay).
    let key = TestKey::rsa("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    idp.set_delay(Some(Duration::from_millis(3_000)));
    let issuer = Issuer::new(idp.url.clone(), key);
    let setup = Setup::new("graceful");
    let mut ferry = setup.start(&format!(
            "issuer: {FERRY}\ndata_dir: data\nlimits: {{ shutdown_delay: 0s }}\noutbound: {{ allow_insecure_origins: [\"{u}\"] }}\nproviders:\n  - id: idp\n    kind: oidc\n    issuer: {u}\n    audiences: [{FERRY}]\naudiences:\n  - audience: https://deploy.example.com\n    rules:\n      - allow: \"true\"\n",
        u = idp.url
    ));
    let token = issuer.token(&issuer.claims(FERRY, "svc", now(), json!({})));
    let url = ferry.url.clone();
    let in_flight = tokio::spawn(async move { exchange(&url, &token).await });
    // The request reaches Ferry and waits for the slow issuer (3 s) when SIGTERM comes.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pid = ferry.proc().pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the request in flight finished"
    );
    let status =
        tokio::task::spawn_blocking(move || ferry.proc_mut().wait_exit(20).map(|s| s.success()))
            .await
            .unwrap()
            .unwrap();
    assert!(status, "exit 0");
    idp.set_mode(Mode::Normal);
}

fn write_cert(dir: &Path) -> Vec<u8> {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.pem().into_bytes()
}

#[tokio::test]
async fn https_with_a_generated_certificate() {
    let s = setup("https", "tls: { cert_file: cert.pem, key_file: key.pem }");
    let pem = write_cert(s.setup.path());
    let ferry = s.setup.run();
    assert!(ferry.url.starts_with("https://"), "{}", ferry.url);
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let r = exchange_with(&http, &ferry.url, &s.token()).await;
    assert_eq!(r.status().as_u16(), 200);
    // Twin: a client that does not trust the certificate cannot connect.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", ferry.url))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_unreachable_key_store_shows_in_readyz_but_signing_continues() {
    let s = setup(
        "keystore-down",
        "signing: { jwks_max_age: 1s, leeway: 0s, rotation_period: 1h }",
    );
    let ferry = s.setup.run();
    let ready = |url: String| async move {
        let r = reqwest::get(format!("{url}/readyz")).await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (status, body) = ready(ferry.admin.clone().unwrap()).await;
    assert_eq!((status, body["key_store"].as_str()), (200, Some("ok")));
    // The ring file becomes unreadable (the store is "down").
    std::fs::write(s.setup.path().join("data/ring.json"), "not json").unwrap();
    let mut seen = serde_json::Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = ready(ferry.admin.clone().unwrap()).await;
        assert_eq!(status, 200, "readiness never fails for a shared dependency");
        if body["key_store"]
            .as_str()
            .is_some_and(|k| k.starts_with("unavailable"))
        {
            seen = body;
            break;
        }
    }
    assert!(
        seen["key_store"]
            .as_str()
            .is_some_and(|k| k.starts_with("unavailable")),
        "{seen}"
    );
    assert_eq!(
        exchange(&ferry.url, &s.token()).await,
        200,
        "signing continues from memory"
    );
    let metrics = reqwest::get(format!("{}/metrics", ferry.admin.clone().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ferry_key_store_up 0"), "{metrics}");
}

#[tokio::test]
async fn the_client_rate_limit_applies_after_client_identification() {
    let s = setup(
        "client-rate",
        // Registered public clients: only registered clients have buckets of their own
        // (limits::unregistered_client_ids_get_no_bucket_of_their_own).
        "limits: { rate_per_source: 100000, rate_global: 100000, rate_per_client: 1 }\nclients:\n  - { id: ci-a, auth: none }\n  - { id: ci-b, auth: none }",
    );
    let ferry = s.setup.run();
    let http = reqwest::Client::new();
    let with_client = |client: &'static str| {
        let (http, url, token) = (http.clone(), ferry.url.clone(), s.token());
        async move {
            http.post(format!("{url}/token"))
                .form(&[
                    ("grant_type", TE),
                    ("subject_token", token.as_str()),
                    ("subject_token_type", JWT),
                    ("audience", "https://deploy.example.com"),
                    ("client_id", client),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(with_client("ci-a").await, 200);
    assert_eq!(with_client("ci-a").await, 200);
    assert_eq!(with_client("ci-a").await, 429);
    // Twin: another client has its own bucket.
    assert_eq!(with_client("ci-b").await, 200);
}

#[tokio::test]
async fn the_log_level_filters_every_layer() {
    // Twin pair: `debug` logs the key ring's changes and each issued token;
    // `ferry=info,ferry_keys=warn,ferry_server=warn` keeps the listening line only.
    for (level, want) in [
        (Some("debug"), true),
        (Some("ferry=info,ferry_keys=warn,ferry_server=warn"), false),
    ] {
        let s = setup("loglevel", "");
        let mut env = vec![("FERRY_KEK", crate::harness::TEST_KEK)];
        if let Some(l) = level {
            env.push(("FERRY_LOG_LEVEL", l));
        }
        let ferry =
            Ferry::start_on(s.setup.socket(), &s.setup.path().join("ferry.yaml"), &env).unwrap();
        assert_eq!(exchange(&ferry.url, &s.token()).await, 200);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let out = ferry.proc().output();
        assert_eq!(
            out.contains("signing key ring changed"),
            want,
            "{level:?}: {out}"
        );
        assert_eq!(out.contains("token issued"), want, "{level:?}");
    }
}
