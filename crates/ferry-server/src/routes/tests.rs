//! Router tests: the real router with `oneshot`, no socket.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ferry_core::FakeClock;
use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::audit::AuditSink;
use crate::load::{build_state, load_providers};

const NOW: i64 = 1_700_000_000;
const FERRY: &str = "https://ferry.test";
const IDP: &str = "https://idp.test";
const DEPLOY: &str = "https://deploy.test";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

mod http;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Fx {
    _keys_dir: tempfile::TempDir,
    app: axum::Router,
    idp: Issuer,
    audit: Buf,
    state: crate::state::AppState,
    clock: Arc<FakeClock>,
}

fn fixture() -> Fx {
    let idp = Issuer::new(IDP, TestKey::rsa("k1"));
    let yaml = format!(
        r#"
issuer: {FERRY}
tokens: {{ default_ttl: 10m, max_ttl: 1h, min_ttl: 60s }}
providers:
  - id: dev
    issuer: {IDP}
    audiences: [{FERRY}]
    jwks: {{ inline: {jwks} }}
    condition: assertion.sub.startsWith('repo:acme/')
    mapping:
      subject: "'gh:' + assertion.sub"
      attributes: {{ repository: assertion.repository }}
audiences:
  - audience: {DEPLOY}
    rules:
      - allow: attribute.repository == 'acme/app'
        scopes: [deploy, read]
        max_ttl: 5m
  - audience: https://logs.test
    rules:
      - allow: provider == 'dev'
        scopes: [read]
  - audience: https://admin.test
    rules:
      - allow: "false"
"#,
        jwks = jwks(&[&idp.key])
    );
    let config = ferry_core::config::parse(&yaml, Path::new("/")).unwrap();
    let (providers, _) =
        load_providers(&config, Arc::new(ferry_verify::time::ManualMono::default())).unwrap();
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = ferry_keys::KeyManager::open(
        Arc::new(ferry_keys::LocalStore::open(keys_dir.path()).unwrap()),
        ferry_keys::ManagerConfig {
            alg: ferry_keys::SigningAlg::Es256,
            policy: crate::load::ring_policy(&config),
            backend: ferry_keys::Backend::Software {
                keks: Arc::new(ferry_keys::Keks::default()),
                plaintext: true,
            },
            writer: "test".into(),
        },
        NOW,
    )
    .unwrap();
    let audit = Buf::default();
    let clock = Arc::new(FakeClock::new(NOW));
    let accounts = crate::accounts::load_accounts(
        &config,
        Arc::new(ferry_verify::time::ManualMono::default()),
    )
    .unwrap();
    let state = build_state(
        config,
        providers,
        accounts,
        Arc::new(keys),
        clock.clone(),
        Arc::new(AuditSink::new(Box::new(audit.clone()))),
    );
    Fx {
        _keys_dir: keys_dir,
        app: crate::router(state.clone()),
        idp,
        audit,
        state,
        clock,
    }
}

impl Fx {
    fn subject(&self, extra: Value) -> String {
        let mut e = json!({"repository": "acme/app"});
        if let (Some(a), Value::Object(b)) = (e.as_object_mut(), extra) {
            a.extend(b);
        }
        self.idp
            .token(&self.idp.claims(FERRY, "repo:acme/app", NOW, e))
    }

    async fn post(
        &self,
        body: &str,
        content_type: &str,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let req = Request::post("/token")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(req).await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, v)
    }

    async fn exchange(&self, token: &str, extra: &str) -> (StatusCode, Value) {
        let body = format!(
            "grant_type={TE}&subject_token={token}&subject_token_type={JWT}&audience={DEPLOY}{extra}"
        );
        let (s, _, v) = self.post(&body, "application/x-www-form-urlencoded").await;
        (s, v)
    }

    fn audit_lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.audit.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn verify_issued(fx: &Fx, token: &str, aud: &str) -> serde_json::Map<String, Value> {
    let (keys, _) = ferry_verify::KeySet::from_jwks(
        fx.state.keys.snapshot().jwks.as_bytes(),
        &[ferry_verify::Algorithm::ES256],
    )
    .unwrap();
    let rules = ferry_verify::Rules::new(FERRY, vec![aud.to_owned()])
        .require_type("at+jwt")
        .accept_other_audiences();
    let v = ferry_verify::parse(token)
        .and_then(|t| t.verify_with_keys(&rules, &keys, NOW))
        .unwrap();
    assert_eq!(v.header.typ.as_deref(), Some("at+jwt"));
    v.claims
}

#[tokio::test]
async fn a_token_exchange_succeeds_in_the_shape_clients_need() {
    let fx = fixture();
    let token = fx.subject(json!({}));
    let body = format!(
        "grant_type={TE}&subject_token={token}%0A&subject_token_type={JWT}&audience={DEPLOY}"
    );
    let (status, headers, v) = fx
        .post(&body, "application/x-www-form-urlencoded;charset=UTF-8")
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], json!(300));
    assert_eq!(v["scope"], "deploy read");
    let claims = verify_issued(&fx, v["access_token"].as_str().unwrap(), DEPLOY);
    assert_eq!(claims["sub"], "gh:repo:acme/app");
    assert_eq!(claims["aud"], DEPLOY);
    assert_eq!(claims["client_id"], "ferry-provider:dev");
    assert_eq!(claims["exp"], json!(NOW + 300));
    assert_eq!(claims["ferry"]["provider"], "dev");
    assert_eq!(claims["attributes"]["repository"], "acme/app");

    let lines = fx.audit_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["jti"], claims["jti"]);
    let text = String::from_utf8(fx.audit.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(&token) && !text.contains(v["access_token"].as_str().unwrap()));
}

#[tokio::test]
async fn requested_jwt_type_is_echoed_and_public_client_id_is_used() {
    let fx = fixture();
    let extra = "&requested_token_type=urn:ietf:params:oauth:token-type:jwt&client_id=my-ci";
    let (s, v) = fx.exchange(&fx.subject(json!({})), extra).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["issued_token_type"], JWT);
    let claims = verify_issued(&fx, v["access_token"].as_str().unwrap(), DEPLOY);
    assert_eq!(claims["client_id"], "my-ci");
}

#[tokio::test]
async fn several_audiences_all_allowed_or_refused() {
    let fx = fixture();
    let t = fx.subject(json!({}));
    let (s, v) = fx.exchange(&t, "&audience=https://logs.test").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "read");
    let claims = verify_issued(
        &fx,
        v["access_token"].as_str().unwrap(),
        "https://logs.test",
    );
    assert_eq!(claims["aud"], json!([DEPLOY, "https://logs.test"]));

    let (s, v) = fx.exchange(&t, "&audience=https://admin.test").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "invalid_target");
    let (s2, v2) = fx.exchange(&t, "&audience=https://unknown.test").await;
    assert_eq!(s2, StatusCode::BAD_REQUEST);
    assert_eq!(v2, v, "unknown and denied audiences must look alike");
}

#[tokio::test]
async fn denials_name_their_step_and_rule_in_the_audit_only() {
    let fx = fixture();
    // The provider's condition (twin: the passing subject above).
    let t = fx.idp.token(&fx.idp.claims(
        FERRY,
        "repo:other/app",
        NOW,
        json!({"repository": "acme/app"}),
    ));
    let (s, v) = fx.exchange(&t, "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // A policy rule.
    let (s, v) = fx
        .exchange(&fx.subject(json!({"repository": "acme/other"})), "")
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_target"))
    );
    // A scope.
    let (s, v) = fx.exchange(&fx.subject(json!({})), "&scope=admin").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (s, _) = fx.exchange(&fx.subject(json!({})), "&scope=read").await;
    assert_eq!(s, StatusCode::OK);

    let lines = fx.audit_lines();
    assert_eq!(lines[0]["step"], "mapping");
    assert_eq!(lines[0]["rule"], "providers[0].condition");
    assert_eq!(lines[1]["step"], "policy");
    assert!(lines[1]["rule"].as_str().unwrap().contains(DEPLOY));
    assert_eq!(lines[2]["step"], "policy");
    assert_eq!(lines[2]["error"], "invalid_scope");
    assert_eq!(lines[3]["decision"], "allow");
    for l in &lines[..3] {
        assert_eq!(l["decision"], "deny");
    }
}

#[tokio::test]
async fn a_subject_token_about_to_expire_is_refused() {
    let fx = fixture();
    let (s, v) = fx.exchange(&fx.subject(json!({"exp": NOW + 59})), "").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // Inside the leeway but already past exp: also refused.
    let (s, _) = fx.exchange(&fx.subject(json!({"exp": NOW - 10})), "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Twin: 61 s left is enough, and the token is capped at the subject's exp.
    let (s, v) = fx.exchange(&fx.subject(json!({"exp": NOW + 61})), "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["expires_in"], json!(61));
}

#[tokio::test]
async fn a_replica_cut_off_from_its_key_store_never_issues_a_token_that_outlives_its_key() {
    let fx = fixture();
    let at = |t: i64| {
        fx.clock.set(t);
        fx.idp.token(
            &fx.idp
                .claims(FERRY, "repo:acme/app", t, json!({"repository": "acme/app"})),
        )
    };
    let (s, normal) = fx.exchange(&at(NOW), "").await;
    assert_eq!(s, StatusCode::OK, "{normal}");
    // No tick ran since NOW (the store is "unreachable"): the key scheduled to retire
    // after 7 days may be removed by other replicas at the deadline.
    let deadline = fx.state.keys.signing_deadline().unwrap();
    // Twin: an hour before it, the full lifetime.
    let (s, v) = fx.exchange(&at(deadline - 3_600), "").await;
    assert_eq!(
        (s, &v["expires_in"]),
        (StatusCode::OK, &normal["expires_in"])
    );
    // Two minutes before: the token ends at the deadline.
    let (s, v) = fx.exchange(&at(deadline - 120), "").await;
    assert_eq!((s, v["expires_in"].as_u64()), (StatusCode::OK, Some(120)));
    let payload = v["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["exp"], json!(deadline));
    // Less than min_ttl left: refused, fixed error, nothing issued.
    let (s, v) = fx.exchange(&at(deadline - 30), "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"], "temporarily_unavailable");
    assert!(v.get("access_token").is_none());
}
