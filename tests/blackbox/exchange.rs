//! Token exchange end to end, verified with an independent JWT implementation
//! (`jsonwebtoken`, not Ferry's verify path), and each attack beside its positive twin.

use std::path::Path;

use ferry_testkit::mint::{alg_none, hs256_with_public_key, tamper_payload};
use ferry_testkit::{Issuer, TestKey, now};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Value, json};

use crate::harness::{DevIdp, Ferry, Setup};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const FERRY_ISS: &str = "http://127.0.0.1:8080";
const DEPLOY: &str = "https://deploy.example.com";

/// Writes a configuration trusting the dev issuer (JWKS file) and a test issuer.
fn write_config(dir: &Path, dev: &DevIdp, test_iss: &Issuer) -> std::path::PathBuf {
    let jwks = ferry_testkit::keys::jwks(&[&test_iss.key]);
    std::fs::write(dir.join("test-jwks.json"), jwks.to_string()).unwrap();
    let config = format!(
        r#"
issuer: {FERRY_ISS}
data_dir: data
providers:
  - id: dev
    issuer: {dev_iss}
    audiences: [{FERRY_ISS}]
    jwks: {{ file: {dev_jwks} }}
    condition: assertion.repository_owner_id == '65'
    mapping:
      subject: "'repo:' + assertion.repository"
      attributes: {{ repository: assertion.repository }}
  - id: test
    issuer: https://idp.test
    audiences: [{FERRY_ISS}]
    jwks: {{ file: test-jwks.json }}
audiences:
  - audience: {DEPLOY}
    rules:
      - allow: provider == 'dev' && attribute.repository == 'acme/app'
        scopes: [deploy]
        max_ttl: 10m
      - allow: provider == 'test'
        scopes: [read]
"#,
        dev_iss = dev.issuer,
        dev_jwks = dev.data_dir.join("jwks.json").display(),
    );
    let path = dir.join("ferry.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

struct Env {
    _tmp: Setup,
    dev: DevIdp,
    test_iss: Issuer,
    ferry: Ferry,
    http: reqwest::Client,
}

fn start() -> Env {
    let setup = Setup::new("exchange");
    let dev = DevIdp::start(&setup.path().join("idp")).unwrap();
    let test_iss = Issuer::new("https://idp.test", TestKey::rsa("t1"));
    write_config(setup.path(), &dev, &test_iss);
    let ferry = setup.run();
    Env {
        _tmp: setup,
        dev,
        test_iss,
        ferry,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn post(&self, body: String, content_type: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn exchange(&self, token: &str) -> (u16, Value) {
        self.post(
            form(&[
                ("grant_type", TE),
                ("subject_token", token),
                ("subject_token_type", JWT),
                ("audience", DEPLOY),
            ]),
            "application/x-www-form-urlencoded",
        )
        .await
    }

    fn test_token(&self, extra: Value) -> String {
        self.test_iss
            .token(&self.test_iss.claims(FERRY_ISS, "svc", now(), extra))
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn exchange_and_verify_the_issued_token_independently() {
    let env = start();
    let subject = env
        .dev
        .mint(
            "repo:acme/app:ref:refs/heads/main",
            FERRY_ISS,
            &["repository=acme/app", "repository_owner_id=\"65\""],
        )
        .unwrap();
    // Google's libraries send token files verbatim: a trailing newline included.
    let (status, body) = env.exchange(&format!("{subject}\n")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(body["expires_in"].is_u64());
    assert_eq!(body["scope"], "deploy");
    let access = body["access_token"].as_str().unwrap();

    // An independent implementation fetches /jwks and verifies.
    let jwks: JwkSet = env
        .http
        .get(format!("{}/jwks", env.ferry.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published in /jwks");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[DEPLOY]);
    v.set_issuer(&[FERRY_ISS]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.validate_nbf = true;
    let data =
        jsonwebtoken::decode::<Value>(access, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap();
    let c = data.claims;
    assert_eq!(c["sub"], "repo:acme/app");
    assert_eq!(c["client_id"], "ferry-provider:dev");
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 300,
        "capped at the subject's exp"
    );
    assert_eq!(c["ferry"]["iss"], env.dev.issuer);

    // Ferry's own token is not an identity assertion: presented as a subject token it is
    // refused (its issuer is not a provider, and its typ is at+jwt).
    let (status, body) = env.exchange(access).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // The condition pins repository_owner_id: a different owner is refused (twin above).
    let other = env
        .dev
        .mint(
            "repo:acme/app:ref:refs/heads/main",
            FERRY_ISS,
            &["repository=acme/app", "repository_owner_id=\"66\""],
        )
        .unwrap();
    let (status, body) = env.exchange(&other).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // Nothing secret reached the logs: neither token, only fingerprints.
    let out = env.ferry.proc().output();
    assert!(out.contains("\"type\":\"ferry.audit\""), "{out}");
    assert!(!out.contains(&subject) && !out.contains(access) && !out.contains(&other));
    let sig = subject.rsplit('.').next().unwrap();
    assert!(!out.contains(sig));
}

#[tokio::test]
async fn each_attack_fails_and_its_positive_twin_succeeds() {
    let env = start();
    let t = now();
    let claims = |extra: Value| env.test_iss.claims(FERRY_ISS, "svc", t, extra);
    let other_key = Issuer::new("https://idp.test", TestKey::rsa("t1"));
    let unknown_iss = Issuer::new("https://unknown.test", TestKey::rsa("t1"));

    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("good", env.test_token(json!({})), 200, None),
        (
            "bad signature",
            tamper_payload(&env.test_token(json!({})), &claims(json!({"sub": "admin"}))),
            400,
            Some("invalid_request"),
        ),
        (
            "signed by another key with the same kid",
            other_key.token(&claims(json!({}))),
            400,
            Some("invalid_request"),
        ),
        (
            "expired",
            env.test_token(json!({"iat": t - 600, "nbf": t - 600, "exp": t - 120})),
            400,
            Some("invalid_request"),
        ),
        (
            "wrong aud",
            env.test_iss.token(
                &env.test_iss
                    .claims("https://elsewhere", "svc", t, json!({})),
            ),
            400,
            Some("invalid_request"),
        ),
        (
            "unknown issuer",
            unknown_iss.token(&unknown_iss.claims(FERRY_ISS, "svc", t, json!({}))),
            400,
            Some("invalid_request"),
        ),
        (
            "alg none",
            alg_none(&claims(json!({}))),
            400,
            Some("invalid_request"),
        ),
        (
            "HS256 keyed with the RSA public key",
            hs256_with_public_key(&env.test_iss.key, &claims(json!({}))),
            400,
            Some("invalid_request"),
        ),
        (
            "not a JWT",
            "not-a-jwt".to_owned(),
            400,
            Some("invalid_request"),
        ),
    ];
    for (name, token, want_status, want_error) in cases {
        let (status, body) = env.exchange(&token).await;
        assert_eq!(status, want_status, "{name}: {body}");
        assert_eq!(body["error"].as_str(), want_error, "{name}");
        if want_error.is_some() {
            // Fixed descriptions: never an echo of the input.
            let d = body["error_description"].as_str().unwrap();
            assert!(!token.contains(d) || d.len() < 8, "{name}");
            assert_eq!(d, "invalid subject token", "{name}");
        }
    }
}

#[tokio::test]
async fn request_shape_errors_each_with_a_positive_twin() {
    let env = start();
    let token = env.test_token(json!({}));
    let full = [
        ("grant_type", TE),
        ("subject_token", token.as_str()),
        ("subject_token_type", JWT),
        ("audience", DEPLOY),
    ];
    let ct = "application/x-www-form-urlencoded";

    // Twin for everything below.
    assert_eq!(env.post(form(&full), ct).await.0, 200);
    assert_eq!(
        env.post(
            form(&full),
            "application/x-www-form-urlencoded; charset=utf-8"
        )
        .await
        .0,
        200
    );

    // Each parameter missing.
    for skip in 0..full.len() {
        let partial: Vec<_> = full
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, p)| *p)
            .collect();
        let (status, body) = env.post(form(&partial), ct).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "without {}",
            full[skip].0
        );
    }
    // A single-valued parameter twice (twin: audience may repeat).
    let mut dup = full.to_vec();
    dup.push(("subject_token_type", JWT));
    let (status, body) = env.post(form(&dup), ct).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let mut twice_aud = full.to_vec();
    twice_aud.push(("audience", DEPLOY));
    assert_eq!(env.post(form(&twice_aud), ct).await.0, 200);

    // Wrong content type.
    let (status, body) = env.post(form(&full), "application/json").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // Oversized body (64 KiB limit); twin: the same padding parameter, under the limit.
    let mut small = full.to_vec();
    let pad_small = "a".repeat(40 * 1024);
    small.push(("pad", pad_small.as_str()));
    assert_eq!(env.post(form(&small), ct).await.0, 200);
    let mut big = full.to_vec();
    let pad_big = "a".repeat(70 * 1024);
    big.push(("pad", pad_big.as_str()));
    let (status, body) = env.post(form(&big), ct).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("invalid_request"))
    );

    // Unknown grant, wrong method.
    let (status, body) = env
        .post("grant_type=password&username=u&password=p".into(), ct)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let r = env
        .http
        .get(format!("{}/token", env.ferry.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn discovery_documents_and_health() {
    let env = start();
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let v: Value = env
            .http
            .get(format!("{}{path}", env.ferry.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["issuer"], FERRY_ISS);
        assert_eq!(v["token_endpoint"], format!("{FERRY_ISS}/token"));
        assert_eq!(v["response_types_supported"], json!([]));
    }
    for path in ["/healthz", "/readyz"] {
        let r = env
            .http
            .get(format!("{}{path}", env.ferry.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}
