//! Revocation stays correct when settings change (issue 19, item 6): a token issued
//! under a longer `tokens.max_ttl` stays revocable, and a revocation rule outlives it,
//! after the limit is lowered and Ferry restarted; an administrator's revocation of a
//! token Ferry cannot attribute is an error, never `revoked: 0`.

use ferry_testkit::mint::payload;
use serde_json::Value;

use crate::revocation::{INACTIVE, start};

fn set_tokens(env: &crate::revocation::Env, tokens: &str) {
    let path = env.setup.path().join("ferry.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("tokens: ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let text = format!("{}tokens: {tokens}{}", &text[..start], &text[end..]);
    std::fs::write(path, text).unwrap();
}

async fn admin_revoke(env: &crate::revocation::Env, form: &[(&str, &str)]) -> (u16, Value) {
    let admin = env.ferry.admin.clone().unwrap();
    let r = env
        .http
        .post(format!("{admin}/revoke"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_issued_under_a_longer_max_ttl_stay_revocable_after_it_is_lowered() {
    let mut env = start();
    set_tokens(&env, "{ default_ttl: 1h, max_ttl: 1h, min_ttl: 1s }");
    drop(env.ferry);
    env.ferry = env.setup.run();
    let by_client = env.token_from_subject_living("workload", 7_200).await;
    let by_admin = env.token_from_subject_living("workload", 7_200).await;
    let kept = env.token_from_subject_living("workload", 7_200).await;
    let exp = payload(&kept)["exp"].as_i64().unwrap();
    assert!(exp >= ferry_testkit::now() + 3000, "a one-hour token");

    // The operator lowers the limit and restarts.
    set_tokens(&env, "{ default_ttl: 5m, max_ttl: 5m, min_ttl: 1s }");
    drop(env.ferry);
    env.ferry = env.setup.run();
    env.http = reqwest::Client::new();

    // Still recognised as Ferry's live tokens…
    for t in [&by_client, &by_admin, &kept] {
        assert!(env.introspect(t).await.1.contains("\"active\":true"));
    }
    // …so its client and an administrator can revoke them; the twin stays active.
    assert_eq!(
        env.revoke(Some(("ci", "ci-secret")), &by_client).await.0,
        200
    );
    assert_eq!(env.introspect(&by_client).await.1, INACTIVE);
    let (s, body) = admin_revoke(&env, &[("token", &by_admin)]).await;
    assert_eq!((s, &body["revoked"]), (200, &Value::from(1)));
    assert_eq!(env.introspect(&by_admin).await.1, INACTIVE);
    assert!(env.introspect(&kept).await.1.contains("\"active\":true"));

    // A rule is kept until every token it can match has expired: the one-hour tokens too.
    let (s, body) = admin_revoke(&env, &[("subject", "workload")]).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body["rule"]["until"].as_i64().unwrap() >= exp,
        "{body} must outlive exp {exp}"
    );
    assert_eq!(env.introspect(&kept).await.1, INACTIVE);
}

#[tokio::test]
async fn an_administrator_revoking_a_token_ferry_cannot_attribute_gets_an_error() {
    let env = start();
    let live = env.token("workload").await;
    for junk in [
        "not-a-token",
        "ferry_ref_unknownhandle",
        &format!("{live}x"),
    ] {
        let (s, body) = admin_revoke(&env, &[("token", junk)]).await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(body["error"], "invalid_request");
        assert!(body.get("revoked").is_none());
    }
    // Twin: a live token of ours is revoked.
    let (s, body) = admin_revoke(&env, &[("token", &live)]).await;
    assert_eq!((s, &body["revoked"]), (200, &Value::from(1)));
    // A rule's value is bounded like every stored value (twin: a subject of 512 bytes,
    // the longest a mapping produces).
    let (s, body) = admin_revoke(&env, &[("subject", &"s".repeat(1025))]).await;
    assert_eq!((s, &body["error"]), (400, &Value::from("invalid_request")));
    let (s, body) = admin_revoke(&env, &[("subject", &"s".repeat(512))]).await;
    assert_eq!(s, 200, "{body}");
}
