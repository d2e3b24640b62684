//! No refresh storms: a failing issuer (500, refused connections, hangs) is asked at
//! most once per `error_ttl`, whatever the request rate, whether the keys at hand are
//! fresh but due for refresh, stale, or a token names an unknown `kid`. Fetches are
//! counted at the mock issuer (or by the cache when connections are refused); the clock
//! is manual, so nothing here depends on the machine's speed.

use std::sync::Arc;
use std::time::Duration;

use ferry_testkit::idp::Mode;
use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey};

use crate::remote_tests::{Fx, far, fixture, http};
use crate::time::ManualMono;
use crate::*;

const ERROR_TTL: Duration = Duration::from_secs(30);
/// The TTL the mock's `Cache-Control` gives; a background refresh starts at 80 %.
const TTL: Duration = Duration::from_secs(600);

fn issuer_fetches(fx: &Fx) -> usize {
    fx.idp.jwks_fetches() + fx.idp.discovery_fetches()
}

/// Waits (bounded) until every fetch the cache started has ended: `ok` of them
/// succeeded, the rest failed.
async fn settled(keys: &RemoteKeys, ok: u64) {
    for _ in 0..500 {
        let s = keys.stats();
        if !s.fetching && s.fetches == s.errors + ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a fetch never ended: {:?}", keys.stats());
}

/// `rounds` bursts of `n` concurrent requests, each burst waiting for the fetches it
/// started to end; every request is served.
async fn load(keys: &Arc<RemoteKeys>, rounds: usize, n: usize, ok: u64) {
    for _ in 0..rounds {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let k = keys.clone();
                tokio::spawn(async move { k.keys().await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_ok(), "the keys at hand are served");
        }
        settled(keys, ok).await;
    }
}

async fn failing_fixture() -> Fx {
    let fx = fixture(CacheSettings {
        error_ttl: ERROR_TTL,
        ..far()
    })
    .await;
    fx.idp.set_cache_control(Some("max-age=600"));
    fx.keys.keys().await.unwrap();
    assert_eq!(issuer_fetches(&fx), 2, "discovery + JWKS");
    fx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_issuer_is_asked_once_per_error_ttl_while_keys_are_due_for_refresh() {
    let fx = failing_fixture().await;
    fx.idp.set_mode(Mode::Error500);
    // Fresh, but past 80 % of the TTL: every request would like a refresh.
    fx.time.advance(TTL.mul_f64(0.85));
    load(&fx.keys, 20, 50, 1).await;
    // One refresh reached the issuer (a 500 on discovery ends it), not one per request.
    assert_eq!(issuer_fetches(&fx), 3, "{:?}", fx.keys.stats());
    // Still within error_ttl: nothing more.
    fx.time.advance(ERROR_TTL - Duration::from_secs(1));
    load(&fx.keys, 5, 50, 1).await;
    assert_eq!(issuer_fetches(&fx), 3);
    // Past it: one more try, and again only one.
    fx.time.advance(Duration::from_secs(2));
    load(&fx.keys, 5, 50, 1).await;
    assert_eq!(issuer_fetches(&fx), 4, "{:?}", fx.keys.stats());

    // Twin: the issuer recovers with a rotated key; past error_ttl the refresh fetches it.
    let rotated = Issuer::new(fx.idp.url.clone(), TestKey::rsa("k2"));
    fx.idp.set_jwks(jwks(&[&rotated.key]));
    fx.idp.set_mode(Mode::Normal);
    fx.time.advance(ERROR_TTL + Duration::from_secs(1));
    load(&fx.keys, 1, 10, 2).await;
    assert_eq!(fx.keys.keys().await.unwrap().kids(), vec!["k2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_issuer_is_asked_once_per_error_ttl_while_stale_keys_are_served() {
    let fx = failing_fixture().await;
    fx.idp.set_mode(Mode::Error500);
    fx.time.advance(TTL + Duration::from_secs(60));
    load(&fx.keys, 20, 50, 1).await;
    assert_eq!(issuer_fetches(&fx), 3, "{:?}", fx.keys.stats());
    assert!(fx.keys.stats().stale_served >= 1000);
    fx.time.advance(ERROR_TTL + Duration::from_secs(1));
    load(&fx.keys, 5, 50, 1).await;
    assert_eq!(issuer_fetches(&fx), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_does_not_refetch_while_a_failure_is_remembered() {
    let fx = failing_fixture().await;
    fx.idp.set_mode(Mode::Error500);
    fx.time.advance(TTL + Duration::from_secs(60));
    load(&fx.keys, 1, 1, 1).await;
    assert_eq!(issuer_fetches(&fx), 3);
    // Tokens naming a new kid arrive while the issuer fails: no forced refetch.
    for _ in 0..100 {
        assert!(fx.keys.refetch_for_unknown_kid().await.is_none());
    }
    assert_eq!(issuer_fetches(&fx), 3, "{:?}", fx.keys.stats());
    assert_eq!(fx.keys.stats().refetches, 0);

    // Twin: past error_ttl, with the issuer back, the refetch is made and finds the key.
    let rotated = Issuer::new(fx.idp.url.clone(), TestKey::rsa("k2"));
    fx.idp.set_jwks(jwks(&[&rotated.key]));
    fx.idp.set_mode(Mode::Normal);
    fx.time.advance(ERROR_TTL + Duration::from_secs(1));
    let keys = fx.keys.refetch_for_unknown_kid().await.unwrap();
    assert_eq!(keys.kids(), vec!["k2"]);
    assert_eq!(fx.keys.stats().refetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_issuer_costs_one_fetch_in_flight() {
    let key = TestKey::rsa("k1");
    let idp = ferry_testkit::MockIdp::start(jwks(&[&key])).await.unwrap();
    idp.set_cache_control(Some("max-age=600"));
    let time = Arc::new(ManualMono::default());
    let keys = RemoteKeys::new(
        "t",
        Endpoint::Jwks(reqwest::Url::parse(&format!("{}/jwks", idp.url)).unwrap()),
        vec![Algorithm::RS256],
        http(&[&idp.url], Duration::from_millis(500)),
        None,
        CacheSettings {
            error_ttl: ERROR_TTL,
            ..far()
        },
        time.clone(),
    );
    keys.keys().await.unwrap();
    idp.set_delay(Some(Duration::from_secs(5)));
    time.advance(TTL.mul_f64(0.9));
    // While the refresh hangs, requests are served the keys at hand and start no other.
    for _ in 0..10 {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let k = keys.clone();
                tokio::spawn(async move { k.keys().await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
    }
    settled(&keys, 1).await;
    // After it timed out: remembered like any failure.
    load(&keys, 5, 50, 1).await;
    assert_eq!(idp.jwks_fetches(), 2, "{:?}", keys.stats());
    assert_eq!(keys.stats().errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_remembered_for_error_ttl() {
    let fx = failing_fixture().await;
    fx.idp.refuse_connections().await;
    fx.time.advance(TTL.mul_f64(0.85));
    load(&fx.keys, 20, 50, 1).await;
    // Nothing reaches a closed port: the cache's own count is the issuer's.
    assert_eq!(fx.keys.stats().fetches, 2, "{:?}", fx.keys.stats());
    let err = fx.keys.stats().last_error.unwrap();
    assert!(err.contains("request failed"), "{err}");
    // Twin: listening again and past error_ttl, keys are fetched.
    fx.idp.accept_connections().await.unwrap();
    fx.time.advance(ERROR_TTL + Duration::from_secs(1));
    load(&fx.keys, 1, 10, 2).await;
    assert_eq!(fx.keys.stats().fetches, 3);
    assert!(
        fx.keys.stats().last_error.is_none(),
        "{:?}",
        fx.keys.stats()
    );
}
