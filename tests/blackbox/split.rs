//! Split tokens (`requested_token_type=urn:ferry:token-type:split`): the client gets only
//! the JWT's signature part; a gateway registered for introspection swaps it for the JWT
//! (`Accept: application/jwt`) and forwards the request. Revocation, narrowing and
//! forgeries, each beside its twin.

use ferry_testkit::mint::payload;
use serde_json::Value;

use crate::phantom::gateway;
use crate::revocation::{API, AT, INACTIVE, REF, TE, call, start};

const SPLIT: &str = "urn:ferry:token-type:split";

#[tokio::test]
async fn a_split_token_end_to_end() {
    let env = start();
    let resp = env
        .post(
            "/token",
            Some(("ci", "ci-secret")),
            &[
                ("grant_type", TE),
                ("subject_token", &env.token_subject("workload")),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("audience", API),
                ("requested_token_type", SPLIT),
            ],
            None,
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["issued_token_type"], SPLIT);
    let split = body["access_token"].as_str().unwrap().to_owned();
    // The client holds a signature (ES256: 64 bytes, 86 base64url characters) and
    // nothing of the claims: no JWT segment anywhere in the response.
    assert_eq!(split.len(), 86, "{split}");
    assert!(!split.contains('.'));
    assert!(!text.contains("eyJ"), "{text}");
    assert!(!text.contains("workload"), "{text}");

    let (_svc, upstream) = env.relying_service(None);
    let gw = gateway(env.ferry.url.clone(), upstream.clone()).await;
    let at = |url: String, token: String| {
        let http = env.http.clone();
        async move {
            call(
                &http,
                &format!("{url}/resource"),
                &format!("Bearer {token}"),
                None,
            )
            .await
        }
    };
    // The signature alone means nothing to the service; through the gateway it works.
    assert_eq!(at(upstream.clone(), split.clone()).await, 401);
    assert_eq!(at(gw.clone(), split.clone()).await, 200);
    // What the gateway gets is the JWT whose signature the client holds.
    let (jwt, kind) = env.introspect_jwt(&split).await;
    assert_eq!(kind.as_deref(), Some("application/jwt"));
    assert!(jwt.ends_with(&format!(".{split}")), "{jwt}");
    assert_eq!(payload(&jwt)["sub"], "workload");
    // Only a client registered for introspection gets it (twin: the gateway, above).
    // The same request as the gateway's, from a client not registered for it.
    let (status, body, _) = env.introspect_jwt_as(("ci", "ci-secret"), &split).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("unauthorized_client") && !body.contains("eyJ"),
        "{body}"
    );
    // A forged split token — the signature altered in its last characters — is nothing
    // (twin: the real one).
    let mut forged = split.clone();
    forged.replace_range(80.., "AAAAAA");
    assert_eq!(at(gw.clone(), forged.clone()).await, 401);
    assert_eq!(env.introspect(&forged).await.1, INACTIVE);
    // Narrowing the split token at Ferry yields a split token (never its JWT), or a
    // reference token by name; a JWT by name is refused.
    let mut children = Vec::new();
    for (asked, want) in [
        (None, Some(SPLIT)),
        (Some(REF), Some(REF)),
        (Some(AT), Some(SPLIT)),
    ] {
        let mut form = vec![
            ("grant_type", TE),
            ("subject_token", split.as_str()),
            ("subject_token_type", AT),
            ("scope", "read"),
        ];
        form.extend(asked.map(|t| ("requested_token_type", t)));
        let r = env.post("/token", None, &form, None).await;
        assert_eq!(r.status().as_u16(), 200);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["issued_token_type"].as_str(), want, "{b}");
        assert!(!b.to_string().contains("eyJ"), "{b}");
        children.push(b["access_token"].as_str().unwrap().to_owned());
    }
    let r = env
        .post(
            "/token",
            None,
            &[
                ("grant_type", TE),
                ("subject_token", split.as_str()),
                ("subject_token_type", AT),
                ("scope", "read"),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:jwt",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "invalid_request", "{b}");
    // Another client cannot revoke it (refused, still live); its own client can, and the
    // gateway's swap stops — for it and for every token narrowed from it (twins: both
    // worked above).
    assert_eq!(
        env.revoke(Some(("other", "other-secret")), &split).await.0,
        400
    );
    assert_eq!(at(gw.clone(), split.clone()).await, 200);
    for child in &children {
        assert_ne!(env.introspect(child).await.1, INACTIVE);
    }
    assert_eq!(env.revoke(Some(("ci", "ci-secret")), &split).await.0, 200);
    assert_eq!(at(gw.clone(), split.clone()).await, 401);
    assert_eq!(env.introspect(&split).await.1, INACTIVE);
    for child in &children {
        assert_eq!(env.introspect(child).await.1, INACTIVE);
    }
}
