//! The cost of one exchange, stage by stage, against the cryptographic floor, all in
//! one run on one core: `cargo bench -p ferry-bench --bench stages` (pin it with
//! `taskset -c 0`). The floor is jsonwebtoken (aws-lc-rs): RS256-2048 verify + ES256
//! sign. The stages are measured separately and the whole exchange through the router
//! (HTTP request in, JSON out, audit and metrics included); BENCHMARKS.md compares the
//! sum of the stages with the whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![allow(
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::disallowed_methods,
    reason = "benchmark tooling, never shipped: it measures real time, and a panic is a failed run"
)]

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use ferry_bench::{DEPLOY, FERRY, Fixture, SCOPE, form};
use ferry_core::mint::{MintInput, access_token_claims};
use ferry_core::request::parse_token_request;
use ferry_core::{Clock, SystemClock};
use ferry_keys::{SigningAlg, SoftwareSigner, sign_jwt};
use ferry_server::audit::{AuditEvent, AuditSink};
use ferry_verify::{Algorithm, KeySet, Rules};
use tower::ServiceExt;

fn state(dir: &std::path::Path, fx: &Fixture) -> ferry_server::state::AppState {
    fx.write(dir, 10);
    let config = ferry_server::load::read_config(&dir.join("ferry.yaml")).unwrap();
    let mono: Arc<dyn ferry_verify::time::MonoTime> =
        Arc::new(ferry_verify::time::SystemMono::default());
    let (providers, _) = ferry_server::load::load_providers(&config, mono.clone()).unwrap();
    let accounts = ferry_server::accounts::load_accounts(&config, mono).unwrap();
    let keys = ferry_keys::KeyManager::open(
        Arc::new(ferry_keys::LocalStore::open(&dir.join("keys")).unwrap()),
        ferry_keys::ManagerConfig {
            alg: SigningAlg::Es256,
            policy: ferry_server::load::ring_policy(&config),
            backend: ferry_keys::Backend::Software {
                keks: Arc::new(ferry_keys::Keks::default()),
                plaintext: true,
            },
            writer: "bench".into(),
        },
        SystemClock.now(),
    )
    .unwrap();
    ferry_server::load::build_state(
        config,
        providers,
        accounts,
        Arc::new(keys),
        Arc::new(SystemClock),
        Arc::new(AuditSink::new(Box::new(std::io::sink()))),
    )
}

/// `POST /token` with `body` through the router in process; the response must have
/// `status`.
fn post_token(
    rt: &tokio::runtime::Runtime,
    app: &axum::Router,
    body: &str,
    status: u16,
) -> axum::response::Response {
    rt.block_on(async {
        let r = app
            .clone()
            .oneshot(
                Request::post("/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        r
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::new();
    let now = SystemClock.now();
    let token = fx.tokens(1, 1, now).pop().unwrap();
    let st = state(dir.path(), &fx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The floor: jsonwebtoken, keys parsed once.
    {
        let floor = ferry_bench::Floor::new(&fx, now);
        let mut g = c.benchmark_group("floor");
        g.bench_function("RS256 verify (jsonwebtoken)", |b| b.iter(|| floor.verify()));
        g.bench_function("ES256 sign (jsonwebtoken)", |b| b.iter(|| floor.sign()));
        g.bench_function("RS256 verify + ES256 sign (jsonwebtoken)", |b| {
            b.iter(|| (floor.verify(), floor.sign()))
        });
        g.finish();
    }

    let mut g = c.benchmark_group("stage");
    // HTTP: the router and its middleware around a trivial handler.
    let app = ferry_server::routes::router(st.clone());
    g.bench_function("HTTP routing and response (GET /healthz)", |b| {
        b.iter(|| {
            rt.block_on(async {
                app.clone()
                    .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
                    .await
                    .unwrap()
            })
        })
    });
    let body = form(&token);
    g.bench_function("form parsing", |b| {
        b.iter(|| parse_token_request(black_box(body.as_bytes())).unwrap())
    });
    // The request scripts/bench.sh sends over TCP to measure HTTP's share: the same
    // body with an unsupported grant_type, refused after the form is parsed (audited).
    let refused = body.replace(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        "grant_type=urn%3Aexample%3Aunsupported",
    );
    assert_ne!(refused, body);
    g.bench_function("refusal through the router (unsupported grant_type)", |b| {
        b.iter(|| post_token(&rt, &app, &refused, 400))
    });
    g.bench_function("peek (split, decode, iss) and token fingerprint", |b| {
        b.iter(|| {
            (
                ferry_verify::parse(black_box(&token))
                    .unwrap()
                    .issuer()
                    .map(str::len),
                ferry_server::fingerprint(black_box(token.as_bytes())),
            )
        })
    });
    // Inbound verification with keys parsed once.
    let rules = Rules::new(ferry_bench::issuer(0), vec![FERRY.to_owned()])
        .set_allowed_algorithms([Algorithm::RS256]);
    let verify = |token: &str, rules: &Rules, keys: &KeySet| {
        ferry_verify::parse(token)
            .and_then(|t| t.verify_with_keys(rules, keys, now))
            .unwrap()
    };
    let rsa_keys = KeySet::from_jwks(
        ferry_testkit::keys::jwks(&[&fx.key]).to_string().as_bytes(),
        &[Algorithm::RS256],
    )
    .unwrap()
    .0;
    g.bench_function("verify RS256", |b| {
        b.iter(|| verify(black_box(&token), &rules, &rsa_keys))
    });
    // What the exchange does after the peek: the checks and the signature, no decoding.
    g.bench_function("verify RS256 after the peek", |b| {
        b.iter_batched(
            || ferry_verify::parse(&token).unwrap(),
            |p| p.verify_with_keys(&rules, &rsa_keys, now).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    let ec = ferry_testkit::TestKey::ec("ec");
    let ec_keys = KeySet::from_jwks(
        ferry_testkit::keys::jwks(&[&ec]).to_string().as_bytes(),
        &[Algorithm::ES256],
    )
    .unwrap()
    .0;
    let ec_token = ferry_testkit::Issuer::new(ferry_bench::issuer(0), ec)
        .token(&ferry_bench::claims(0, 0, now));
    let ec_rules = rules.clone().set_allowed_algorithms([Algorithm::ES256]);
    g.bench_function("verify ES256", |b| {
        b.iter(|| verify(black_box(&ec_token), &ec_rules, &ec_keys))
    });
    let verified = verify(&token, &rules, &rsa_keys);
    let config = &st.loaded().config;
    let provider = &config.providers[0];
    g.bench_function("claim context + condition + mapping", |b| {
        b.iter(|| {
            provider
                .mapping
                .apply(&provider.id, black_box(&verified.claims), None)
                .unwrap()
        })
    });
    let principal = provider
        .mapping
        .apply(&provider.id, &verified.claims, None)
        .unwrap();
    let targets = vec![DEPLOY.to_owned()];
    let scopes = vec![SCOPE.to_owned()];
    g.bench_function("policy (20 rules, the 20th allows)", |b| {
        b.iter(|| {
            config
                .policy
                .decide(black_box(&principal), None, &targets, &scopes, None, None)
                .unwrap()
        })
    });
    let grant = config
        .policy
        .decide(&principal, None, &targets, &scopes, None, None)
        .unwrap();
    for alg in [SigningAlg::Es256, SigningAlg::EdDsa] {
        let (signer, _) = SoftwareSigner::generate(alg).unwrap();
        g.bench_function(format!("mint and sign {}", signer_alg(alg)), |b| {
            b.iter(|| {
                let jti = ferry_server::random_id(16);
                let input = MintInput {
                    issuer: FERRY,
                    client_id: "ferry-provider:p0",
                    now,
                    ttl: 900,
                    jti: &jti,
                    cnf: &ferry_core::binding::Binding::Bearer,
                    act: None,
                    may_act: None,
                };
                let claims = access_token_claims(&input, black_box(&principal), &grant);
                sign_jwt(&signer, "at+jwt", &claims).unwrap()
            })
        });
    }
    let sink = AuditSink::new(Box::new(std::io::sink()));
    g.bench_function("audit event and metrics", |b| {
        b.iter(|| {
            let ev = AuditEvent {
                kind: "ferry.audit",
                time: now,
                request_id: ferry_server::random_id(12),
                decision: "allow",
                step: "mint",
                provider: Some("p0".into()),
                subject: Some(principal.subject.clone()),
                audiences: targets.clone(),
                scopes: scopes.clone(),
                jti: Some(ferry_server::random_id(16)),
                ..AuditEvent::default()
            };
            sink.record(black_box(&ev));
            st.metrics
                .exchanges
                .get_or_create(&ferry_server::metrics::ExchangeLabels {
                    provider: "p0".into(),
                    audience: DEPLOY.into(),
                    decision: "allow".into(),
                    error: String::new(),
                })
                .inc();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("exchange");
    let (req, params) = parse_token_request(body.as_bytes()).unwrap();
    let headers = axum::http::HeaderMap::new();
    g.bench_function("in process (no HTTP)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut audit = AuditEvent::default();
                let loaded = st.loaded();
                ferry_server::token::run(
                    &st,
                    &loaded,
                    &headers,
                    &ferry_server::token::Caller::default(),
                    black_box(req.clone()),
                    &params,
                    &mut audit,
                )
                .await
                .unwrap()
            })
        })
    });
    g.bench_function("through the router (HTTP request to JSON response)", |b| {
        b.iter(|| post_token(&rt, &app, &body, 200))
    });
    // The same with 2,000 distinct subject tokens over 10 providers, as the load test
    // sends them: what caches cost.
    let pool: Vec<String> = fx.tokens(10, 2_000, now).iter().map(|t| form(t)).collect();
    let mut i = 0usize;
    g.bench_function("through the router, 2,000 distinct tokens", |b| {
        b.iter(|| {
            i = (i + 1) % pool.len();
            post_token(&rt, &app, &pool[i], 200)
        })
    });
    g.finish();
}

fn signer_alg(a: SigningAlg) -> &'static str {
    match a {
        SigningAlg::Es256 => "ES256",
        SigningAlg::EdDsa => "EdDSA",
        _ => "RS256",
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
