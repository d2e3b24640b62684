//! Reference tokens and the phantom-token pattern: a client holds an opaque handle; a
//! gateway (a small one here) swaps it for the JWT at Ferry's introspection endpoint and
//! forwards the request to the example relying service with the JWT.

use base64::Engine;
use serde_json::Value;

use crate::revocation::{API, AT, INACTIVE, REF, TE, call, start};

/// A gateway in front of the relying service: it swaps a reference token for its JWT at
/// Ferry's introspection endpoint, and forwards the request with the JWT.
pub(crate) async fn gateway(ferry: String, upstream: String) -> String {
    use axum::extract::State;
    use axum::http::HeaderMap;
    let app = axum::Router::new()
        .route(
            "/resource",
            axum::routing::get(
                |State((ferry, upstream)): State<(String, String)>, headers: HeaderMap| async move {
                    let http = reqwest::Client::new();
                    let handle = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default()
                        .to_owned();
                    let r = http
                        .post(format!("{ferry}/introspect"))
                        .basic_auth("gateway", Some("gateway-secret"))
                        .header("accept", "application/jwt")
                        .form(&[("token", handle.as_str())])
                        .send()
                        .await
                        .unwrap();
                    let is_jwt = r
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v == "application/jwt");
                    if !is_jwt {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    let jwt = r.text().await.unwrap();
                    let s = http
                        .get(format!("{upstream}/resource"))
                        .bearer_auth(jwt)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    axum::http::StatusCode::from_u16(s.as_u16()).unwrap()
                },
            ),
        )
        .with_state((ferry, upstream));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_phantom_token_pattern_end_to_end() {
    let env = start();
    let body = env
        .issue("workload", API, &[("requested_token_type", REF)], None)
        .await;
    assert_eq!(body["issued_token_type"], REF);
    let handle = body["access_token"].as_str().unwrap().to_owned();
    assert!(
        handle.starts_with("ferry_ref_") && !handle.contains('.'),
        "opaque"
    );
    let (_svc, upstream) = env.relying_service(None);
    let gw = gateway(env.ferry.url.clone(), upstream.clone()).await;
    // The handle means nothing to the service itself; through the gateway it works.
    assert_eq!(
        call(
            &env.http,
            &format!("{upstream}/resource"),
            &format!("Bearer {handle}"),
            None
        )
        .await,
        401
    );
    assert_eq!(
        call(
            &env.http,
            &format!("{gw}/resource"),
            &format!("Bearer {handle}"),
            None
        )
        .await,
        200
    );
    // Introspected without asking for the JWT: claims only, never the JWT.
    let (_, text) = env.introspect(&handle).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["active"], true);
    assert!(!text.contains("eyJ"), "no JWT in the JSON response");
    // Its holder narrows it at Ferry by presenting the handle (twin: an unknown handle).
    let unknown_handle = format!("ferry_ref_{}", "x".repeat(43));
    for (token, want) in [(&handle, 200), (&unknown_handle, 400)] {
        let r = env
            .post(
                "/token",
                Some(("ci", "ci-secret")),
                &[
                    ("grant_type", TE),
                    ("subject_token", token),
                    ("subject_token_type", AT),
                    ("scope", "read"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status().as_u16(), want);
    }
    // A handle never seen (twin of the live one) and the handle revoked by its client.
    let unknown = format!(
        "ferry_ref_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    assert_eq!(
        call(
            &env.http,
            &format!("{gw}/resource"),
            &format!("Bearer {unknown}"),
            None
        )
        .await,
        401
    );
    assert_eq!(env.revoke(Some(("ci", "ci-secret")), &handle).await.0, 200);
    assert_eq!(
        call(
            &env.http,
            &format!("{gw}/resource"),
            &format!("Bearer {handle}"),
            None
        )
        .await,
        401
    );
    assert_eq!(env.introspect(&handle).await.1, INACTIVE);
}

/// A handle's holder never gets the JWT behind it: narrowing a handle yields a handle
/// (before, the default token type traded the handle for the full JWT, without any
/// client authentication, and that JWT outlived the handle's revocation); asking for a
/// JWT by name is refused. Twin: narrowing a JWT still yields a JWT.
#[tokio::test]
async fn narrowing_a_handle_yields_a_handle_never_its_jwt() {
    let env = start();
    let handle = env
        .issue("workload", API, &[("requested_token_type", REF)], None)
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = env.token("workload").await;
    let narrow = |token: String, extra: Option<&'static str>| {
        let env = &env;
        async move {
            let mut form = vec![
                ("grant_type", TE),
                ("subject_token", token.as_str()),
                ("subject_token_type", AT),
                ("scope", "read"),
            ];
            if let Some(t) = extra {
                form.push(("requested_token_type", t));
            }
            let r = env.post("/token", None, &form, None).await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The default type and access_token by name: a handle, never a JWT.
    for extra in [None, Some(AT)] {
        let (status, body) = narrow(handle.clone(), extra).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["issued_token_type"], REF, "{body}");
        let child = body["access_token"].as_str().unwrap();
        assert!(
            child.starts_with("ferry_ref_") && !child.contains('.'),
            "{body}"
        );
        // The child is a handle the gateway introspects like any other.
        assert_eq!(env.introspect(child).await.0, 200);
    }
    // A JWT by name: refused with a fixed description.
    let (status, body) = narrow(handle.clone(), Some("urn:ietf:params:oauth:token-type:jwt")).await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_description"].as_str()
        ),
        (
            400,
            Some("invalid_request"),
            Some("a reference token narrows into a reference token only")
        )
    );
    // Twin: a JWT narrows into a JWT.
    let (status, body) = narrow(jwt, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], AT);
    assert!(body["access_token"].as_str().unwrap().contains('.'));
}

/// Every token narrowed at Ferry carries the `jti`s of all its ancestors: revoking any
/// ancestor revokes it (before, a child had a fresh `jti` and no link, and stayed
/// active). Twin: revoking another token leaves the chain active. The chain is bounded.
#[tokio::test]
async fn revoking_an_ancestor_revokes_every_token_narrowed_from_it() {
    let env = start();
    let narrow = |token: String| {
        let env = &env;
        async move {
            let r = env
                .post(
                    "/token",
                    None,
                    &[
                        ("grant_type", TE),
                        ("subject_token", token.as_str()),
                        ("subject_token_type", AT),
                        ("scope", "read"),
                    ],
                    None,
                )
                .await;
            let status = r.status().as_u16();
            let body = r.json::<Value>().await.unwrap_or(Value::Null);
            (
                status,
                body["access_token"].as_str().unwrap_or("").to_owned(),
                body,
            )
        }
    };
    let active = |token: String| {
        let env = &env;
        async move {
            let (_, text) = env.introspect(&token).await;
            serde_json::from_str::<Value>(&text).unwrap()["active"] == true
        }
    };
    let root = env.token("workload").await;
    let other = env.token("workload").await;
    let (_, child, _) = narrow(root.clone()).await;
    let (_, grandchild, _) = narrow(child.clone()).await;
    assert!(active(child.clone()).await && active(grandchild.clone()).await);
    // A relying service verifying offline (ferry-verify, polling /revocations each second).
    let (_svc, upstream) = env.relying_service(Some(1));
    let resource = format!("{upstream}/resource");
    let at_service = |token: String| {
        let (env, resource) = (&env, resource.clone());
        async move { call(&env.http, &resource, &format!("Bearer {token}"), None).await }
    };
    assert_eq!(at_service(grandchild.clone()).await, 200);
    // Twin: revoking an unrelated token of the same client leaves the chain alone.
    assert_eq!(env.revoke(Some(("ci", "ci-secret")), &other).await.0, 200);
    assert!(active(child.clone()).await && active(grandchild.clone()).await);
    // Revoking the root revokes both descendants.
    assert_eq!(env.revoke(Some(("ci", "ci-secret")), &root).await.0, 200);
    assert!(!active(root).await);
    assert!(!active(child.clone()).await, "the child of a revoked token");
    assert!(!active(grandchild.clone()).await, "its grandchild");
    // …and at the relying service once its list is refreshed (a second or two).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while at_service(grandchild.clone()).await != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted offline"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // And they cannot be narrowed further.
    assert_eq!(narrow(grandchild).await.0, 400);

    // The chain is bounded: eight narrowings from one root, not nine.
    let mut token = env.token("workload").await;
    for depth in 1..=8 {
        let (status, next, body) = narrow(token).await;
        assert_eq!(status, 200, "depth {depth}: {body}");
        token = next;
    }
    let (status, _, body) = narrow(token).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("the token was narrowed too many times"))
    );
}
