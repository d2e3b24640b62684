//! SSRF through discovery, against the real binary: an issuer's discovery document or
//! JWKS response points Ferry at another loopback origin, a canary counting connections.

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::json;

use crate::harness::{Ferry, Setup, TEST_KEK};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const API: &str = "https://api.example.com";

/// SSRF through discovery: an issuer (allowed on loopback by configuration) names a
/// `jwks_uri` on another loopback origin — a canary counting connections — or
/// redirects its JWKS there. Ferry never connects to the canary; the twin, whose
/// `jwks_uri` stays on the issuer's origin, works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_through_discovery_reaches_no_canary() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The canary.
    let canary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let canary_url = format!("http://{}", canary.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    {
        let hits = hits.clone();
        tokio::spawn(async move {
            while let Ok((_s, _)) = canary.accept().await {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    for (name, mode) in [
        ("jwks_uri at the canary", 0),
        ("a redirect to the canary", 1),
        ("the twin", 2),
    ] {
        let key = TestKey::rsa("k1");
        let set = jwks(&[&key]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let (iss, can) = (issuer.clone(), canary_url.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let jwks_uri = if mode == 0 {
                        format!("{can}/jwks")
                    } else {
                        format!("{iss}/jwks")
                    };
                    let iss = iss.clone();
                    async move { axum::Json(json!({"issuer": iss, "jwks_uri": jwks_uri})) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get({
                    let can = canary_url.clone();
                    move || {
                        let (set, can) = (set.clone(), can.clone());
                        async move {
                            use axum::response::IntoResponse;
                            if mode == 1 {
                                axum::response::Redirect::temporary(&format!("{can}/jwks"))
                                    .into_response()
                            } else {
                                axum::Json(set).into_response()
                            }
                        }
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let setup = Setup::new("ssrf");
        let cfg = setup.config(&format!(
                "issuer: https://ferry.test\ndata_dir: data\noutbound: {{ allow_insecure_origins: [\"{issuer}\"] }}\n\
                 providers:\n  - id: idp\n    kind: oidc\n    issuer: {issuer}\n    audiences: [https://ferry.test]\n    algorithms: [RS256]\n\
                 audiences:\n  - audience: {API}\n    rules:\n      - allow: \"true\"\n"
            ));
        let ferry = Ferry::start_with(&cfg, &[("FERRY_KEK", TEST_KEK)]).unwrap();
        let signer = Issuer::new(issuer.clone(), key);
        let t = now();
        let token = signer.token(
            &json!({"iss": issuer, "aud": "https://ferry.test", "sub": "w",
            "iat": t, "nbf": t, "exp": t + 300}),
        );
        let resp = reqwest::Client::new()
            .post(format!("{}/token", ferry.url))
            .form(&[
                ("grant_type", TE),
                ("subject_token", token.as_str()),
                ("subject_token_type", JWT),
                ("audience", API),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        if mode == 2 {
            assert_eq!(status, 200, "{name}: {body}");
        } else {
            // The issuer's keys cannot be had: unavailable, not a verdict on the token.
            assert_eq!(
                (status, body["error"].as_str()),
                (503, Some("temporarily_unavailable")),
                "{name}"
            );
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "{name}: Ferry connected to the canary"
        );
    }
}
