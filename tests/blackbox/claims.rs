//! Per-audience claims (`audiences[].claims`): computed after the decision and added at
//! the top level; a narrowed token keeps its parent's as they were; an expression that
//! fails, or two audiences that disagree, refuse at the step `claims` — each beside its
//! twin.

use ferry_testkit::mint::payload;
use ferry_testkit::{Issuer, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, IDP, Setup};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const A: &str = "https://a.example.com";
const B: &str = "https://b.example.com";
const C: &str = "https://c.example.com";
const D: &str = "https://d.example.com";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    issuer_url: String,
    idp: Issuer,
    http: reqwest::Client,
}

fn start() -> Env {
    let setup = Setup::new("claims");
    let issuer_url = setup.url();
    let idp = setup.idp();
    let ferry = setup.start(&format!(
        r#"issuer: {issuer_url}
data_dir: data
providers:
  - id: idp
    issuer: {IDP}
    audiences: [{issuer_url}]
    jwks: {{ file: idp.json }}
    mapping:
      subject: assertion.sub
      attributes: {{ repository: assertion.repository }}
clients:
  - {{ id: ci, auth: client_secret_basic, secret_sha256: {ci} }}
audiences:
  - audience: {A}
    rules: [{{ allow: "true", scopes: [read, write] }}]
    claims:
      repository: attribute.repository
      authenticated: request.client_authenticated
      tenant: "'acme'"
      build: "42"
      trusted: "provider == 'idp'"
  - audience: {B}
    rules: [{{ allow: "true", scopes: [read, write] }}]
    claims: {{ tenant: "'acme'" }}
  - audience: {C}
    rules: [{{ allow: "true", scopes: [read, write] }}]
    claims: {{ tenant: "'other'" }}
  - audience: {D}
    rules: [{{ allow: "true" }}]
    claims: {{ number: "int(subject)" }}
"#,
        ci = ferry_testkit::sha256_hex("ci-secret"),
    ));
    Env {
        _setup: setup,
        ferry,
        issuer_url,
        idp,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn post(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.post_as(None, form).await
    }

    async fn post_as(&self, client: Option<(&str, &str)>, form: &[(&str, &str)]) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .form(form);
        if let Some((id, secret)) = client {
            r = r.basic_auth(id, Some(secret));
        }
        let resp = r.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    fn subject_of(&self, sub: &str) -> String {
        let extra = json!({"repository": "acme/app"});
        self.idp
            .token(&self.idp.claims(&self.issuer_url, sub, now(), extra))
    }

    fn subject(&self) -> String {
        self.subject_of("workload")
    }

    async fn exchange(&self, subject: &str, audiences: &[&str]) -> (u16, Value) {
        self.exchange_as(None, subject, audiences).await
    }

    async fn exchange_as(
        &self,
        client: Option<(&str, &str)>,
        subject: &str,
        audiences: &[&str],
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", subject),
            ("subject_token_type", JWT),
        ];
        form.extend(audiences.iter().map(|a| ("audience", *a)));
        self.post_as(client, &form).await
    }

    async fn narrow(&self, parent: &str, audience: &str, scope: &str) -> (u16, Value) {
        self.post(&[
            ("grant_type", TE),
            ("subject_token", parent),
            ("subject_token_type", AT),
            ("audience", audience),
            ("scope", scope),
        ])
        .await
    }

    fn audit_names(&mut self, needle: &str) -> bool {
        self.ferry.proc_mut().wait_for(needle).is_ok()
    }
}

fn token(body: &Value) -> String {
    body["access_token"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn audience_claims_are_top_level_and_a_narrowed_token_keeps_its_parents() {
    let env = start();
    // Issued to the authenticated client `ci`.
    let (s, body) = env
        .exchange_as(Some(("ci", "ci-secret")), &env.subject(), &[A, B])
        .await;
    assert_eq!(s, 200, "{body}");
    let parent = token(&body);
    let p = payload(&parent);
    assert_eq!(p["repository"], "acme/app");
    assert_eq!(p["authenticated"], true);
    assert_eq!(p["tenant"], "acme");
    assert_eq!(p["build"], 42);
    assert_eq!(p["trusted"], true);
    // Ferry's own profile is untouched beside them.
    assert_eq!(p["sub"], "workload");
    assert_eq!(p["ferry"]["provider"], "idp");
    // Narrowed to A alone by a caller that does not authenticate: the parent's claims as
    // they were — `request.client_authenticated` was not evaluated again (it would now be
    // false).
    let (s, body) = env.narrow(&parent, A, "read").await;
    assert_eq!(s, 200, "{body}");
    let child = token(&body);
    let c = payload(&child);
    assert_eq!(c["aud"], A);
    for k in ["repository", "authenticated", "tenant", "build", "trusted"] {
        assert_eq!(c[k], p[k], "{k}");
    }
    // And again from the child: still the first token's claims.
    let (s, body) = env.narrow(&child, A, "read").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(payload(&token(&body))["authenticated"], true);
    // A fresh exchange without client authentication evaluates anew (the twin of the
    // carried value).
    let (s, body) = env.exchange(&env.subject(), &[A]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(payload(&token(&body))["authenticated"], false);
}

#[tokio::test]
async fn a_failing_claim_or_two_disagreeing_audiences_refuse_at_the_claims_step() {
    let mut env = start();
    // `int(subject)` of a subject that is not a number: an expression error.
    let (s, body) = env.exchange(&env.subject(), &[D]).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"], "invalid_target");
    assert_eq!(
        body["error_description"],
        "the claims of the requested audience could not be computed"
    );
    assert!(env.audit_names(r#""step":"claims","rule":"audiences[3].claims.number""#));
    // The twin: a numeric subject.
    let (s, body) = env.exchange(&env.subject_of("42"), &[D]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(payload(&token(&body))["number"], 42);
    // B and C both set `tenant`, to different values.
    let (s, body) = env.exchange(&env.subject(), &[B, C]).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    assert!(env.audit_names(r#""step":"claims","rule":"audiences[2].claims.tenant""#));
    // The twin: A and B agree on it.
    let (s, body) = env.exchange(&env.subject(), &[A, B]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(payload(&token(&body))["tenant"], "acme");
}
