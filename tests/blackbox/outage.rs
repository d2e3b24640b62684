//! An issuer outage is the same answer whatever the role of the token whose keys are
//! missing: `503 temporarily_unavailable` with one fixed description, for a subject
//! token, an actor token (also when narrowing a Ferry token), a client assertion
//! (`private_key_jwt` with a remote `jwks.uri`), a service account's jwt-bearer assertion
//! and a service account's assertion given as a subject token. One Ferry trusts two
//! issuers serving the same kind of keys: `down` refuses connections (no keys were ever
//! cached), `up` answers; each refusal has a positive twin that differs only in naming
//! `up` instead of `down`. A parent token being narrowed is verified with Ferry's own
//! key ring, which no outage of an issuer can take away, so it has no outage case.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, MockIdp, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup};

const FERRY: &str = "https://ferry.example.com";
const DEPLOY: &str = "https://deploy.example.com";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The one description of an issuer outage, whatever the role.
const KEYS_UNAVAILABLE: &str = "issuer keys temporarily unavailable";

static JTI: AtomicU64 = AtomicU64::new(0);

/// One running Ferry and the two issuers; `down` refuses connections from the start.
struct Env {
    _tmp: Setup,
    ferry: Ferry,
    up: MockIdp,
    down: MockIdp,
    up_key: TestKey,
    down_key: TestKey,
}

fn config(dir: &Path, up: &str, down: &str) -> std::path::PathBuf {
    let provider = |id: &str, url: &str| {
        format!(
            "  - id: {id}\n    kind: oidc\n    issuer: {url}\n    audiences: [{FERRY}]\n    cache: {{ refetch_interval: 10d, error_ttl: 30s }}\n"
        )
    };
    let text = format!(
        r#"issuer: {FERRY}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}
outbound:
  allow_insecure_origins: ["{up}", "{down}"]
service_accounts:
  - {{ id: sa-up, jwks: {{ uri: "{up}/jwks" }} }}
  - {{ id: sa-down, jwks: {{ uri: "{down}/jwks" }} }}
clients:
  - {{ id: client-up, auth: private_key_jwt, jwks: {{ uri: "{up}/jwks" }} }}
  - {{ id: client-down, auth: private_key_jwt, jwks: {{ uri: "{down}/jwks" }} }}
providers:
{}{}  - id: sa
    kind: service_account
    mapping: {{ subject: "'sa:' + assertion.sub" }}
audiences:
  - audience: {DEPLOY}
    rules:
      - allow: "true"
        scopes: [deploy]
"#,
        provider("up", up),
        provider("down", down),
    );
    let path = dir.join("ferry.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(tag: &str) -> Env {
    let setup = Setup::new(tag);
    let (up_key, down_key) = (TestKey::ec("k-up"), TestKey::ec("k-down"));
    let up = MockIdp::start(jwks(&[&up_key])).await.unwrap();
    let down = MockIdp::start(jwks(&[&down_key])).await.unwrap();
    down.refuse_connections().await;
    config(setup.path(), &up.url, &down.url);
    let ferry = setup.run();
    Env {
        _tmp: setup,
        ferry,
        up,
        down,
        up_key,
        down_key,
    }
}

impl Env {
    fn issuer(&self, iss: &str, down: bool) -> Issuer {
        let key = if down { &self.down_key } else { &self.up_key };
        Issuer::new(iss, TestKey::from_pkcs8(&key.kid, key.pkcs8()).unwrap())
    }

    /// A provider token from `up` or `down`.
    fn provider_token(&self, down: bool, sub: &str) -> String {
        let idp = if down { &self.down } else { &self.up };
        let issuer = self.issuer(&idp.url, down);
        issuer.token(&issuer.claims(FERRY, sub, now(), json!({})))
    }

    /// An assertion signed with the key `up` or `down` serves: `iss` and `sub` the
    /// account or client, `aud` Ferry's issuer, a fresh `jti`.
    fn assertion(&self, down: bool, iss: &str) -> String {
        let issuer = self.issuer(iss, down);
        let jti = format!(
            "o-{}-{}",
            std::process::id(),
            JTI.fetch_add(1, Ordering::SeqCst)
        );
        issuer.token(&issuer.claims(FERRY, iss, now(), json!({"jti": jti})))
    }

    async fn post(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.ferry.url))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn bearer(&self, assertion: &str) -> (u16, Value) {
        self.post(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion),
            ("audience", DEPLOY),
        ])
        .await
    }

    async fn exchange(&self, subject: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", subject),
            ("subject_token_type", JWT),
            ("audience", DEPLOY),
        ];
        form.extend_from_slice(extra);
        self.post(&form).await
    }
}

/// The answer to an outage: 503, `temporarily_unavailable`, the fixed description.
fn assert_outage(got: &(u16, Value), role: &str) {
    assert_eq!(
        (
            got.0,
            got.1["error"].as_str(),
            got.1["error_description"].as_str()
        ),
        (503, Some("temporarily_unavailable"), Some(KEYS_UNAVAILABLE)),
        "{role}: {}",
        got.1
    );
}

fn assert_ok(got: &(u16, Value), role: &str) {
    assert_eq!(got.0, 200, "{role}: {}", got.1);
}

#[tokio::test]
async fn outage_of_a_subject_tokens_issuer_is_503() {
    let env = start("outage-subject").await;
    assert_outage(
        &env.exchange(&env.provider_token(true, "w"), &[]).await,
        "subject",
    );
    // Twin: the same token from the issuer that answers.
    assert_ok(
        &env.exchange(&env.provider_token(false, "w"), &[]).await,
        "subject",
    );
}

#[tokio::test]
async fn outage_of_an_actor_tokens_issuer_is_503() {
    let env = start("outage-actor").await;
    let subject = env.provider_token(false, "alice");
    let actor = |down| env.provider_token(down, "bot");
    let (a_down, a_up) = (actor(true), actor(false));
    fn with(a: &str) -> [(&str, &str); 2] {
        [("actor_token", a), ("actor_token_type", JWT)]
    }
    assert_outage(&env.exchange(&subject, &with(&a_down)).await, "actor");
    let (s, body) = env.exchange(&subject, &with(&a_up)).await;
    assert_ok(&(s, body.clone()), "actor");

    // The same actor added while narrowing the Ferry token just issued.
    let parent = body["access_token"].as_str().unwrap().to_owned();
    let narrow = |a: &str| {
        let p = parent.clone();
        let a = a.to_owned();
        let env = &env;
        async move {
            env.post(&[
                ("grant_type", TE),
                ("subject_token", &p),
                ("subject_token_type", AT),
                ("audience", DEPLOY),
                ("actor_token", &a),
                ("actor_token_type", JWT),
            ])
            .await
        }
    };
    assert_outage(&narrow(&a_down).await, "actor when narrowing");
    assert_ok(&narrow(&a_up).await, "actor when narrowing");
}

#[tokio::test]
async fn outage_of_a_clients_remote_keys_is_503() {
    let env = start("outage-client").await;
    let subject = env.provider_token(false, "w");
    let client = |down, id| env.assertion(down, id);
    let (c_down, c_up) = (client(true, "client-down"), client(false, "client-up"));
    fn with(a: &str) -> [(&str, &str); 2] {
        [
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", a),
        ]
    }
    assert_outage(
        &env.exchange(&subject, &with(&c_down)).await,
        "client assertion",
    );
    // Twin: a client whose keys come from the issuer that answers.
    assert_ok(
        &env.exchange(&subject, &with(&c_up)).await,
        "client assertion",
    );
}

#[tokio::test]
async fn outage_of_a_service_accounts_remote_keys_is_503_as_grant_and_as_subject() {
    let env = start("outage-sa").await;
    let a = env.assertion(true, "sa-down");
    assert_outage(&env.bearer(&a).await, "service account, jwt-bearer");
    let a = env.assertion(false, "sa-up");
    assert_ok(&env.bearer(&a).await, "service account, jwt-bearer");

    let a = env.assertion(true, "sa-down");
    assert_outage(
        &env.exchange(&a, &[]).await,
        "service account, subject token",
    );
    let a = env.assertion(false, "sa-up");
    assert_ok(
        &env.exchange(&a, &[]).await,
        "service account, subject token",
    );
}
