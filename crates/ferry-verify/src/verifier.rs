//! The verification pipeline for one token against one issuer's rules and keys. Strict
//! by default (RFC 8725 §3); each step is numbered and cites its rule.

use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::error::VerifyError;
use crate::jwks::KeySet;
use crate::jws::{Header, Parts};
use crate::rules::Rules;

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The protected header.
    pub header: Header,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the epoch.
    pub exp: i64,
}

impl Verified {
    /// A token that passed [`check`]: its header, claims and `exp`.
    pub(crate) fn new(header: Header, claims: Map<String, Value>, exp: i64) -> Self {
        Self {
            header,
            claims,
            exp,
        }
    }
}

fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        // RFC 7519 §2 NumericDate: may be non-integer; truncate.
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(VerifyError::Claim(name)),
        Some(_) => Err(VerifyError::Claim(name)),
    }
}

/// Steps 2–9 on a token split and decoded (step 1, [`crate::parse`]): `claims` is its
/// payload, not believed before step 5. Returns `exp`.
pub(crate) fn check(
    parts: &Parts<'_>,
    claims: &Map<String, Value>,
    rules: &Rules,
    keys: &KeySet,
    now: i64,
) -> Result<i64, VerifyError> {
    let header = &parts.header;
    // 2. Algorithm: from the allowlist only (RFC 8725 §3.1); `none` and HMAC are not
    //    algorithms here at all.
    let alg = Algorithm::from_name(&header.alg)
        .filter(|a| rules.algorithms().contains(a))
        .ok_or(VerifyError::AlgorithmNotAllowed)?;
    // 3. No critical extensions (RFC 7515 §4.1.11).
    if header.crit {
        return Err(VerifyError::CriticalHeader);
    }
    // Keys come from configuration only; no unencoded, nested or compressed payloads.
    if let Some(what) = header.refused {
        return Err(VerifyError::HeaderNotAccepted(what));
    }
    // 4. Explicit typing (RFC 8725 §3.11): a JWT of another kind signed by the same key
    //    (an access token, a DPoP proof, a logout or security event token) is not the
    //    kind of token these rules are for.
    if !rules.type_accepted(header.typ.as_deref()) {
        return Err(VerifyError::TypeNotAccepted);
    }
    // 5. Signature, with a key of this issuer matching kid and alg, before any claim is
    //    believed.
    let mut tried = false;
    let mut ok = false;
    for key in keys.candidates(header.kid.as_deref(), alg) {
        tried = true;
        if key.verify(parts.signing_input.as_bytes(), &parts.signature) {
            ok = true;
            break;
        }
    }
    if !tried {
        return Err(VerifyError::UnknownKey);
    }
    if !ok {
        return Err(VerifyError::BadSignature);
    }
    // 6. Claims: a JSON object without duplicate members (checked by `parse`), believed
    //    from here on.
    // 7. iss: a string equal to the configured issuer (RFC 8725 §3.8).
    match claims.get("iss") {
        Some(Value::String(s)) if *s == rules.issuer() => {}
        Some(Value::String(_)) => return Err(VerifyError::Issuer),
        _ => return Err(VerifyError::Claim("iss")),
    }
    // 8. aud: required; one of ours (RFC 8725 §3.9, RFC 7519 §4.1.3) and, unless the
    //    rules accept other audiences, none but ours (OIDC Core §3.1.3.7 step 3).
    let aud_ok = match claims.get("aud") {
        Some(Value::String(s)) => rules.audience_accepted([Some(s.as_str())]),
        Some(Value::Array(a)) => rules.audience_accepted(a.iter().map(Value::as_str)),
        _ => return Err(VerifyError::Claim("aud")),
    };
    if !aud_ok {
        return Err(VerifyError::Audience);
    }
    // sub and jti, when present, are strings (RFC 7519 §4.1.2, §4.1.7).
    for claim in ["sub", "jti"] {
        if claims.get(claim).is_some_and(|v| !v.is_string()) {
            return Err(VerifyError::Claim(claim));
        }
    }
    // 9. Time: exp, nbf, iat, lifetime and age.
    check_time(claims, rules, now)
}

/// Step 9, time: `exp` required; `nbf` and `iat` checked with leeway; bounded lifetime
/// and age. Returns `exp`.
fn check_time(claims: &Map<String, Value>, rules: &Rules, now: i64) -> Result<i64, VerifyError> {
    let exp = numeric(claims, "exp")?.ok_or(VerifyError::Claim("exp"))?;
    if now >= exp.saturating_add(rules.leeway()) {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = numeric(claims, "nbf")?
        && nbf > now.saturating_add(rules.leeway())
    {
        return Err(VerifyError::NotYetValid);
    }
    match numeric(claims, "iat")? {
        Some(iat) => {
            if iat > now.saturating_add(rules.leeway()) {
                return Err(VerifyError::IssuedInFuture);
            }
            if exp.saturating_sub(iat) > rules.max_lifetime() {
                return Err(VerifyError::TooLong);
            }
            if rules
                .max_age()
                .is_some_and(|age| now.saturating_sub(iat) > age)
            {
                return Err(VerifyError::TooLong);
            }
        }
        None => {
            if exp.saturating_sub(now) > rules.max_lifetime() || rules.max_age().is_some() {
                return Err(VerifyError::TooLong);
            }
        }
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_testkit::keys::jwks;
    use ferry_testkit::mint::{alg_none, hs256_with_public_key, tamper_payload};
    use ferry_testkit::{Issuer, TestKey};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const AUD: &str = "https://ferry.test";

    struct Fixture {
        issuer: Issuer,
        keys: KeySet,
        rules: Rules,
    }

    fn fixture(key: TestKey) -> Fixture {
        let issuer = Issuer::new("https://idp.test", key);
        let doc = serde_json::to_vec(&jwks(&[&issuer.key])).unwrap();
        let (keys, warnings) = KeySet::from_jwks(&doc, &Algorithm::ALL).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let rules = Rules::new("https://idp.test", vec![AUD.to_owned()]);
        Fixture {
            issuer,
            keys,
            rules,
        }
    }

    fn verify(
        token: &str,
        rules: &Rules,
        keys: &KeySet,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        crate::parse(token)?.verify_with_keys(rules, keys, now)
    }

    fn good(f: &Fixture, extra: serde_json::Value) -> String {
        f.issuer
            .token(&f.issuer.claims(AUD, "repo:acme/app", NOW, extra))
    }

    #[test]
    fn a_good_token_verifies_with_each_key_type() {
        for key in [TestKey::rsa("r"), TestKey::ec("e"), TestKey::ed("d")] {
            let mut f = fixture(key);
            f.rules = f.rules.set_allowed_algorithms(Algorithm::ALL);
            let v = verify(&good(&f, json!({})), &f.rules, &f.keys, NOW).unwrap();
            assert_eq!(v.claims["sub"], "repo:acme/app");
            assert_eq!(v.exp, NOW + 300);
        }
    }

    /// Each attack against its positive twin: the same token with only the attacked
    /// part changed.
    #[test]
    fn rfc8725_rules_each_with_a_positive_twin() {
        let f = fixture(TestKey::rsa("k1"));
        let base = |extra| f.issuer.claims(AUD, "s", NOW, extra);
        let cases: Vec<(&str, String, Option<VerifyError>)> = vec![
            ("good", good(&f, json!({})), None),
            ("bad signature", tamper_payload(&good(&f, json!({})), &base(json!({"sub": "admin"}))), Some(VerifyError::BadSignature)),
            ("alg none", alg_none(&base(json!({}))), Some(VerifyError::AlgorithmNotAllowed)),
            ("hs256 with public key", hs256_with_public_key(&f.issuer.key, &base(json!({}))), Some(VerifyError::AlgorithmNotAllowed)),
            ("expired", good(&f, json!({"iat": NOW - 400, "nbf": NOW - 400, "exp": NOW - 61})), Some(VerifyError::Expired)),
            ("expired within leeway", good(&f, json!({"iat": NOW - 400, "nbf": NOW - 400, "exp": NOW - 59})), None),
            ("not yet valid", good(&f, json!({"nbf": NOW + 61})), Some(VerifyError::NotYetValid)),
            ("nbf within leeway", good(&f, json!({"nbf": NOW + 59})), None),
            ("iat in the future", good(&f, json!({"iat": NOW + 61})), Some(VerifyError::IssuedInFuture)),
            ("lifetime too long", good(&f, json!({"exp": NOW + 86_401})), Some(VerifyError::TooLong)),
            ("lifetime at the limit", good(&f, json!({"exp": NOW + 86_400})), None),
            ("wrong aud", good(&f, json!({"aud": "https://other"})), Some(VerifyError::Audience)),
            ("aud array with ours and another", good(&f, json!({"aud": ["https://other", AUD]})), Some(VerifyError::Audience)),
            ("aud array with ours only", good(&f, json!({"aud": [AUD]})), None),
            ("no aud", good(&f, json!({"aud": null})), Some(VerifyError::Claim("aud"))),
            ("wrong iss", good(&f, json!({"iss": "https://idp.test/"})), Some(VerifyError::Issuer)),
            ("iss as array", good(&f, json!({"iss": ["https://idp.test"]})), Some(VerifyError::Claim("iss"))),
            ("no exp", good(&f, json!({"exp": null})), Some(VerifyError::Claim("exp"))),
            ("exp as string", good(&f, json!({"exp": "9999999999"})), Some(VerifyError::Claim("exp"))),
            ("jti as number", good(&f, json!({"jti": 5})), Some(VerifyError::Claim("jti"))),
            ("sub as number", good(&f, json!({"sub": 5})), Some(VerifyError::Claim("sub"))),
            ("unknown kid", f.issuer.token_with_header(&json!({"alg": "RS256", "kid": "other"}), &base(json!({}))), Some(VerifyError::UnknownKey)),
            ("no kid", f.issuer.token_with_header(&json!({"alg": "RS256"}), &base(json!({}))), None),
            ("typ at+jwt", f.issuer.token_with_header(&json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}), &base(json!({}))), Some(VerifyError::TypeNotAccepted)),
            ("typ application/AT+JWT", f.issuer.token_with_header(&json!({"alg": "RS256", "kid": "k1", "typ": "application/AT+JWT"}), &base(json!({}))), Some(VerifyError::TypeNotAccepted)),
            ("typ JWT", f.issuer.token_with_header(&json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}), &base(json!({}))), None),
            ("crit", f.issuer.token_with_header(&json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}), &base(json!({}))), Some(VerifyError::CriticalHeader)),
            ("alg outside allowlist", f.issuer.token_with_header(&json!({"alg": "RS512", "kid": "k1"}), &base(json!({}))), Some(VerifyError::AlgorithmNotAllowed)),
            (
                "duplicate claim",
                f.issuer.token_raw(r#"{"alg":"RS256","kid":"k1"}"#, &format!(r#"{{"iss":"https://idp.test","aud":"{AUD}","sub":"a","sub":"b","exp":{}}}"#, NOW + 60)),
                Some(VerifyError::Malformed("payload")),
            ),
            (
                "distinct claims (twin)",
                f.issuer.token_raw(r#"{"alg":"RS256","kid":"k1"}"#, &format!(r#"{{"iss":"https://idp.test","aud":"{AUD}","sub":"a","exp":{}}}"#, NOW + 60)),
                None,
            ),
        ];
        for (name, token, want) in cases {
            let got = verify(&token, &f.rules, &f.keys, NOW);
            assert_eq!(got.as_ref().err(), want.as_ref(), "{name}");
            if let Ok(v) = &got {
                assert!(!v.claims.is_empty(), "{name}");
            }
        }
    }

    /// RFC 8725 §3.11: only identity assertions by default; `accept_types` adds kinds,
    /// `require_type` demands exactly one.
    #[test]
    fn typ_allowlist_each_with_a_positive_twin() {
        let f = fixture(TestKey::rsa("k1"));
        let claims = f.issuer.claims(AUD, "s", NOW, json!({}));
        let with_typ = |typ: Option<&str>| {
            let mut h = json!({"alg": "RS256", "kid": "k1"});
            if let Some(t) = typ {
                h["typ"] = json!(t);
            }
            f.issuer.token_with_header(&h, &claims)
        };
        let strict = f.rules.clone();
        let loose = f.rules.clone().accept_types(["foo+jwt"]);
        let own = f.rules.clone().require_type("at+jwt");
        let cases: &[(Option<&str>, bool, bool, bool)] = &[
            // typ, strict, with foo+jwt accepted, at+jwt required
            (None, true, true, false),
            (Some("JWT"), true, true, false),
            (Some("jwt"), true, true, false),
            (Some("application/jwt"), true, true, false),
            (Some("APPLICATION/JWT"), true, true, false),
            (Some("at+jwt"), false, false, true),
            (Some("application/at+JWT"), false, false, true),
            (Some("dpop+jwt"), false, false, false),
            (Some("logout+jwt"), false, false, false),
            (Some("secevent+jwt"), false, false, false),
            (Some("client-authentication+jwt"), false, false, false),
            (Some("foo+jwt"), false, true, false),
            (Some("application/FOO+jwt"), false, true, false),
            (Some("application/"), false, false, false),
            (Some(""), false, false, false),
        ];
        for (typ, ok_strict, ok_loose, ok_own) in cases {
            let token = with_typ(*typ);
            for (name, rules, want) in [
                ("strict", &strict, ok_strict),
                ("loose", &loose, ok_loose),
                ("own", &own, ok_own),
            ] {
                let got = verify(&token, rules, &f.keys, NOW);
                if *want {
                    assert!(got.is_ok(), "{typ:?} {name}: {got:?}");
                } else {
                    assert_eq!(
                        got.err(),
                        Some(VerifyError::TypeNotAccepted),
                        "{typ:?} {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn key_filtering() {
        let good = TestKey::ec("ok");
        let mut private = good.public_jwk();
        private["d"] = json!("AAAA");
        private["kid"] = json!("private");
        let mut off_curve = good.public_jwk();
        off_curve["y"] = off_curve["x"].clone();
        off_curve["kid"] = json!("off-curve");
        let mut enc = good.public_jwk();
        enc["use"] = json!("enc");
        enc["kid"] = json!("enc");
        let doc = json!({"keys": [
            good.public_jwk(),
            private,
            off_curve,
            enc,
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"},
        ]});
        let (set, warnings) =
            KeySet::from_jwks(&serde_json::to_vec(&doc).unwrap(), &Algorithm::ALL).unwrap();
        assert_eq!(set.kids(), vec!["ok"]);
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        assert!(KeySet::from_jwks(b"{}", &Algorithm::ALL).is_err());
        assert!(KeySet::from_jwks(b"<html>", &Algorithm::ALL).is_err());
    }
}
