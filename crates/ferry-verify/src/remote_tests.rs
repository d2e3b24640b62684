//! Remote key sets against the mock issuer: rotation, floods, stampedes, outages and
//! misbehaviour, on loopback only. Time is a manual clock; fetch counts are read from
//! the mock.

use std::sync::Arc;
use std::time::Duration;

use ferry_testkit::idp::Mode;
use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, MockIdp, TestKey};
use reqwest::Url;
use serde_json::json;

use crate::net::{ClientSettings, Http, OutboundPolicy};
use crate::time::ManualMono;
use crate::*;

/// Parse, then verify with keys from `source` (the one verification path).
async fn verify_from(
    token: &str,
    rules: &Rules,
    source: &KeySource,
    now: i64,
) -> Result<Verified, VerifyError> {
    parse(token)?.verify(rules, source, now).await
}

const AUD: &str = "https://ferry.test";
const HOUR: Duration = Duration::from_secs(3_600);

pub(crate) struct Fx {
    pub idp: MockIdp,
    pub issuer: Issuer,
    pub time: Arc<ManualMono>,
    pub keys: Arc<RemoteKeys>,
    pub rules: Rules,
}

pub(crate) fn http(origins: &[&str], timeout: Duration) -> Http {
    let policy = OutboundPolicy::new(
        &origins.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &[],
    )
    .unwrap();
    let settings = ClientSettings {
        timeout,
        ..ClientSettings::default()
    };
    Http::new(policy, &settings).unwrap()
}

pub(crate) async fn fixture(settings: CacheSettings) -> Fx {
    let key = TestKey::rsa("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    let issuer = Issuer::new(idp.url.clone(), key);
    let time = Arc::new(ManualMono::default());
    let endpoint = Endpoint::Discovery {
        issuer: idp.url.clone(),
        url: Url::parse(&format!("{}/.well-known/openid-configuration", idp.url)).unwrap(),
    };
    let keys = RemoteKeys::new(
        "test",
        endpoint,
        vec![Algorithm::RS256],
        http(&[&idp.url], Duration::from_secs(5)),
        None,
        settings,
        time.clone(),
    );
    let rules = Rules::new(idp.url.clone(), vec![AUD.to_owned()]);
    Fx {
        idp,
        issuer,
        time,
        keys,
        rules,
    }
}

pub(crate) fn far() -> CacheSettings {
    // The refetch interval is far above any test's duration, so a loaded machine
    // cannot make the counts flaky.
    CacheSettings {
        refetch_interval: Duration::from_secs(10 * 86_400),
        ..CacheSettings::default()
    }
}

pub(crate) fn token(issuer: &Issuer, kid: &str) -> String {
    let now = ferry_testkit::now();
    issuer.token_with_header(
        &json!({"alg": "RS256", "kid": kid, "typ": "JWT"}),
        &issuer.claims(AUD, "s", now, json!({})),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_stampede_costs_one_fetch() {
    let fx = fixture(far()).await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let k = fx.keys.clone();
            tokio::spawn(async move { k.keys().await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(fx.idp.discovery_fetches(), 1);
    assert_eq!(fx.idp.jwks_fetches(), 1);
    assert_eq!(fx.keys.stats().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_rotation_is_followed_without_restart() {
    let fx = fixture(far()).await;
    let src = KeySource::Remote(fx.keys.clone());
    let now = ferry_testkit::now();
    verify_from(&token(&fx.issuer, "k1"), &fx.rules, &src, now)
        .await
        .unwrap();

    // The issuer rotates to a new key and signs with it.
    let rotated = Issuer::new(fx.idp.url.clone(), TestKey::rsa("k2"));
    fx.idp.set_jwks(jwks(&[&rotated.key]));
    let v = verify_from(&token(&rotated, "k2"), &fx.rules, &src, now).await;
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(fx.idp.jwks_fetches(), 2);
    assert_eq!(fx.keys.stats().refetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_at_most_one_refetch() {
    let fx = fixture(far()).await;
    let src = KeySource::Remote(fx.keys.clone());
    let now = ferry_testkit::now();
    // Twin: a known kid verifies.
    verify_from(&token(&fx.issuer, "k1"), &fx.rules, &src, now)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let (src, rules, t) = (
                src.clone(),
                fx.rules.clone(),
                token(&fx.issuer, &format!("random-{i}")),
            );
            tokio::spawn(async move { verify_from(&t, &rules, &src, now).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err(), VerifyError::UnknownKey);
    }
    assert!(
        fx.idp.jwks_fetches() <= 2,
        "fetches: {}",
        fx.idp.jwks_fetches()
    );
    let stats = fx.keys.stats();
    assert_eq!(stats.refetches, 1);
    assert_eq!(stats.refetches_suppressed, 999);
}

#[tokio::test]
async fn an_outage_serves_cached_keys_until_the_staleness_bound() {
    let settings = CacheSettings {
        max_staleness: 2 * HOUR,
        ..far()
    };
    let fx = fixture(settings).await;
    fx.keys.keys().await.unwrap();
    fx.idp.set_mode(Mode::Error500);

    // Past the TTL (1 h default), within the staleness bound: still verifying.
    fx.time.advance(HOUR + Duration::from_secs(60));
    assert!(fx.keys.keys().await.is_ok());
    // Let the background revalidation fail.
    for _ in 0..100 {
        if fx.keys.stats().errors > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fx.keys.keys().await.is_ok());
    let stats = fx.keys.stats();
    assert!(
        stats.stale_served >= 2
            && stats.errors >= 1
            && stats.staleness_seconds >= 60
            && stats.usable,
        "{stats:?}"
    );

    // Past the bound: unavailable (→ 503 at the server), and the metrics say so
    // (`ferry_issuer_keys_usable` 0) though the expired keys are still held.
    fx.time.advance(2 * HOUR);
    assert!(fx.keys.keys().await.is_err());
    let stats = fx.keys.stats();
    assert!(stats.has_keys && !stats.usable, "{stats:?}");
    let fetched = fx.idp.jwks_fetches() + fx.idp.discovery_fetches();
    // The failure is remembered: an immediate retry does not reach the issuer.
    assert!(fx.keys.keys().await.is_err());
    assert_eq!(fx.idp.jwks_fetches() + fx.idp.discovery_fetches(), fetched);
    // After error_ttl, and with the issuer back, keys return.
    fx.idp.set_mode(Mode::Normal);
    fx.time.advance(Duration::from_secs(31));
    assert!(fx.keys.keys().await.is_ok());
    assert!(fx.keys.stats().usable);
}

#[tokio::test]
async fn cache_control_is_clamped_and_refreshed_before_expiry() {
    let fx = fixture(far()).await;
    fx.idp.set_cache_control(Some("public, max-age=10"));
    fx.keys.keys().await.unwrap();
    // max-age=10 is clamped up to the 5 min minimum: no fetch at 4 min.
    fx.time.advance(Duration::from_secs(200));
    fx.keys.keys().await.unwrap();
    assert_eq!(fx.idp.jwks_fetches(), 1);
    // Past 80 % of the TTL, a request starts a background refresh and is served at once.
    fx.time.advance(Duration::from_secs(50));
    fx.keys.keys().await.unwrap();
    for _ in 0..200 {
        if fx.idp.jwks_fetches() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fx.idp.jwks_fetches(), 2);
}

async fn fetch_error(mode: Mode) -> Option<String> {
    let fx = fixture(far()).await;
    fx.idp.set_mode(mode);
    fx.keys.keys().await.err().map(|e| e.0.to_string())
}

#[tokio::test]
async fn misbehaving_issuers_fail_cleanly_and_their_twins_succeed() {
    assert_eq!(fetch_error(Mode::Normal).await, None);
    assert!(fetch_error(Mode::Error500).await.unwrap().contains("500"));
    assert!(fetch_error(Mode::Html).await.unwrap().contains("not JSON"));
    assert!(fetch_error(Mode::Oversized).await.unwrap().contains("cap"));
    assert!(
        fetch_error(Mode::IssuerMismatch)
            .await
            .unwrap()
            .contains("another issuer")
    );
    let err = fetch_error(Mode::RedirectTo(
        "http://169.254.169.254/latest/meta-data".into(),
    ))
    .await
    .unwrap();
    assert!(err.contains("not https"), "{err}");
    let err = fetch_error(Mode::RedirectTo(
        "https://169.254.169.254/latest/meta-data".into(),
    ))
    .await
    .unwrap();
    assert!(err.contains("forbidden range"), "{err}");
    let err = fetch_error(Mode::JwksUri("http://10.0.0.1/jwks".into()))
        .await
        .unwrap();
    assert!(err.contains("jwks_uri refused"), "{err}");
}

#[tokio::test]
async fn redirects_to_an_allowed_origin_are_followed() {
    let fx = fixture(far()).await;
    let other = MockIdp::start(jwks(&[&fx.issuer.key])).await.unwrap();
    // Not opted in: refused (the attack)...
    fx.idp
        .set_mode(Mode::JwksUri(format!("{}/jwks", other.url)));
    assert!(fx.keys.keys().await.is_err());
    assert_eq!(other.jwks_fetches(), 0);
    // ...opted in: followed (the twin).
    let keys = RemoteKeys::new(
        "t",
        Endpoint::Jwks(Url::parse(&format!("{}/jwks", fx.idp.url)).unwrap()),
        vec![Algorithm::RS256],
        http(&[&fx.idp.url, &other.url], Duration::from_secs(5)),
        None,
        far(),
        fx.time.clone(),
    );
    fx.idp
        .set_mode(Mode::RedirectTo(format!("{}/jwks", other.url)));
    assert!(keys.keys().await.is_ok());
    assert_eq!(other.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_slow_issuer_times_out() {
    let fx = fixture(far()).await;
    let keys = |timeout| {
        RemoteKeys::new(
            "t",
            Endpoint::Jwks(Url::parse(&format!("{}/jwks", fx.idp.url)).unwrap()),
            vec![Algorithm::RS256],
            http(&[&fx.idp.url], timeout),
            None,
            far(),
            fx.time.clone(),
        )
    };
    fx.idp.set_delay(Some(Duration::from_millis(1_500)));
    assert!(keys(Duration::from_millis(300)).keys().await.is_err());
    assert!(keys(Duration::from_secs(10)).keys().await.is_ok());
}

#[tokio::test]
async fn the_bearer_token_goes_only_to_its_own_origin() {
    let fx = fixture(far()).await;
    let other = MockIdp::start(jwks(&[&fx.issuer.key])).await.unwrap();
    fx.idp
        .set_mode(Mode::JwksUri(format!("{}/jwks", other.url)));
    let bearer = Bearer {
        origins: vec![crate::net::origin(&Url::parse(&fx.idp.url).unwrap()).unwrap()],
        token: BearerToken::Value("sa-token".into()),
    };
    let keys = RemoteKeys::new(
        "k8s",
        Endpoint::Discovery {
            issuer: fx.idp.url.clone(),
            url: Url::parse(&format!("{}/.well-known/openid-configuration", fx.idp.url)).unwrap(),
        },
        vec![Algorithm::RS256],
        http(&[&fx.idp.url, &other.url], Duration::from_secs(5)),
        Some(bearer),
        far(),
        fx.time.clone(),
    );
    keys.keys().await.unwrap();
    assert_eq!(
        fx.idp.authorization_seen(),
        vec![Some("Bearer sa-token".to_owned())]
    );
    assert_eq!(other.authorization_seen(), vec![None]);
}

#[tokio::test]
async fn host_names_resolving_to_forbidden_addresses_are_refused_at_connect() {
    // https://localhost passes the URL check (https, a name) but resolves to loopback.
    let h = http(&[], Duration::from_secs(2));
    let url = Url::parse("https://localhost:9/jwks").unwrap();
    let err = crate::fetch::get(&h, &url, None).await.unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
    // Twin: the same name as a trusted origin resolves, and fails later (nothing listens).
    let trusted = OutboundPolicy::new(&[], &["https://localhost:9".to_owned()]).unwrap();
    let h = Http::new(trusted, &ClientSettings::default()).unwrap();
    let err = crate::fetch::get(&h, &url, None).await.unwrap_err();
    assert!(!err.to_string().contains("forbidden"), "{err}");
}

/// An issuer outage reaches the caller as [`VerifyError::KeysUnavailable`] with a typed
/// cause, so a server answers it as an outage without matching strings; its twins, the
/// same issuer answering, give `Ok` for a good token and a "bad token" variant for a
/// forged one.
#[tokio::test]
async fn an_outage_is_distinguishable_by_type_from_a_bad_token() {
    let fx = fixture(far()).await;
    let src = KeySource::Remote(fx.keys.clone());
    let now = ferry_testkit::now();
    let good = token(&fx.issuer, "k1");
    fx.idp.set_mode(Mode::Error500);
    let err = verify_from(&good, &fx.rules, &src, now).await.unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::KeysUnavailable(KeysError::Fetch {
                error: FetchError::Status(500),
                at,
            }) if at.ends_with("/jwks") || at.starts_with("http://127.0.0.1")
        ),
        "{err:?}"
    );

    let fx = fixture(far()).await;
    let src = KeySource::Remote(fx.keys.clone());
    verify_from(&token(&fx.issuer, "k1"), &fx.rules, &src, now)
        .await
        .unwrap();
    let forged = Issuer::new(fx.idp.url.clone(), TestKey::rsa("k1"));
    let err = verify_from(&token(&forged, "k1"), &fx.rules, &src, now)
        .await
        .unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);
}

/// A fetch error names where it happened, origin and path only: a key URL's query string
/// (which may carry a token) and credentials never reach a log.
#[test]
fn fetch_errors_name_origin_and_path_only() {
    let url = Url::parse("https://user:pw@idp.example.com:8443/keys/v1?token=secret#x").unwrap();
    let e = KeysError::fetch(&url, FetchError::Status(503));
    let text = e.to_string();
    assert_eq!(
        text,
        "https://idp.example.com:8443/keys/v1: HTTP status 503"
    );
    let plain = KeysError::fetch(
        &Url::parse("https://idp.example.com/k").unwrap(),
        FetchError::TooLarge,
    );
    assert_eq!(
        plain.to_string(),
        "https://idp.example.com/k: response larger than the cap"
    );
}
