//! Traces exported over OTLP/HTTP to a receiver inside the test, continuing the caller's
//! W3C trace context.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::json;

use crate::harness::{Ferry, Setup, TEST_KEK};

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receive(State(store): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    store.lock().unwrap().push((ct, body.to_vec()));
    ""
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_receiver_and_continue_the_callers_trace() {
    let store: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(store.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let setup = Setup::new("otlp");
    let idp = Issuer::new("https://idp.example.com", TestKey::ec("k1"));
    setup.jwks("idp.json", &[&idp.key]);
    let cfg = setup.config("issuer: https://ferry.example.com\ndata_dir: data\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [https://ferry.example.com]\n    jwks: { file: idp.json }\naudiences:\n  - audience: https://deploy.example.com\n    rules:\n      - allow: \"true\"\n");
    let ferry = Ferry::start_on(
        setup.socket(),
        &cfg,
        &[
            ("FERRY_KEK", TEST_KEK),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "ferry-under-test"),
        ],
    )
    .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let token = idp.token(&idp.claims("https://ferry.example.com", "svc", now(), json!({})));
    let r = reqwest::Client::new()
        .post(format!("{}/token", ferry.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", token.as_str()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("audience", "https://deploy.example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let raw_trace: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut found = false;
    for _ in 0..100 {
        {
            let got = store.lock().unwrap();
            let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
            if contains(&all, &raw_trace) && contains(&all, b"verify") && contains(&all, b"sign") {
                assert!(
                    got.iter()
                        .all(|(ct, _)| ct.starts_with("application/x-protobuf")),
                    "{:?}",
                    got.iter().map(|g| &g.0).collect::<Vec<_>>()
                );
                assert!(
                    contains(&all, b"ferry-under-test"),
                    "OTEL_SERVICE_NAME is honoured"
                );
                found = true;
            }
        }
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "no span of the caller's trace reached the receiver");
}

#[tokio::test]
async fn no_export_without_the_otel_environment() {
    // Twin: the same server without OTEL_* variables exports nothing and says so nowhere.
    let setup = Setup::new("no-otlp");
    let ferry = setup.start("issuer: https://ferry.example.com\ndata_dir: data\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [https://ferry.example.com]\n    jwks: { inline: {\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"kid\": \"k\", \"x\": \"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\", \"y\": \"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]} }\naudiences:\n  - audience: https://deploy.example.com\n    rules:\n      - allow: \"true\"\n");
    assert!(!ferry.proc().output().contains("exporting traces over OTLP"));
}
