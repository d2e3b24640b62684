use serde_json::{Value, json};

use super::*;

/// The claims `ferry-core` mints for a delegated, bound, narrowed token.
fn minted() -> Value {
    json!({
        "iss": "https://ferry.example", "sub": "repo:acme/app", "aud": ["a", "b"],
        "exp": 1_900, "iat": 1_000, "nbf": 1_000, "jti": "j1", "client_id": "ci",
        "scope": "read write",
        "access_boundaries": [{"accessBoundaryRules": [{"availableResource": "r",
            "availablePermissions": ["p"]}]}],
        "act": {"sub": "deployer", "provider": "gh", "act": {"sub": "bot", "iss": "up", "x": 1}},
        "cnf": {"jkt": "th"}, "groups": ["g"], "attributes": {"team": "t"},
        "ferry": {"provider": "gh", "iss": "https://idp.example", "sub": "orig"}
    })
}

#[test]
fn minted_claims_round_trip() {
    let cases = [
        minted(),
        // The fewest claims Ferry mints: one audience, no scope, no optional claims.
        json!({"iss": "i", "sub": "s", "aud": "a", "exp": 2, "iat": 1, "nbf": 1,
            "jti": "j", "client_id": "c", "ferry": {"provider": "p", "iss": "o"}}),
    ];
    for v in cases {
        let c: AccessClaims = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
        assert_eq!(Value::Object(c.to_map()), v);
        let m = v.as_object().unwrap();
        assert_eq!(AccessClaims::from_map(m).unwrap(), c);
    }
    let c: AccessClaims = serde_json::from_value(minted()).unwrap();
    assert_eq!(c.bound_jkt(), Some("th"));
    let inner = c.act.unwrap().act.unwrap();
    assert_eq!(inner.iss.as_deref(), Some("up"));
    assert_eq!(inner.other.get("x"), Some(&json!(1)));
}

#[test]
fn claims_ferry_does_not_know_are_ignored_and_missing_ones_refused() {
    let mut v = minted();
    v["derivation_depth"] = json!(2);
    assert!(serde_json::from_value::<AccessClaims>(v).is_ok());
    for k in ["sub", "jti", "exp", "ferry"] {
        let mut v = minted();
        v.as_object_mut().unwrap().remove(k);
        assert!(serde_json::from_value::<AccessClaims>(v).is_err(), "{k}");
    }
}

#[test]
fn aud_one_or_many() {
    let cases = [
        (json!("a"), Some(vec!["a"])),
        (json!(["a"]), Some(vec!["a"])),
        (json!(["a", "b"]), Some(vec!["a", "b"])),
        (json!([]), Some(vec![])),
        (json!(7), None),
        (json!(["a", 7]), None),
        (json!({"a": 1}), None),
        (json!(null), None),
    ];
    for (v, want) in cases {
        let got = serde_json::from_value::<Audience>(v.clone()).ok();
        let want = want.map(|w| Audience(w.into_iter().map(String::from).collect()));
        assert_eq!(got, want, "{v}");
    }
    // One audience is written as a string, several (or none) as an array.
    for (aud, want) in [
        (vec!["a"], json!("a")),
        (vec!["a", "b"], json!(["a", "b"])),
        (vec![], json!([])),
    ] {
        let a = Audience(aud.into_iter().map(String::from).collect());
        assert_eq!(serde_json::to_value(&a).unwrap(), want);
    }
}

#[test]
fn scope_is_a_space_delimited_string_only() {
    let cases = [
        (json!("read write"), Some(vec!["read", "write"])),
        (json!(" read  write "), Some(vec!["read", "write"])),
        (json!(""), Some(vec![])),
        (json!(["read", "write"]), None),
        (json!(["read"]), None),
        (json!(3), None),
        (json!(true), None),
        (json!(null), None),
        (json!({"read": true}), None),
    ];
    for (v, want) in cases {
        let got = serde_json::from_value::<Scope>(v.clone()).ok();
        let want = want.map(|w| Scope(w.into_iter().map(String::from).collect()));
        assert_eq!(got, want, "{v}");
    }
    let s = Scope::parse("a  b");
    assert_eq!(s.to_string(), "a b");
    assert_eq!(serde_json::to_value(&s).unwrap(), json!("a b"));
    // A token whose scope is an array is not a Ferry token.
    let mut v = minted();
    v["scope"] = json!(["read"]);
    assert!(serde_json::from_value::<AccessClaims>(v).is_err());
}

#[test]
fn cnf_variants() {
    let cases = [
        (json!({"jkt": "t"}), Some(Confirmation::jkt("t"))),
        (
            json!({"x5t#S256": "c"}),
            Some(Confirmation {
                jkt: None,
                x5t_s256: Some("c".into()),
            }),
        ),
        (
            json!({"jkt": "t", "x5t#S256": "c"}),
            Some(Confirmation {
                jkt: Some("t".into()),
                x5t_s256: Some("c".into()),
            }),
        ),
        (json!({}), Some(Confirmation::default())),
        // An array `jkt` is refused, not read as unbound.
        (json!({"jkt": ["t"]}), None),
        (json!({"jkt": 1}), None),
        (json!("t"), None),
    ];
    for (v, want) in cases {
        let got = serde_json::from_value::<Confirmation>(v.clone()).ok();
        assert_eq!(got, want, "{v}");
        if let Some(c) = got {
            assert_eq!(serde_json::to_value(&c).unwrap(), v);
        }
    }
}

#[test]
fn derived_layer_reads_and_refuses() {
    let v = json!({"parent": "p", "aud": ["a"], "scope": "r", "iat": 1, "exp": 2,
        "depth": 1, "cnf": {"jkt": "k"}});
    let d: DerivedClaims = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(d.depth, 1);
    assert_eq!(serde_json::to_value(&d).unwrap(), v);
    for (k, bad) in [
        ("depth", json!(-1)),
        ("scope", json!(["r"])),
        ("parent", json!(1)),
    ] {
        let mut w = v.clone();
        w[k] = bad;
        assert!(serde_json::from_value::<DerivedClaims>(w).is_err(), "{k}");
    }
}

#[test]
fn algorithms_and_prefix() {
    for a in SigningAlgorithm::ALL {
        assert_eq!(serde_json::to_value(a).unwrap(), json!(a.name()));
    }
    assert!(HANDLE_PREFIX.ends_with('_'));
}
