//! Configuration reload under load: a valid change takes effect without a restart, an
//! invalid one is refused and the old configuration keeps serving, and no request fails.

use std::time::Duration;

use ferry_testkit::{Issuer, TestKey, now};
use serde_json::json;

use crate::harness::Setup;

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

fn config(audiences: &[&str]) -> String {
    let mut s = String::from(
        "issuer: https://ferry.example.com\ndata_dir: data\nlimits: { rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [https://ferry.example.com]\n    jwks: { file: idp.json }\naudiences:\n",
    );
    for a in audiences {
        s.push_str(&format!(
            "  - audience: {a}\n    rules:\n      - allow: \"true\"\n"
        ));
    }
    s
}

async fn exchange(http: &reqwest::Client, url: &str, token: &str, aud: &str) -> u16 {
    http.post(format!("{url}/token"))
        .form(&[
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("audience", aud),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_valid_and_invalid_configurations_under_load() {
    let setup = Setup::new("reload");
    let idp = Issuer::new("https://idp.example.com", TestKey::rsa("k1"));
    setup.jwks("idp.json", &[&idp.key]);
    let cfg = setup.config(&config(&["https://a.example.com"]));
    let ferry = setup.run();
    let token = idp.token(&idp.claims(
        "https://ferry.example.com",
        "svc",
        now(),
        json!({"exp": now() + 600}),
    ));
    let http = reqwest::Client::new();

    // Load: exchanges for audience A, all through the reloads below.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (http, url, token, stop) =
            (http.clone(), ferry.url.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && statuses.len() < 5_000 {
                statuses.push(exchange(&http, &url, &token, "https://a.example.com").await);
            }
            statuses
        })
    };

    // Audience B is not served yet.
    assert_eq!(
        exchange(&http, &ferry.url, &token, "https://b.example.com").await,
        400
    );
    // A valid change: B appears without a restart (file change is polled every 2 s;
    // SIGHUP triggers it at once).
    std::fs::write(
        &cfg,
        config(&["https://a.example.com", "https://b.example.com"]),
    )
    .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &ferry.proc().pid().to_string()])
        .status();
    let mut b = 0;
    for _ in 0..100 {
        b = exchange(&http, &ferry.url, &token, "https://b.example.com").await;
        if b == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b, 200, "the valid configuration took effect");

    // An invalid change is refused: B keeps working, the error is logged.
    std::fs::write(
        &cfg,
        config(&["https://a.example.com"])
            .replace("audiences: [https://ferry.example.com]", "audiences: []"),
    )
    .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &ferry.proc().pid().to_string()])
        .status();
    let mut refused = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ferry
            .proc()
            .output()
            .contains("configuration reload refused")
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "{}", ferry.proc().output());
    assert!(
        ferry
            .proc()
            .output()
            .contains("providers[0].audiences: must not be empty")
    );
    assert_eq!(
        exchange(&http, &ferry.url, &token, "https://b.example.com").await,
        200
    );

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 10, "the load ran: {}", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a request failed during reloads"
    );
}
