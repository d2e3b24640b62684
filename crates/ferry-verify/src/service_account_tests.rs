//! The service-account verifier, each attack beside its positive twin that differs only
//! in the attacked part.

use std::sync::Arc;

use ferry_testkit::keys::jwks;
use ferry_testkit::mint::{alg_none, hs256_with_public_key};
use ferry_testkit::{Issuer, TestKey};
use serde_json::{Value, json};

use super::*;
use crate::source::StaticKeys;

const NOW: i64 = 1_700_000_000;
const API: &str = "https://api.example.com";
const FERRY: &str = "https://ferry.example.com";

fn keys(of: &[&TestKey]) -> KeySource {
    let doc = jwks(of).to_string();
    let (k, _) = StaticKeys::from_bytes(doc.as_bytes(), &ALGORITHMS).unwrap();
    KeySource::Static(Arc::new(k))
}

fn verifier(sa: &Issuer) -> ServiceAccountVerifier {
    ServiceAccountVerifier::new(API).with_account(&sa.iss, keys(&[&sa.key]))
}

/// Claims of an honest direct JWT, `extra` merged (a null removes the member).
fn claims(sa: &Issuer, jti: &str, extra: Value) -> Value {
    sa.claims(
        API,
        &sa.iss,
        NOW,
        json!({"jti": jti, "nbf": null, "exp": NOW + 600}),
    )
    .as_object()
    .map(|c| {
        let mut c = c.clone();
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
        Value::Object(c)
    })
    .unwrap()
}

async fn check(v: &ServiceAccountVerifier, token: &str) -> Result<String, String> {
    v.verify_token(token, NOW)
        .await
        .map(|t| t.account)
        .map_err(|e| format!("{e:?}"))
}

/// Each claim attack beside the honest token it was made from.
#[tokio::test]
async fn claims_are_checked_each_beside_its_twin() {
    let sa = Issuer::new("builder", TestKey::ec("b1"));
    let v = verifier(&sa);
    let cases: &[(&str, Value, &str)] = &[
        ("honest", json!({}), ""),
        (
            "aud is Ferry's (a jwt-bearer assertion)",
            json!({"aud": FERRY}),
            "Audience",
        ),
        (
            "aud is Ferry's token endpoint",
            json!({"aud": format!("{FERRY}/token")}),
            "Audience",
        ),
        (
            "aud names the API among others",
            json!({"aud": [API, FERRY]}),
            "Audience",
        ),
        (
            "aud is the API in an array",
            json!({"aud": [API]}),
            "Audience",
        ),
        (
            "aud differs by a trailing slash",
            json!({"aud": format!("{API}/")}),
            "Audience",
        ),
        (
            "sub is another account",
            json!({"sub": "deployer"}),
            "Subject",
        ),
        ("no sub", json!({"sub": null}), "Subject"),
        ("no jti", json!({"jti": null}), "Jti"),
        ("empty jti", json!({"jti": ""}), "Jti"),
        ("no iat", json!({"iat": null}), "IssuedAt"),
        ("lifetime over 1 h", json!({"exp": NOW + 3_601}), "TooLong"),
        ("lifetime exactly 1 h", json!({"exp": NOW + 3_600}), ""),
        (
            "iat in the future",
            json!({"iat": NOW + 120, "exp": NOW + 600}),
            "IssuedInFuture",
        ),
        (
            "iat within the skew",
            json!({"iat": NOW + 30, "exp": NOW + 600}),
            "",
        ),
        (
            "expired",
            json!({"iat": NOW - 700, "exp": NOW - 100}),
            "Expired",
        ),
        ("no exp", json!({"exp": null}), "Claim(\"exp\")"),
        (
            "nbf in the future",
            json!({"nbf": NOW + 300}),
            "NotYetValid",
        ),
        ("nbf within the skew", json!({"nbf": NOW + 30}), ""),
    ];
    for (i, (name, extra, want)) in cases.iter().enumerate() {
        let token = sa.token(&claims(&sa, &format!("j{i}"), extra.clone()));
        let got = check(&v, &token).await;
        if want.is_empty() {
            assert_eq!(got, Ok("builder".to_owned()), "{name}");
        } else {
            assert!(
                got.as_ref().is_err_and(|e| e.contains(want)),
                "{name}: {got:?}"
            );
        }
    }
}

/// A `jti` is spent once: the same token again is refused, a fresh `jti` is not; the
/// same `jti` from another account is another id.
#[tokio::test]
async fn a_jti_is_single_use() {
    let sa = Issuer::new("builder", TestKey::ec("b1"));
    let other = Issuer::new("deployer", TestKey::ed("d1"));
    let v = verifier(&sa).with_account("deployer", keys(&[&other.key]));
    let token = sa.token(&claims(&sa, "once", json!({})));
    assert_eq!(check(&v, &token).await, Ok("builder".into()));
    let again = check(&v, &token).await;
    assert!(again.is_err_and(|e| e.contains("Replayed")));
    let fresh = sa.token(&claims(&sa, "twice", json!({})));
    assert_eq!(check(&v, &fresh).await, Ok("builder".into()));
    let theirs = other.token(&claims(&other, "once", json!({})));
    assert_eq!(check(&v, &theirs).await, Ok("deployer".into()));
}

/// A full replay cache refuses new tokens rather than forget live ids.
#[tokio::test]
async fn a_full_replay_cache_refuses() {
    let sa = Issuer::new("builder", TestKey::ec("b1"));
    let v = verifier(&sa).with_replay_capacity(10, 1);
    let first = sa.token(&claims(&sa, "a", json!({})));
    assert!(check(&v, &first).await.is_ok());
    let second = sa.token(&claims(&sa, "b", json!({})));
    let got = check(&v, &second).await;
    assert!(got.is_err_and(|e| e.contains("ReplayCacheFull")));
    assert!(
        check(&v, &first)
            .await
            .is_err_and(|e| e.contains("Replayed"))
    );
}

/// The key decides: `none`, HMAC keyed with the public key, another key with the same
/// `kid`, or an account this API does not name are refused; the same claims signed by
/// the account's key pass.
#[tokio::test]
async fn only_the_accounts_keys_sign() {
    let sa = Issuer::new("builder", TestKey::rsa("b1"));
    let v = verifier(&sa);
    let c = |jti: &str| claims(&sa, jti, json!({}));
    let impostor = Issuer::new("builder", TestKey::rsa("b1"));
    let stranger = Issuer::new("stranger", TestKey::ec("s1"));
    for (name, token, want) in [
        ("alg none", alg_none(&c("n")), "AlgorithmNotAllowed"),
        (
            "HS256 with the public key",
            hs256_with_public_key(&sa.key, &c("h")),
            "AlgorithmNotAllowed",
        ),
        (
            "another key, same kid",
            impostor.token(&c("i")),
            "BadSignature",
        ),
        (
            "an account the API does not name",
            stranger.token(&claims(&stranger, "s", json!({}))),
            "UnknownAccount",
        ),
        ("the account's key", sa.token(&c("ok")), ""),
    ] {
        let got = check(&v, &token).await;
        if want.is_empty() {
            assert_eq!(got, Ok("builder".to_owned()), "{name}");
        } else {
            assert!(
                got.as_ref().is_err_and(|e| e.contains(want)),
                "{name}: {got:?}"
            );
        }
    }
}

/// Explicit typing: a JWT typed as a Ferry access token, a derived token, a DPoP proof
/// or a client assertion — signed by the account's own key, claims honest — is not a
/// service-account JWT; `JWT` in any case and no `typ` are.
#[tokio::test]
async fn other_kinds_of_jwt_are_refused() {
    let sa = Issuer::new("builder", TestKey::ec("b1"));
    let v = verifier(&sa);
    for (i, (typ, ok)) in [
        (Some("at+jwt"), false),
        (Some("application/at+jwt"), false),
        (Some("ferry-derived+jwt"), false),
        (Some("dpop+jwt"), false),
        (Some("client-authentication+jwt"), false),
        (Some("JWT"), true),
        (Some("jwt"), true),
        (None, true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut header = json!({"alg": "ES256", "kid": "b1"});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        let token = sa.token_with_header(&header, &claims(&sa, &format!("t{i}"), json!({})));
        let got = check(&v, &token).await;
        assert_eq!(got.is_ok(), ok, "{typ:?}: {got:?}");
        if !ok {
            assert!(got.is_err_and(|e| e.contains("TypeNotAccepted")), "{typ:?}");
        }
    }
}

/// The header: `Bearer` in any case; another scheme or none is no token.
#[tokio::test]
async fn the_authorization_header() {
    let sa = Issuer::new("builder", TestKey::ec("b1"));
    let v = verifier(&sa);
    let token = sa.token(&claims(&sa, "h1", json!({})));
    let got = v.verify(Some(&format!("Basic {token}")), NOW).await;
    assert!(matches!(got, Err(ServiceAccountError::NoToken)));
    assert!(matches!(
        v.verify(None, NOW).await,
        Err(ServiceAccountError::NoToken)
    ));
    let got = v.verify(Some(&format!("bEaReR {token}")), NOW).await;
    assert_eq!(got.unwrap().account, "builder");
}

/// The key URL: the id is one percent-encoded path segment under the issuer.
#[test]
fn the_jwks_url_of_an_account() {
    for (issuer, id, want) in [
        (
            FERRY,
            "builder",
            "https://ferry.example.com/service-accounts/builder/jwks",
        ),
        (
            "https://x.example/sts/",
            "a/b?c",
            "https://x.example/sts/service-accounts/a%2Fb%3Fc/jwks",
        ),
    ] {
        assert_eq!(account_jwks_url(issuer, id).unwrap().as_str(), want);
    }
    assert!(account_jwks_url("not a url", "a").is_err());
}

/// A setting given after the accounts applies to them (their rules are built once and
/// rebuilt when a setting changes): a 2 h token is refused by default, accepted once the
/// verifier allows 2 h, whichever order the builder was called in.
#[tokio::test]
async fn settings_apply_to_accounts_added_before_them() {
    let sa = Issuer::new("builder", TestKey::ec("b1"));
    let long = |jti: &str| sa.token(&claims(&sa, jti, json!({"exp": NOW + 7_200})));
    assert!(
        check(&verifier(&sa), &long("l1"))
            .await
            .is_err_and(|e| e.contains("TooLong"))
    );
    let after = verifier(&sa).allow_lifetime_up_to(std::time::Duration::from_secs(7_200));
    assert_eq!(check(&after, &long("l2")).await, Ok("builder".to_owned()));
    let before = ServiceAccountVerifier::new(API)
        .allow_lifetime_up_to(std::time::Duration::from_secs(7_200))
        .with_account(&sa.iss, keys(&[&sa.key]));
    assert_eq!(check(&before, &long("l3")).await, Ok("builder".to_owned()));
}
