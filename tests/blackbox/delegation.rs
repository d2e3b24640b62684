//! Delegation (RFC 8693 §1.1, §4.1, §4.4): an actor token produces an `act` claim, nested
//! for chains; `may_act` is honoured; policies condition on the actor.

use ferry_testkit::mint::payload;
use ferry_testkit::{Issuer, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    issuer_url: String,
    idp: Issuer,
}

fn start() -> Env {
    let setup = Setup::new("delegation");
    let issuer_url = setup.url();
    let idp = setup.idp();
    let providers = idp_providers(&issuer_url);
    let ferry = setup.start(&format!(
            "issuer: {issuer_url}\ndata_dir: data\n{providers}audiences:\n  - audience: https://api.example.com\n    rules: [{{ allow: \"true\", scopes: [read] }}]\n  - audience: https://delegated.example.com\n    rules: [{{ allow: \"actor.subject == 'ci-bot'\" }}]\n"
    ));
    Env {
        _setup: setup,
        ferry,
        issuer_url,
        idp,
    }
}

impl Env {
    fn token(&self, sub: &str, extra: Value) -> String {
        self.idp
            .token(&self.idp.claims(&self.issuer_url, sub, now(), extra))
    }

    async fn exchange(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.ferry.url))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn delegation_act_may_act_chains_and_policy() {
    let env = start();
    let alice = env.token("alice", json!({"may_act": {"sub": "ci-bot"}}));
    let bot = env.token("ci-bot", json!({}));
    let mallory = env.token("mallory", json!({}));
    let form = |subject: &str, actor: Option<&str>, aud: &str| {
        let mut f: Vec<(String, String)> = vec![
            ("grant_type".into(), TE.into()),
            ("subject_token".into(), subject.into()),
            ("subject_token_type".into(), JWT.into()),
            ("audience".into(), aud.into()),
        ];
        if let Some(a) = actor {
            f.push(("actor_token".into(), a.into()));
            f.push(("actor_token_type".into(), JWT.into()));
        }
        f
    };
    async fn send(env: &Env, f: Vec<(String, String)>) -> (u16, Value) {
        let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.exchange(&refs).await
    }

    // Delegation: act names the actor.
    let (s, body) = send(&env, form(&alice, Some(&bot), "https://api.example.com")).await;
    assert_eq!(s, 200, "{body}");
    let delegated = body["access_token"].as_str().unwrap().to_owned();
    let c = payload(&delegated);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["act"], json!({"sub": "ci-bot", "provider": "idp"}));
    // Impersonation (no actor): no act.
    let (s, body) = send(&env, form(&alice, None, "https://api.example.com")).await;
    assert_eq!(s, 200);
    assert!(
        payload(body["access_token"].as_str().unwrap())
            .get("act")
            .is_none()
    );
    // may_act names ci-bot: mallory may not act for alice.
    let (s, body) = send(
        &env,
        form(&alice, Some(&mallory), "https://api.example.com"),
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
    // Policy on the actor: the delegated audience needs ci-bot as actor (twin: without an actor).
    assert_eq!(
        send(
            &env,
            form(&bot, Some(&bot), "https://delegated.example.com")
        )
        .await
        .0,
        200
    );
    let (s, body) = send(&env, form(&alice, None, "https://delegated.example.com")).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_target")));
    // A chain: a delegated token, narrowed with another actor, nests the acts. (Alice's
    // token names ci-bot in may_act, which travels into the delegated token: worker may
    // not act for her. Carol's names nobody.)
    let carol = env.token("carol", json!({}));
    let (s, body) = send(&env, form(&carol, Some(&bot), "https://api.example.com")).await;
    assert_eq!(s, 200, "{body}");
    let carols = body["access_token"].as_str().unwrap().to_owned();
    let worker = env.token("worker", json!({}));
    let narrowed_with = |subject: &str, actor: &str| {
        vec![
            ("grant_type".to_owned(), TE.to_owned()),
            ("subject_token".to_owned(), subject.to_owned()),
            ("subject_token_type".to_owned(), AT.to_owned()),
            ("audience".to_owned(), "https://api.example.com".to_owned()),
            ("actor_token".to_owned(), actor.to_owned()),
            ("actor_token_type".to_owned(), JWT.to_owned()),
        ]
    };
    let (s, body) = send(&env, narrowed_with(&delegated, &worker)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let delegated = carols;
    let chain = vec![
        ("grant_type".to_owned(), TE.to_owned()),
        ("subject_token".to_owned(), delegated.clone()),
        ("subject_token_type".to_owned(), AT.to_owned()),
        ("audience".to_owned(), "https://api.example.com".to_owned()),
        ("actor_token".to_owned(), worker),
        ("actor_token_type".to_owned(), JWT.to_owned()),
    ];
    let (s, body) = send(&env, chain).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["act"],
        json!({"sub": "worker", "provider": "idp", "act": {"sub": "ci-bot", "provider": "idp"}})
    );
    // actor_token without actor_token_type is malformed.
    let mut bad = form(&alice, None, "https://api.example.com");
    bad.push(("actor_token".into(), bot.clone()));
    let (s, body) = send(&env, bad).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")));
}

/// An upstream `act` is read as Ferry's `act` type: an object naming its actor is nested
/// under the new actor with its members kept; anything else is refused, never copied.
#[tokio::test]
async fn an_upstream_act_is_nested_when_well_formed_and_refused_otherwise() {
    let env = start();
    let bot = env.token("ci-bot", json!({}));
    let exchange = |subject: String| {
        let bot = bot.clone();
        let env = &env;
        async move {
            env.exchange(&[
                ("grant_type", TE),
                ("subject_token", &subject),
                ("subject_token_type", JWT),
                ("audience", "https://api.example.com"),
                ("actor_token", &bot),
                ("actor_token_type", JWT),
            ])
            .await
        }
    };
    let upstream = json!({"sub": "up-bot", "iss": "https://up.example.com"});
    let (s, body) = exchange(env.token("alice", json!({"act": upstream}))).await;
    assert_eq!(s, 200, "{body}");
    // Kept under the name of the issuer that asserted it (idp), whatever `iss` it names.
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["act"],
        json!({"sub": "ci-bot", "provider": "idp",
               "act": {"sub": "up-bot", "iss": "https://idp.example.com"}})
    );
    for bad in [
        json!("up-bot"),
        json!(["up-bot"]),
        json!({"iss": "https://up.example.com"}),
    ] {
        let (s, body) = exchange(env.token("alice", json!({"act": bad}))).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
}
