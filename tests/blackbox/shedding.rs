//! Load shedding takes its concurrency permit only after admission (issue 19, item 4):
//! a client whose body is still arriving holds no permit, so a few connections sending
//! their body slowly cannot shed everyone else; requests at work still do (the twin).

use std::time::Duration;

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, MockIdp, TestKey, now};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::Setup;

const FERRY: &str = "https://ferry.example.com";
const DEPLOY: &str = "https://deploy.example.com";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

async fn exchange(url: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("audience", DEPLOY),
        ])
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_holds_no_permit_and_requests_at_work_still_shed() {
    let key = TestKey::ec("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    // Every answer of the issuer takes 3 s: Ferry's first key fetch (discovery + JWKS)
    // takes 6 s, and exchanges arriving meanwhile wait for it, at work.
    idp.set_delay(Some(Duration::from_secs(3)));
    let setup = Setup::new("shedding");
    let ferry = setup.start(&format!(
            "issuer: {FERRY}\ndata_dir: data\nlimits: {{ concurrency: 2, rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}\noutbound:\n  allow_insecure_origins: [\"{}\"]\nproviders:\n  - id: idp\n    kind: oidc\n    issuer: {}\n    audiences: [{FERRY}]\naudiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n",
            idp.url, idp.url
        ));
    let issuer = Issuer::new(&idp.url, key);
    let good = issuer.token(&issuer.claims(FERRY, "workload", now(), json!({})));

    // Twin: two exchanges at work (waiting for the issuer) hold both permits; a third
    // request is shed with 503 until they finish.
    let working: Vec<_> = (0..2)
        .map(|_| {
            let (url, good) = (ferry.url.clone(), good.clone());
            tokio::spawn(async move { exchange(&url, &good).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (s, body) = exchange(&ferry.url, "not-a-token").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    for w in working {
        assert_eq!(w.await.unwrap().0, 200);
    }
    assert_eq!(exchange(&ferry.url, "not-a-token").await.0, 400);

    // The attack: two connections announce a body and send it slowly; they are not
    // admitted yet, so they hold no permit and the next request is served (400: its
    // subject token is junk), not shed.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(ferry.url.trim_start_matches("http://"))
            .await
            .unwrap();
        s.write_all(b"POST /token HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=")
            .await
            .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, body) = exchange(&ferry.url, "not-a-token").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    assert_eq!(exchange(&ferry.url, &good).await.0, 200);
    drop(slow);
}
