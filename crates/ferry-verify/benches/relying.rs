//! A relying service verifying a DPoP-bound Ferry token with its proof (RFC 9449): the
//! token's signature and claims, the proof's signature, `htm`/`htu`/`ath`/`iat`, the
//! binding and the single-use `jti`. Proofs are made outside the measured time.
//! Also local downscoping: deriving a token and verifying derived chains offline.
//! Run with `cargo bench -p ferry-verify --bench relying`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![allow(
    clippy::indexing_slicing,
    reason = "a benchmark: a panic is a failed run"
)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ferry_testkit::keys::jwks;
use ferry_testkit::mint::dpop_proof;
use ferry_testkit::{Issuer, TestKey};
use ferry_verify::dpop::{access_token_hash, thumbprint};
use ferry_verify::{Algorithm, FerryVerifier, KeySource, StaticKeys};
use serde_json::json;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ferry = Issuer::new("https://sts.example.com", TestKey::ec("ferry-1"));
    let (keys, _) = StaticKeys::from_bytes(
        jwks(&[&ferry.key]).to_string().as_bytes(),
        &[Algorithm::ES256],
    )
    .unwrap();
    let verifier = FerryVerifier::new(
        "https://sts.example.com",
        "https://api.example.com",
        "https://api.example.com",
        KeySource::Static(Arc::new(keys)),
    );
    let holder = TestKey::ec("holder");
    let now = ferry_testkit::now();
    let token = ferry.token_with_header(
        &json!({"alg": "ES256", "kid": "ferry-1", "typ": "at+jwt"}),
        &json!({"iss": "https://sts.example.com", "aud": "https://api.example.com", "sub": "repo:acme/app",
                "iat": now, "exp": now + 3_600, "jti": "t", "client_id": "c", "scope": "read write",
                "ferry": {"provider": "gh", "iss": "https://idp.example"},
                "cnf": {"jkt": thumbprint(&holder.public_jwk())}}),
    );
    let ath = access_token_hash(&token);
    let auth = format!("DPoP {token}");
    let mut n = 0u64;
    c.bench_function("verify a DPoP-bound token and its proof", |b| {
        b.iter_batched(
            || {
                n += 1;
                dpop_proof(
                    &holder,
                    "GET",
                    "https://api.example.com/resource",
                    now,
                    &format!("p{n}"),
                    Some(&ath),
                    None,
                )
            },
            |proof| {
                rt.block_on(verifier.verify(Some(&auth), Some(&proof), "GET", "/resource", now))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
}

/// Local downscoping: deriving (holder side) and verifying offline at depth 1 and 4.
fn derived(c: &mut Criterion) {
    use ferry_verify::derive::{HolderKey, Narrowing, derive};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ferry = Issuer::new("https://sts.example.com", TestKey::ec("ferry-1"));
    let (keys, _) = StaticKeys::from_bytes(
        jwks(&[&ferry.key]).to_string().as_bytes(),
        &[Algorithm::ES256],
    )
    .unwrap();
    let verifier = FerryVerifier::new(
        "https://sts.example.com",
        "https://api.example.com",
        "https://api.example.com",
        KeySource::Static(Arc::new(keys)),
    );
    let holders: Vec<HolderKey> = (0..4).map(|_| HolderKey::generate().unwrap()).collect();
    let now = ferry_testkit::now();
    let root = ferry.token_with_header(
        &json!({"alg": "ES256", "kid": "ferry-1", "typ": "at+jwt"}),
        &json!({"iss": "https://sts.example.com", "aud": "https://api.example.com", "sub": "repo:acme/app",
                "iat": now, "exp": now + 3_600, "jti": "t", "client_id": "c", "scope": "read write",
                "ferry": {"provider": "gh", "iss": "https://idp.example"},
                "cnf": {"jkt": holders[0].thumbprint()}}),
    );
    let narrow = Narrowing {
        scopes: Some(vec!["read".into()]),
        lifetime: Some(300),
        ..Narrowing::default()
    };
    c.bench_function("derive a token locally (depth 1)", |b| {
        b.iter(|| derive(&root, &holders[0], &narrow, now).unwrap())
    });
    let d1 = format!(
        "Bearer {}",
        derive(&root, &holders[0], &narrow, now).unwrap()
    );
    let mut d4 = root.clone();
    for i in 0..4 {
        let n = Narrowing {
            bind_to: holders.get(i + 1).map(|h| h.thumbprint().to_owned()),
            ..Narrowing::default()
        };
        d4 = derive(&d4, &holders[i], &n, now).unwrap();
    }
    let d4 = format!("Bearer {d4}");
    c.bench_function("verify a derived token (depth 1)", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(Some(&d1), None, "GET", "/resource", now))
                .unwrap()
        })
    });
    c.bench_function("verify a derived token (depth 4)", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(Some(&d4), None, "GET", "/resource", now))
                .unwrap()
        })
    });
}

criterion_group!(benches, bench, derived);
criterion_main!(benches);
