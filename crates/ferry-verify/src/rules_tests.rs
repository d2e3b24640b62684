//! Strict defaults, and each method that changes them with its twin: the same token
//! refused under the defaults and accepted once the one check is loosened, and a token
//! just past the loosened bound still refused.

use std::sync::OnceLock;
use std::time::Duration;

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey};
use serde_json::{Value, json};

use super::*;
use crate::error::VerifyError;
use crate::jwks::KeySet;

const NOW: i64 = 1_700_000_000;
const AUD: &str = "https://ferry.test";
const ISS: &str = "https://idp.test";

fn strict() -> Rules {
    Rules::new(ISS, vec![AUD.to_owned()])
}

/// An issuer and its key set, made once per key type (RSA key generation is slow).
fn fixture(rsa: bool) -> &'static (Issuer, KeySet) {
    static RSA: OnceLock<(Issuer, KeySet)> = OnceLock::new();
    static ED: OnceLock<(Issuer, KeySet)> = OnceLock::new();
    let make = |key| {
        let issuer = Issuer::new(ISS, key);
        let doc = serde_json::to_vec(&jwks(&[&issuer.key])).unwrap();
        let (keys, _) = KeySet::from_jwks(&doc, &Algorithm::ALL).unwrap();
        (issuer, keys)
    };
    if rsa {
        RSA.get_or_init(|| make(TestKey::rsa("k1")))
    } else {
        ED.get_or_init(|| make(TestKey::ed("d")))
    }
}

/// A token signed by the fixture's key, with the standard claims plus `extra`,
/// checked against `rules`: `None` when it verifies.
fn outcome(rsa: bool, rules: &Rules, extra: Value) -> Option<VerifyError> {
    let (issuer, keys) = fixture(rsa);
    let token = issuer.token(&issuer.claims(AUD, "s", NOW, extra));
    crate::parse(&token)
        .and_then(|t| t.verify_with_keys(rules, keys, NOW))
        .err()
}

fn rsa(rules: &Rules, extra: Value) -> Option<VerifyError> {
    outcome(true, rules, extra)
}

#[test]
fn new_turns_every_check_on() {
    let r = strict();
    assert_eq!(r.issuer(), ISS);
    assert_eq!(r.audiences(), [AUD.to_owned()]);
    assert_eq!(r.algorithms(), [Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(r.leeway(), 60);
    assert_eq!(r.max_lifetime(), 86_400);
    assert_eq!(r.max_age(), None);
    assert!(r.type_accepted(None) && r.type_accepted(Some("JWT")));
    assert!(!r.type_accepted(Some("at+jwt")));
    assert!(r.audience_accepted([Some(AUD)]));
    assert!(!r.audience_accepted([Some(AUD), Some("https://other")]));
}

#[test]
fn set_allowed_algorithms_replaces_the_allowlist() {
    let ed = strict().set_allowed_algorithms([Algorithm::EdDSA]);
    // EdDSA: refused by default, accepted once allowed.
    assert_eq!(
        outcome(false, &strict(), json!({})),
        Some(VerifyError::AlgorithmNotAllowed)
    );
    assert_eq!(outcome(false, &ed, json!({})), None);
    // RS256: accepted by default, refused once the list no longer names it.
    assert_eq!(rsa(&strict(), json!({})), None);
    assert_eq!(rsa(&ed, json!({})), Some(VerifyError::AlgorithmNotAllowed));
    // An empty list accepts nothing.
    let none = strict().set_allowed_algorithms([]);
    assert_eq!(
        rsa(&none, json!({})),
        Some(VerifyError::AlgorithmNotAllowed)
    );
}

#[test]
fn accept_other_audiences_loosens_only_the_others() {
    let loose = strict().accept_other_audiences();
    let cases = [
        // aud, strict, loose
        (json!(AUD), None, None),
        (json!([AUD]), None, None),
        (
            json!([AUD, "https://other"]),
            Some(VerifyError::Audience),
            None,
        ),
        (
            json!(["https://other", AUD]),
            Some(VerifyError::Audience),
            None,
        ),
        (json!([AUD, 5]), Some(VerifyError::Audience), None),
        (
            json!("https://other"),
            Some(VerifyError::Audience),
            Some(VerifyError::Audience),
        ),
        (
            json!(["https://other"]),
            Some(VerifyError::Audience),
            Some(VerifyError::Audience),
        ),
        (
            json!([]),
            Some(VerifyError::Audience),
            Some(VerifyError::Audience),
        ),
        (
            json!(5),
            Some(VerifyError::Claim("aud")),
            Some(VerifyError::Claim("aud")),
        ),
    ];
    for (aud, want_strict, want_loose) in cases {
        assert_eq!(
            rsa(&strict(), json!({"aud": aud})),
            want_strict,
            "{aud} strict"
        );
        assert_eq!(rsa(&loose, json!({"aud": aud})), want_loose, "{aud} loose");
    }
}

#[test]
fn allow_clock_skew_sets_the_leeway() {
    let wide = strict().allow_clock_skew(Duration::from_secs(120));
    let none = strict().allow_clock_skew(Duration::ZERO);
    let expired = |by: i64| json!({"iat": NOW - 400, "nbf": NOW - 400, "exp": NOW - by});
    let cases = [
        // claims, default (60 s), 120 s, none
        (expired(1), None, None, Some(VerifyError::Expired)),
        (expired(0), None, None, Some(VerifyError::Expired)),
        (
            expired(61),
            Some(VerifyError::Expired),
            None,
            Some(VerifyError::Expired),
        ),
        (
            expired(121),
            Some(VerifyError::Expired),
            Some(VerifyError::Expired),
            Some(VerifyError::Expired),
        ),
        (
            json!({"nbf": NOW + 61}),
            Some(VerifyError::NotYetValid),
            None,
            Some(VerifyError::NotYetValid),
        ),
        (
            json!({"nbf": NOW + 1}),
            None,
            None,
            Some(VerifyError::NotYetValid),
        ),
        (
            json!({"iat": NOW + 61}),
            Some(VerifyError::IssuedInFuture),
            None,
            Some(VerifyError::IssuedInFuture),
        ),
        (
            json!({"iat": NOW + 121}),
            Some(VerifyError::IssuedInFuture),
            Some(VerifyError::IssuedInFuture),
            Some(VerifyError::IssuedInFuture),
        ),
    ];
    for (claims, want, want_wide, want_none) in cases {
        assert_eq!(rsa(&strict(), claims.clone()), want, "{claims} default");
        assert_eq!(rsa(&wide, claims.clone()), want_wide, "{claims} 120 s");
        assert_eq!(rsa(&none, claims.clone()), want_none, "{claims} none");
    }
}

#[test]
fn allow_lifetime_up_to_sets_the_longest_lifetime() {
    let two_days = strict().allow_lifetime_up_to(Duration::from_secs(172_800));
    let five_minutes = strict().allow_lifetime_up_to(Duration::from_secs(300));
    let lasting = |secs: i64| json!({"exp": NOW + secs});
    let cases = [
        // claims, default (24 h), 48 h, 5 min
        (lasting(300), None, None, None),
        (lasting(301), None, None, Some(VerifyError::TooLong)),
        (lasting(86_400), None, None, Some(VerifyError::TooLong)),
        (
            lasting(86_401),
            Some(VerifyError::TooLong),
            None,
            Some(VerifyError::TooLong),
        ),
        (
            lasting(172_801),
            Some(VerifyError::TooLong),
            Some(VerifyError::TooLong),
            Some(VerifyError::TooLong),
        ),
        // Without iat: exp - now.
        (
            json!({"iat": null, "exp": NOW + 86_401}),
            Some(VerifyError::TooLong),
            None,
            Some(VerifyError::TooLong),
        ),
    ];
    for (claims, want, want_long, want_short) in cases {
        assert_eq!(rsa(&strict(), claims.clone()), want, "{claims} default");
        assert_eq!(rsa(&two_days, claims.clone()), want_long, "{claims} 48 h");
        assert_eq!(
            rsa(&five_minutes, claims.clone()),
            want_short,
            "{claims} 5 min"
        );
    }
}

#[test]
fn require_max_age_tightens() {
    let young = strict().require_max_age(Duration::from_secs(300));
    let issued = |ago: i64| json!({"iat": NOW - ago, "nbf": NOW - ago, "exp": NOW + 60});
    let cases = [
        // claims, default (no limit), at most 300 s old
        (issued(0), None, None),
        (issued(300), None, None),
        (issued(301), None, Some(VerifyError::TooLong)),
        (issued(3_600), None, Some(VerifyError::TooLong)),
        // An age limit needs iat.
        (json!({"iat": null}), None, Some(VerifyError::TooLong)),
    ];
    for (claims, want, want_young) in cases {
        assert_eq!(rsa(&strict(), claims.clone()), want, "{claims} default");
        assert_eq!(rsa(&young, claims.clone()), want_young, "{claims} 300 s");
    }
}
