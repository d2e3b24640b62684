//! No refresh storms, through the real binary: while an issuer answers 500, then refuses
//! connections, then hangs, Ferry keeps serving exchanges under load with the keys it
//! has and asks the issuer at most once per `error_ttl` (plus the refresh that was in
//! flight when a phase began); once the issuer is back and `error_ttl` passed, it
//! fetches the issuer's new keys. Loops are bounded by rounds; the fetch bounds are
//! computed from the time each phase really took, never from an expected speed.

use std::time::{Duration, Instant};

use ferry_testkit::idp::Mode;
use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, MockIdp, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const FERRY: &str = "https://ferry.example.com";
const DEPLOY: &str = "https://deploy.example.com";
/// The provider's `cache.error_ttl`.
const ERROR_TTL: Duration = Duration::from_secs(1);

async fn exchange(http: &reqwest::Client, url: &str, token: &str) -> u16 {
    http.post(format!("{url}/token"))
        .form(&[
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("audience", DEPLOY),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Ferry's own count of fetches it started for the provider (admin `/readyz`).
async fn ferry_fetches(ferry: &Ferry) -> u64 {
    let body: Value = reqwest::get(format!("{}/readyz", ferry.admin.clone().unwrap()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["providers"][0]["keys"]["fetches"].as_u64().unwrap()
}

fn issuer_requests(idp: &MockIdp) -> usize {
    idp.discovery_fetches() + idp.jwks_fetches()
}

/// Eight exchanges at a time, round after round, for about `for_at_least` (at most 400
/// rounds); every one must succeed on the keys Ferry holds. Returns the time it took.
async fn load(ferry: &Ferry, token: &str, for_at_least: Duration) -> Duration {
    let http = reqwest::Client::new();
    let started = Instant::now();
    for _ in 0..400 {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (http, url, token) = (http.clone(), ferry.url.clone(), token.to_owned());
                tokio::spawn(async move { exchange(&http, &url, &token).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200, "served from the keys at hand");
        }
        if started.elapsed() >= for_at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// At most one fetch per error_ttl over `took`, plus the one in flight at the start and
/// one for a phase boundary falling inside an error_ttl.
fn bound(took: Duration) -> u64 {
    (took.as_millis() / ERROR_TTL.as_millis()) as u64 + 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_issuer_is_asked_once_per_error_ttl_under_load_and_recovers() {
    let key = TestKey::rsa("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    let issuer = Issuer::new(idp.url.clone(), key);
    let setup = Setup::new("storms");
    // Keys live 4 s (a background refresh is due from 3.2 s), so the load below meets
    // them fresh-but-due, then stale; a fetch times out after 1 s.
    let ferry = setup.start(&format!(
            "issuer: {FERRY}\ndata_dir: data\nlimits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}\noutbound: {{ allow_insecure_origins: [\"{u}\"], timeout: 1s, connect_timeout: 1s }}\nproviders:\n  - id: idp\n    kind: oidc\n    issuer: {u}\n    audiences: [{FERRY}]\n    cache: {{ min_ttl: 4s, max_ttl: 4s, error_ttl: 1s }}\naudiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n",
            u = idp.url
    ));
    let token = issuer.token(&issuer.claims(FERRY, "svc", now(), json!({})));
    let http = reqwest::Client::new();
    assert_eq!(exchange(&http, &ferry.url, &token).await, 200);
    let warm = issuer_requests(&idp);

    // 1. 500s, from fresh keys through their refresh window into staleness.
    idp.set_mode(Mode::Error500);
    let took = load(&ferry, &token, Duration::from_millis(5_000)).await;
    let asked = (issuer_requests(&idp) - warm) as u64;
    assert!(asked >= 1, "the refresh was tried");
    assert!(asked <= bound(took), "500s: {asked} fetches in {took:?}");

    // 2. Refused connections: nothing reaches the issuer; Ferry counts its attempts.
    idp.refuse_connections().await;
    let before = ferry_fetches(&ferry).await;
    let took = load(&ferry, &token, Duration::from_millis(2_500)).await;
    let attempted = ferry_fetches(&ferry).await - before;
    assert!(
        attempted <= bound(took),
        "refused: {attempted} fetches in {took:?}"
    );

    // 3. Hangs: each fetch waits for the 1 s timeout; requests do not wait with it.
    idp.set_delay(Some(Duration::from_secs(30)));
    idp.accept_connections().await.unwrap();
    let before = issuer_requests(&idp);
    let took = load(&ferry, &token, Duration::from_millis(2_500)).await;
    let asked = (issuer_requests(&idp) - before) as u64;
    assert!(asked <= bound(took), "hangs: {asked} fetches in {took:?}");

    // Twin: the issuer recovers with a rotated key; once error_ttl passed, Ferry fetches
    // it (a token naming the new kid succeeds).
    let rotated = Issuer::new(idp.url.clone(), TestKey::rsa("k2"));
    idp.set_jwks(jwks(&[&rotated.key]));
    idp.set_delay(None);
    idp.set_mode(Mode::Normal);
    let fresh = rotated.token(&rotated.claims(FERRY, "svc", now(), json!({})));
    let before = idp.jwks_fetches();
    let mut status = 0;
    for _ in 0..100 {
        status = exchange(&http, &ferry.url, &fresh).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200, "the new key was fetched");
    assert!(idp.jwks_fetches() > before);
}
