//! Findings of the outside review of the one `/token` pipeline, each attack beside its
//! twin: options that would be silently dropped, a deny rule on an absent actor,
//! revoking an actor, the audit record of delegation, jwt-bearer parameters, an
//! upstream `act` naming another issuer, look-alike public client ids.

use ferry_testkit::mint::payload;
use ferry_testkit::{Issuer, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup, idp_providers};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
const ISSUER: &str = "https://ferry.example.com";
const API: &str = "https://api.example.com";
const NEED_ACTOR: &str = "https://need-actor.example.com";

struct Env {
    _setup: Setup,
    ferry: Ferry,
    idp: Issuer,
    http: reqwest::Client,
}

fn start() -> Env {
    let setup = Setup::new("review");
    let idp = setup.idp();
    let ferry = setup.start(&format!(
            r#"issuer: {ISSUER}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, rate_per_client: 100000 }}
{providers}audiences:
  - audience: {API}
    rules: [{{ allow: "true", scopes: [read, write] }}]
  - audience: {NEED_ACTOR}
    rules:
      - {{ name: delegation-only, deny: "actor.subject == ''" }}
      - allow: "true"
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

    async fn post(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/token", self.ferry.url))
            .form(form)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    async fn exchange(
        &self,
        subject: &str,
        ty: &str,
        aud: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", subject),
            ("subject_token_type", ty),
            ("audience", aud),
        ];
        form.extend_from_slice(extra);
        self.post(&form).await
    }
}

fn access(body: &Value) -> Value {
    Value::Object(payload(body["access_token"].as_str().unwrap()))
}

const BOUNDARY: &str = r#"{"accessBoundary":{"accessBoundaryRules":[{"availableResource":"//storage.googleapis.com/projects/_/buckets/b","availablePermissions":["inRole:roles/storage.objectViewer"]}]}}"#;

/// `options` that carry no boundary Ferry can apply are refused, never dropped (a caller
/// asking for a narrower token must not get a wider one); a fresh exchange applies them
/// like narrowing does.
#[tokio::test]
async fn options_are_applied_or_refused_never_dropped() {
    let env = start();
    let alice = env.token("alice", json!({}));
    let (s, b) = env.exchange(&alice, JWT, API, &[]).await;
    assert_eq!(s, 200, "{b}");
    assert!(access(&b).get("access_boundaries").is_none());
    let parent = b["access_token"].as_str().unwrap().to_owned();
    let wrong_case = BOUNDARY.replace("accessBoundary\"", "accessboundary\"");
    let as_string = serde_json::to_string(BOUNDARY).unwrap();
    let array = format!("[{BOUNDARY}]");
    for bad in ["5", "null", "{}", "[]", &wrong_case, &as_string, &array] {
        let (s, b) = env.exchange(&parent, AT, API, &[("options", bad)]).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {b}"
        );
        let (s, b) = env.exchange(&alice, JWT, API, &[("options", bad)]).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad}: {b}"
        );
    }
    // Twins: the boundary itself, narrowing and fresh.
    let (s, b) = env
        .exchange(&parent, AT, API, &[("options", BOUNDARY)])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        access(&b)["access_boundaries"].as_array().map(Vec::len),
        Some(1)
    );
    let (s, b) = env
        .exchange(&alice, JWT, API, &[("options", BOUNDARY)])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        access(&b)["access_boundaries"].as_array().map(Vec::len),
        Some(1)
    );
}

/// Without an actor, `actor.subject` is the empty string: a deny rule on it denies,
/// rather than failing to evaluate and letting the next rule allow.
#[tokio::test]
async fn a_deny_rule_on_an_absent_actor_denies() {
    let env = start();
    let alice = env.token("alice", json!({}));
    let bot = env.token("ci-bot", json!({}));
    let (s, b) = env.exchange(&alice, JWT, NEED_ACTOR, &[]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_target")),
        "{b}"
    );
    let (s, b) = env
        .exchange(
            &alice,
            JWT,
            NEED_ACTOR,
            &[("actor_token", &bot), ("actor_token_type", JWT)],
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

/// Revoking a subject or a provider also revokes the tokens in which it acted; the audit
/// event of a delegation names the actor.
#[tokio::test]
async fn revoking_an_actor_revokes_what_it_acted_on_and_the_audit_names_it() {
    let mut env = start();
    let alice = env.token("alice", json!({}));
    let robot = env.token("robot", json!({}));
    let carol = env.token("carol", json!({}));
    let delegate = |subject: String, actor: String| {
        let env = &env;
        async move {
            let (s, b) = env
                .exchange(
                    &subject,
                    JWT,
                    API,
                    &[("actor_token", &actor), ("actor_token_type", JWT)],
                )
                .await;
            assert_eq!(s, 200, "{b}");
            b["access_token"].as_str().unwrap().to_owned()
        }
    };
    let by_robot = delegate(alice.clone(), robot.clone()).await;
    let by_carol = delegate(alice.clone(), carol.clone()).await;
    let admin = env.ferry.admin.clone().unwrap();
    let r = env
        .http
        .post(format!("{admin}/revoke"))
        .form(&[("subject", "robot")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Narrowing checks revocation: the token robot acted on is revoked, the twin is not.
    let (s, b) = env.exchange(&by_robot, AT, API, &[]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let (s, b) = env.exchange(&by_carol, AT, API, &[]).await;
    assert_eq!(s, 200, "{b}");
    // The audit line may still be on its way from the process.
    env.ferry.proc_mut().wait_for(r#""actor":"robot""#).unwrap();
    let out = env.ferry.proc().output();
    assert!(out.contains(r#""actor":"robot""#), "{out}");
    assert!(out.contains(r#""actor_provider":"idp""#), "{out}");
}

/// The JWT-bearer grant takes no actor token (refused, not ignored).
#[tokio::test]
async fn jwt_bearer_refuses_an_actor_token() {
    let env = start();
    let bot = env.token("ci-bot", json!({}));
    let base = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", "a.b.c"),
        ("audience", API),
    ];
    let mut with_actor = base.to_vec();
    with_actor.extend([("actor_token", bot.as_str()), ("actor_token_type", JWT)]);
    let (s, b) = env.post(&with_actor).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    assert_eq!(
        b["error_description"],
        "actor_token is not supported with this grant"
    );
    // Twin: the same request without it gets as far as the assertion.
    let (s, b) = env.post(&base).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "{b}"
    );
}

/// An upstream `act` is the subject token's issuer's say-so: every level is attributed to
/// that issuer whatever `iss` it names (Ferry's own, another issuer's), members Ferry
/// does not interpret are dropped, and an over-deep chain is refused.
#[tokio::test]
async fn an_upstream_act_cannot_name_another_issuer_and_is_bounded() {
    let env = start();
    let act = json!({"sub": "x", "iss": ISSUER, "provider": "idp", "foo": 1,
                     "act": {"sub": "y", "iss": "https://other.example.com", "may_act": {"sub": "z"}}});
    let (s, b) = env
        .exchange(&env.token("alice", json!({ "act": act })), JWT, API, &[])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        access(&b)["act"],
        json!({"sub": "x", "iss": "https://idp.example.com",
               "act": {"sub": "y", "iss": "https://idp.example.com"}})
    );
    let chain = |depth: usize| {
        (0..depth).fold(
            json!({"sub": "leaf"}),
            |inner, i| json!({"sub": format!("a{i}"), "act": inner}),
        )
    };
    let (s, b) = env
        .exchange(
            &env.token("alice", json!({ "act": chain(8) })),
            JWT,
            API,
            &[],
        )
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let (s, b) = env
        .exchange(
            &env.token("alice", json!({ "act": chain(6) })),
            JWT,
            API,
            &[],
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

/// A public `client_id` that only looks like another (a space around it, Ferry's own
/// namespace in another case) is refused; the plain one is accepted.
#[tokio::test]
async fn look_alike_public_client_ids_are_refused() {
    let env = start();
    let alice = env.token("alice", json!({}));
    for bad in [
        " ferry-provider:idp",
        "FERRY-provider:idp",
        "gateway ",
        " gateway",
    ] {
        let (s, b) = env.exchange(&alice, JWT, API, &[("client_id", bad)]).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid_request")),
            "{bad:?}: {b}"
        );
    }
    let (s, b) = env
        .exchange(&alice, JWT, API, &[("client_id", "gateway")])
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(access(&b)["client_id"], "gateway");
}
