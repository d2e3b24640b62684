//! Guarantees of the one `/token` pipeline that no grant can skip (issue 21 item 2): the
//! delegation rules run when an actor is added while narrowing, `may_act` travels into
//! issued tokens, a `cnf` Ferry cannot enforce is refused, a key-bound actor needs the
//! request's proof by its key, and an upstream `act` is kept under its issuer's name.
//! Each attack sits beside its twin that differs only in the attacked part.

use ferry_testkit::mint::{dpop_proof, payload};
use ferry_testkit::{Issuer, TestKey, now};
use ferry_verify::dpop::thumbprint;
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const ISSUER: &str = "https://ferry.example.com";
const API: &str = "https://api.example.com";
const NO_MALLORY: &str = "https://no-mallory.example.com";
const UPSTREAM_OK: &str = "https://upstream-ok.example.com";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    idp: Issuer,
    http: reqwest::Client,
}

fn start() -> Env {
    let setup = Setup::new("pipeline");
    let idp = setup.idp();
    let ferry = setup.start(&format!(
            r#"issuer: {ISSUER}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, rate_per_client: 100000 }}
{providers}audiences:
  - audience: {API}
    rules: [{{ allow: "true", scopes: [read] }}]
  - audience: {NO_MALLORY}
    rules:
      - deny: "actor.subject == 'mallory'"
      - allow: "true"
  - audience: {UPSTREAM_OK}
    rules:
      - allow: "subject_act.subject != 'evil-bot'"
"#,
        providers = idp_providers(ISSUER)
    ));
    Env {
        _setup: setup,
        ferry,
        idp,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn token(&self, sub: &str, extra: Value) -> String {
        self.idp.token(&self.idp.claims(ISSUER, sub, now(), extra))
    }

    async fn post(&self, form: &[(&str, &str)], proof: Option<String>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .form(form);
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        let resp = r.send().await.unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Exchanges `subject` (of `subject_type`) for `aud`, with an optional actor token.
    async fn exchange(
        &self,
        subject: &str,
        subject_type: &str,
        aud: &str,
        actor: Option<&str>,
        proof: Option<String>,
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
            ("audience", aud),
        ];
        if let Some(a) = actor {
            form.push(("actor_token", a));
            form.push(("actor_token_type", JWT));
        }
        self.post(&form, proof).await
    }
}

fn proof(key: &TestKey) -> Option<String> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let jti = format!("p{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    Some(dpop_proof(
        key,
        "POST",
        &format!("{ISSUER}/token"),
        now(),
        &jti,
        None,
        None,
    ))
}

fn access(body: &Value) -> Value {
    Value::Object(payload(body["access_token"].as_str().unwrap()))
}

/// The audiences' rules on `actor.*` and the subject's `may_act` run for an actor added
/// while narrowing a Ferry token, exactly as for one that comes with a provider token:
/// exchanging twice is no way around them.
#[tokio::test]
async fn an_actor_added_while_narrowing_meets_the_same_rules() {
    let env = start();
    let alice = env.token("alice", json!({}));
    let mallory = env.token("mallory", json!({}));
    let bot = env.token("ci-bot", json!({}));
    // Directly: the rule denies mallory as actor, allows ci-bot.
    let (s, b) = env
        .exchange(&alice, JWT, NO_MALLORY, Some(&mallory), None)
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_target")),
        "{b}"
    );
    let (s, b) = env
        .exchange(&alice, JWT, NO_MALLORY, Some(&bot), None)
        .await;
    assert_eq!(s, 200, "{b}");
    // Twice: alice alone, then narrowed with mallory as actor. Refused the same way.
    let (s, b) = env.exchange(&alice, JWT, NO_MALLORY, None, None).await;
    assert_eq!(s, 200, "{b}");
    let plain = b["access_token"].as_str().unwrap().to_owned();
    let (s, b) = env
        .exchange(&plain, AT, NO_MALLORY, Some(&mallory), None)
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_target")),
        "{b}"
    );
    // Twin: the same narrowing with ci-bot as actor.
    let (s, b) = env.exchange(&plain, AT, NO_MALLORY, Some(&bot), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        access(&b)["act"],
        json!({"sub": "ci-bot", "provider": "idp"})
    );
}

/// `may_act` (RFC 8693 §4.4) is carried into the issued token, so narrowing it later
/// honours it too.
#[tokio::test]
async fn may_act_travels_into_issued_tokens_and_binds_later_narrowing() {
    let env = start();
    let alice = env.token("alice", json!({"may_act": {"sub": "ci-bot"}}));
    let mallory = env.token("mallory", json!({}));
    let bot = env.token("ci-bot", json!({}));
    let (s, b) = env.exchange(&alice, JWT, API, None, None).await;
    assert_eq!(s, 200, "{b}");
    let issued = access(&b);
    assert_eq!(issued["may_act"], json!({"sub": "ci-bot"}));
    let t = b["access_token"].as_str().unwrap().to_owned();
    let (s, b) = env.exchange(&t, AT, API, Some(&mallory), None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let (s, b) = env.exchange(&t, AT, API, Some(&bot), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(access(&b)["act"]["sub"], "ci-bot");
    // A narrowed token keeps the parent's may_act.
    assert_eq!(access(&b)["may_act"], json!({"sub": "ci-bot"}));
}

/// A `cnf` Ferry cannot enforce (a certificate thumbprint, an embedded key, an array
/// thumbprint, an unknown method) is refused: never issued as a bearer token.
#[tokio::test]
async fn a_binding_ferry_cannot_enforce_is_refused() {
    let env = start();
    let key = TestKey::ec("holder");
    let jkt = thumbprint(&key.public_jwk());
    for cnf in [
        json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        json!({"jwk": key.public_jwk()}),
        json!({"jkt": [jkt]}),
        json!({"kid": "k1"}),
        json!({"jkt": jkt, "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        json!("jkt"),
    ] {
        let t = env.token("alice", json!({ "cnf": cnf }));
        let (s, b) = env.exchange(&t, JWT, API, None, proof(&key)).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid_request")),
            "{cnf}: {b}"
        );
    }
    // Twin: the thumbprint of the proof's key, a string: issued, and still bound.
    let t = env.token("alice", json!({"cnf": {"jkt": jkt}}));
    let (s, b) = env.exchange(&t, JWT, API, None, proof(&key)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token_type"], "DPoP");
    assert_eq!(access(&b)["cnf"]["jkt"], jkt.as_str());
}

/// An actor token bound to a key is usable only with the request's proof by that key;
/// a subject and an actor bound to different keys cannot both be proven by one request.
#[tokio::test]
async fn a_bound_actor_needs_the_proof_of_its_key() {
    let env = start();
    let (k1, k2) = (TestKey::ec("k1"), TestKey::ec("k2"));
    let (j1, j2) = (thumbprint(&k1.public_jwk()), thumbprint(&k2.public_jwk()));
    let alice = env.token("alice", json!({}));
    let bot1 = env.token("ci-bot", json!({"cnf": {"jkt": j1}}));
    // No proof, or a proof by another key: refused.
    let (s, b) = env.exchange(&alice, JWT, API, Some(&bot1), None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    let (s, b) = env
        .exchange(&alice, JWT, API, Some(&bot1), proof(&k2))
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{b}"
    );
    // Twin: the proof by the actor's key; the issued token is bound to it.
    let (s, b) = env
        .exchange(&alice, JWT, API, Some(&bot1), proof(&k1))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(access(&b)["cnf"]["jkt"], j1.as_str());
    // A subject bound to k2 and an actor bound to k1: one proof cannot cover both.
    let alice2 = env.token("alice", json!({"cnf": {"jkt": j2}}));
    for key in [&k1, &k2] {
        let (s, b) = env
            .exchange(&alice2, JWT, API, Some(&bot1), proof(key))
            .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{b}"
        );
    }
    // Twin: both bound to k1, proven by k1.
    let alice1 = env.token("alice", json!({"cnf": {"jkt": j1}}));
    let (s, b) = env
        .exchange(&alice1, JWT, API, Some(&bot1), proof(&k1))
        .await;
    assert_eq!(s, 200, "{b}");
}

/// An upstream `act` is never copied blindly: every level is kept under the name of the
/// issuer that asserted it (a `provider` member, which only Ferry sets, is dropped), and
/// policy sees it as `subject_act`.
#[tokio::test]
async fn an_upstream_act_is_kept_under_its_issuers_name_and_seen_by_policy() {
    let env = start();
    // A forged `provider` would make the upstream's say-so look verified by Ferry.
    let forged = json!({"sub": "up-bot", "provider": "idp", "act": {"sub": "older"}});
    let t = env.token("alice", json!({ "act": forged }));
    let (s, b) = env.exchange(&t, JWT, API, None, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        access(&b)["act"],
        json!({"sub": "up-bot", "iss": "https://idp.example.com",
               "act": {"sub": "older", "iss": "https://idp.example.com"}})
    );
    // Policy sees it: the rule refuses one upstream actor by name.
    let (s, b) = env.exchange(&t, JWT, UPSTREAM_OK, None, None).await;
    assert_eq!(s, 200, "{b}");
    let other = env.token("alice", json!({"act": {"sub": "evil-bot"}}));
    let (s, b) = env.exchange(&other, JWT, UPSTREAM_OK, None, None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_target")),
        "{b}"
    );
    // Twin of the policy: no act at all is admitted.
    let plain = env.token("alice", json!({}));
    let (s, b) = env.exchange(&plain, JWT, UPSTREAM_OK, None, None).await;
    assert_eq!(s, 200, "{b}");
}
