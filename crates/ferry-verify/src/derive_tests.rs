//! Local derivation: each rule the verifier enforces, beside its positive twin.

use std::sync::Arc;

use ferry_testkit::keys::jwks;
use ferry_testkit::mint::{dpop_proof, payload};
use ferry_testkit::{Issuer, TestKey, now};

use crate::derive::*;
use crate::dpop::access_token_hash;
use crate::{FerryVerifier, RelyingError, StaticKeys};

const ISS: &str = "https://sts.example.com";
const API: &str = "https://api.example.com";
const OTHER: &str = "https://other.example.com";

struct Fx {
    ferry: Issuer,
    verifier: FerryVerifier,
    holder_tk: TestKey,
    holder: HolderKey,
}

fn fx() -> Fx {
    let ferry = Issuer::new(ISS, TestKey::ec("ferry-1"));
    let (keys, _) = StaticKeys::from_bytes(
        jwks(&[&ferry.key]).to_string().as_bytes(),
        &[Algorithm::ES256],
    )
    .unwrap();
    let verifier = FerryVerifier::new(ISS, API, API, KeySource::Static(Arc::new(keys)));
    let holder_tk = TestKey::ec("holder");
    let holder = HolderKey::from_pkcs8(holder_tk.pkcs8()).unwrap();
    Fx {
        ferry,
        verifier,
        holder_tk,
        holder,
    }
}

impl Fx {
    fn root(&self, extra: Value) -> String {
        let mut claims = json!({"iss": ISS, "aud": [API, OTHER], "sub": "repo:acme/app",
            "iat": now(), "exp": now() + 600, "jti": "t", "client_id": "c", "scope": "read write",
            "cnf": {"jkt": self.holder.thumbprint()},
            "ferry": {"provider": "gh", "iss": "https://idp.example"}});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        self.ferry.token_with_header(
            &json!({"alg": "ES256", "kid": "ferry-1", "typ": "at+jwt"}),
            &claims,
        )
    }

    async fn bearer(&self, token: &str) -> Result<crate::FerryToken, RelyingError> {
        self.verifier
            .verify(Some(&format!("Bearer {token}")), None, "GET", "/r", now())
            .await
    }

    async fn dpop(&self, key: &TestKey, token: &str) -> Result<crate::FerryToken, RelyingError> {
        let proof = dpop_proof(
            key,
            "GET",
            &format!("{API}/r"),
            now(),
            &format!("{}", now() as u128 * 1000 + u128::from(rand_u16())),
            Some(&access_token_hash(token)),
            None,
        );
        self.verifier
            .verify(
                Some(&format!("DPoP {token}")),
                Some(&proof),
                "GET",
                "/r",
                now(),
            )
            .await
    }

    /// Signs an arbitrary derived layer (bypassing the holder-side checks).
    fn forge(&self, key: &HolderKey, payload: Value) -> String {
        let mut h = Map::new();
        h.insert("typ".into(), json!(DERIVED_TYPE));
        key.sign(h, &payload).unwrap()
    }
}

fn rand_u16() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static N: AtomicU16 = AtomicU16::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn narrow(aud: &str, scope: &str) -> Narrowing {
    Narrowing {
        audiences: vec![aud.to_owned()],
        scopes: Some(vec![scope.to_owned()]),
        lifetime: Some(60),
        ..Narrowing::default()
    }
}

#[tokio::test]
async fn a_derived_token_verifies_offline_with_the_narrowed_claims() {
    let f = fx();
    let root = f.root(json!({}));
    let d = derive(&root, &f.holder, &narrow(API, "read"), now()).unwrap();
    assert_eq!(payload(&d)["depth"], 1);
    let t = f.bearer(&d).await.unwrap();
    assert_eq!(t.subject, "repo:acme/app");
    assert_eq!(t.scopes, vec!["read"]);
    assert_eq!(t.claims["aud"], json!([API]));
    assert!(t.claims["exp"].as_i64().unwrap() <= now() + 60);
    assert_eq!(
        t.bound_jkt, None,
        "an unbound derived token is a bearer token"
    );
    assert_eq!(t.claims["derivation_depth"], 1);
    // The root itself is bound: as a bearer token it is refused, with its proof it works.
    assert!(matches!(f.bearer(&root).await, Err(RelyingError::Dpop(_))));
    assert!(f.dpop(&f.holder_tk, &root).await.is_ok());
}

#[tokio::test]
async fn widening_is_impossible_for_the_holder_and_refused_when_forged() {
    let f = fx();
    let root = f.root(json!({"aud": [API], "scope": "read"}));
    let t = now();
    // Holder side: each widening refused, its twin accepted.
    assert_eq!(
        derive(&root, &f.holder, &narrow(OTHER, "read"), t),
        Err(DeriveError::Widens("aud"))
    );
    assert_eq!(
        derive(&root, &f.holder, &narrow(API, "write"), t),
        Err(DeriveError::Widens("scope"))
    );
    assert!(derive(&root, &f.holder, &narrow(API, "read"), t).is_ok());
    // A longer lifetime is capped at the parent's exp, never beyond.
    let long = Narrowing {
        lifetime: Some(100_000),
        ..Narrowing::default()
    };
    let d = derive(&root, &f.holder, &long, t).unwrap();
    assert_eq!(payload(&d)["exp"], payload(&root)["exp"]);
    // Verifier side: forged layers, each beside its valid twin.
    let exp = payload(&root)["exp"].as_i64().unwrap();
    let layer = |aud: Value, scope: &str, exp: i64| json!({"parent": root, "aud": aud, "scope": scope, "iat": t, "exp": exp, "depth": 1});
    let ok = f.forge(&f.holder, layer(json!([API]), "read", exp));
    assert!(f.bearer(&ok).await.is_ok());
    for (bad, why) in [
        (layer(json!([API, OTHER]), "read", exp), "aud"),
        (layer(json!([API]), "read write", exp), "scope"),
        (layer(json!([API]), "read", exp + 1), "exp"),
    ] {
        let forged = f.forge(&f.holder, bad);
        let err = f.bearer(&forged).await.unwrap_err();
        assert!(
            matches!(err, RelyingError::Derived(DeriveError::Widens(w)) if w == why),
            "{why}: {err}"
        );
    }
}

#[tokio::test]
async fn only_the_bound_key_can_derive() {
    let f = fx();
    let root = f.root(json!({}));
    let stranger = HolderKey::generate().unwrap();
    assert_eq!(
        derive(&root, &stranger, &narrow(API, "read"), now()),
        Err(DeriveError::Holder)
    );
    let t = now();
    let layer =
        json!({"parent": root, "aud": [API], "scope": "read", "iat": t, "exp": t + 60, "depth": 1});
    let forged = f.forge(&stranger, layer.clone());
    assert!(matches!(
        f.bearer(&forged).await,
        Err(RelyingError::Derived(DeriveError::Holder))
    ));
    assert!(f.bearer(&f.forge(&f.holder, layer)).await.is_ok());
    // An unbound root cannot be derived from at all (twin: the bound root above).
    let unbound = f.root(json!({"cnf": null}));
    assert_eq!(
        derive(&unbound, &f.holder, &narrow(API, "read"), now()),
        Err(DeriveError::Holder)
    );
    let layer = json!({"parent": unbound, "aud": [API], "scope": "read", "iat": t, "exp": t + 60, "depth": 1});
    assert!(matches!(
        f.bearer(&f.forge(&f.holder, layer)).await,
        Err(RelyingError::Derived(DeriveError::Holder))
    ));
}

#[tokio::test]
async fn depth_four_verifies_and_five_is_impossible() {
    let f = fx();
    // Each level bound to the next holder's key, as a task hands a token to a subtask.
    let keys: Vec<TestKey> = (0..5).map(|i| TestKey::ec(&format!("k{i}"))).collect();
    let holders: Vec<HolderKey> = keys
        .iter()
        .map(|k| HolderKey::from_pkcs8(k.pkcs8()).unwrap())
        .collect();
    let root = f.root(json!({"cnf": {"jkt": holders[0].thumbprint()}}));
    let mut token = root.clone();
    for i in 0..4 {
        let n = Narrowing {
            bind_to: Some(holders[i + 1].thumbprint().to_owned()),
            lifetime: Some(300 - 10 * i as i64),
            ..Narrowing::default()
        };
        token = derive(&token, &holders[i], &n, now()).unwrap();
        // Each level is bound: refused as a bearer token, accepted with its holder's proof.
        assert!(matches!(f.bearer(&token).await, Err(RelyingError::Dpop(_))));
        let t = f.dpop(&keys[i + 1], &token).await.unwrap();
        assert_eq!(t.claims["derivation_depth"], i + 1);
        assert_eq!(t.bound_jkt.as_deref(), Some(holders[i + 1].thumbprint()));
    }
    assert_eq!(
        derive(&token, &holders[4], &Narrowing::default(), now()),
        Err(DeriveError::Depth)
    );
    let t = now();
    let fifth = f.forge(
        &holders[4],
        json!({"parent": token, "aud": [API, OTHER], "scope": "read write", "iat": t, "exp": t + 60, "depth": 5}),
    );
    assert!(matches!(
        f.dpop(&keys[4], &fifth).await,
        Err(RelyingError::Derived(DeriveError::Depth))
    ));
    // A depth claim that skips a level is refused too (twin: the chain above).
    let skip = f.forge(
        &holders[0],
        json!({"parent": root, "aud": [API], "scope": "read", "iat": t, "exp": t + 60, "depth": 2}),
    );
    assert!(matches!(
        f.bearer(&skip).await,
        Err(RelyingError::Derived(DeriveError::Depth))
    ));
}

#[cfg(feature = "access-boundary")]
#[tokio::test]
async fn boundaries_accumulate_and_are_enforced() {
    use crate::boundary::ResourceAccess;
    let f = fx();
    let bucket = "//storage.googleapis.com/projects/_/buckets/b";
    let rule = |expr: &str| {
        json!({"accessBoundaryRules": [{"availableResource": bucket,
            "availablePermissions": ["read"], "availabilityCondition": {"expression": expr}}]})
    };
    let root = f.root(json!({"access_boundaries": [rule("resource.name.endsWith('.txt')")]}));
    let n = Narrowing {
        access_boundary: Some(rule("resource.name.startsWith('a/')")),
        ..narrow(API, "read")
    };
    let d = derive(&root, &f.holder, &n, now()).unwrap();
    let t = f.bearer(&d).await.unwrap();
    let access = |name| ResourceAccess {
        resource: bucket,
        permission: "read",
        name,
        ..ResourceAccess::default()
    };
    assert!(t.boundary_allows(&access("a/1.txt")));
    assert!(
        !t.boundary_allows(&access("b/1.txt")),
        "the derived boundary"
    );
    assert!(
        !t.boundary_allows(&access("a/1.bin")),
        "the root's boundary"
    );
    let bad = Narrowing {
        access_boundary: Some(rule("resource.name.startsWith((")),
        ..narrow(API, "read")
    };
    assert_eq!(
        derive(&root, &f.holder, &bad, now()),
        Err(DeriveError::Boundary)
    );
}

#[tokio::test]
async fn expired_or_foreign_audience_derived_tokens_are_refused() {
    let f = fx();
    let root = f.root(json!({}));
    let t = now();
    let layer = |aud: &str, exp: i64| json!({"parent": root, "aud": [aud], "scope": "read", "iat": t - 200, "exp": exp, "depth": 1});
    assert!(
        f.bearer(&f.forge(&f.holder, layer(API, t + 60)))
            .await
            .is_ok()
    );
    assert!(matches!(
        f.bearer(&f.forge(&f.holder, layer(API, t - 100))).await,
        Err(RelyingError::Derived(DeriveError::Time))
    ));
    assert!(matches!(
        f.bearer(&f.forge(&f.holder, layer(OTHER, t + 60))).await,
        Err(RelyingError::Derived(DeriveError::Audience))
    ));
}

/// The effective claims come from the narrowed chain: at depth 2 and 3, a layer that
/// omits `scope` has none (never the root's), a non-string `scope` or `aud` is
/// malformed, and `aud`, `scope` and `exp` are the outermost layer's as checked.
#[tokio::test]
async fn effective_claims_are_the_narrowed_chains_at_every_depth() {
    let f = fx();
    let keys: Vec<HolderKey> = (0..3).map(|_| HolderKey::generate().unwrap()).collect();
    let root = f.root(json!({"scope": "read write admin"}));
    let t = now();
    for depth in [2u64, 3] {
        // An honest chain down to depth - 1: bound to the next key, `read write` for API.
        let mut parent = root.clone();
        let mut signer = &f.holder;
        for k in keys.iter().take(depth as usize - 1) {
            let n = Narrowing {
                audiences: vec![API.into()],
                scopes: Some(vec!["read".into(), "write".into()]),
                lifetime: Some(120),
                bind_to: Some(k.thumbprint().to_owned()),
                ..Narrowing::default()
            };
            parent = derive(&parent, signer, &n, t).unwrap();
            signer = k;
        }
        let layer = |edit: Value| {
            let mut p = json!({"parent": parent, "aud": [API], "scope": "read", "iat": t,
                "exp": t + 60, "depth": depth});
            for (k, v) in edit.as_object().unwrap() {
                if v.is_null() {
                    p.as_object_mut().unwrap().remove(k);
                } else {
                    p[k] = v.clone();
                }
            }
            f.forge(signer, p)
        };
        // Omitted scope: verified, with no scope at all.
        let v = f.bearer(&layer(json!({"scope": null}))).await.unwrap();
        assert!(v.scopes.is_empty(), "depth {depth}: {:?}", v.scopes);
        assert!(!v.claims.contains_key("scope"));
        // Twin: an equal scope is the parent's.
        let v = f
            .bearer(&layer(json!({"scope": "read write"})))
            .await
            .unwrap();
        assert_eq!(v.scopes, vec!["read", "write"]);
        assert_eq!(v.claims["aud"], json!([API]));
        assert_eq!(v.claims["exp"], json!(t + 60));
        assert_eq!(v.claims["derivation_depth"], json!(depth));
        // aud as a bare string is the same audience.
        let v = f.bearer(&layer(json!({"aud": API}))).await.unwrap();
        assert_eq!(v.claims["aud"], json!([API]));
        for (edit, want) in [
            (json!({"scope": ["read"]}), DeriveError::Malformed("scope")),
            (json!({"scope": 7}), DeriveError::Malformed("scope")),
            (json!({"scope": "read admin"}), DeriveError::Widens("scope")),
            (json!({"aud": [API, 1]}), DeriveError::Malformed("aud")),
            (json!({"aud": null}), DeriveError::Widens("aud")),
            (json!({"aud": [API, OTHER]}), DeriveError::Widens("aud")),
            (json!({"exp": null}), DeriveError::Malformed("exp")),
            (json!({"exp": t + 121}), DeriveError::Widens("exp")),
            // A `cnf.jkt` that is not a string is malformed, never read as unbound.
            (
                json!({"cnf": {"jkt": ["k"]}}),
                DeriveError::Malformed("cnf"),
            ),
        ] {
            let err = f.bearer(&layer(edit.clone())).await.unwrap_err();
            assert!(
                matches!(&err, RelyingError::Derived(e) if *e == want),
                "depth {depth}, {edit}: {err}"
            );
        }
    }
}

/// A token Ferry's key signed but whose claims do not fit Ferry's token profile
/// (`ferry_token::AccessClaims`) is refused, as a root and by itself; the twin with the
/// member in its profile shape verifies.
#[tokio::test]
async fn claims_outside_the_token_profile_are_refused() {
    let f = fx();
    for (edit, good) in [
        (
            json!({"scope": ["read", "write"]}),
            json!({"scope": "read write"}),
        ),
        (json!({"aud": [API, 7]}), json!({"aud": [API, OTHER]})),
        (json!({"cnf": {"jkt": [f.holder.thumbprint()]}}), json!({})),
        (json!({"ferry": null}), json!({})),
    ] {
        let bad = f.root(edit.clone());
        assert!(
            matches!(f.dpop(&f.holder_tk, &bad).await, Err(RelyingError::Claims)),
            "{edit}"
        );
        assert!(
            matches!(
                derive(&bad, &f.holder, &narrow(API, "read"), now()),
                Err(DeriveError::Malformed("root claims"))
            ),
            "{edit}"
        );
        let ok = f.root(good);
        assert!(f.dpop(&f.holder_tk, &ok).await.is_ok(), "{edit}");
        let d = derive(&ok, &f.holder, &narrow(API, "read"), now()).unwrap();
        assert!(f.bearer(&d).await.is_ok(), "{edit}");
    }
}

/// RFC 8705 §3.2 at the relying service: a certificate-bound token only with that
/// certificate; without one (or with another) refused, never taken as a bearer token.
#[tokio::test]
async fn a_certificate_bound_token_needs_the_requests_certificate() {
    use base64::Engine as _;
    let fx = fx();
    let cert = b"the client's certificate (DER)".to_vec();
    let thumb = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert));
    let token = fx.root(json!({"cnf": {"x5t#S256": thumb}}));
    let auth = format!("Bearer {token}");
    for (c, ok) in [
        (Some(cert.as_slice()), true),
        (None, false),
        (Some(b"another".as_slice()), false),
    ] {
        let r = fx
            .verifier
            .verify_with_certificate(Some(&auth), None, "GET", "/r", c, now())
            .await;
        assert_eq!(r.is_ok(), ok, "{c:?}: {r:?}");
        if !ok {
            assert!(matches!(r, Err(RelyingError::Certificate)));
        }
    }
    assert!(matches!(
        fx.bearer(&token).await,
        Err(RelyingError::Certificate)
    ));
    // Twin: an unbound token needs no certificate.
    let unbound = fx.root(json!({"cnf": null}));
    assert!(fx.bearer(&unbound).await.is_ok());
}
