//! Replay state that detects its own loss. Shared (two replicas, a real `redis-server`):
//! an assertion or DPoP proof used before Redis came back empty (or was flushed) is
//! refused after, at every replica, while one issued after the loss plus the leeway is
//! accepted. Single node: after `kill -9` the restarted process refuses what was issued
//! before its start; after a graceful stop it remembers every id it had seen.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_testkit::keys::jwks;
use ferry_testkit::mint::dpop_proof;
use ferry_testkit::{Issuer, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, TempDir};
use crate::replay::{
    redis_anywhere, redis_anywhere_with, redis_cmd, redis_empty, redis_empty_anywhere,
};

const ISS: &str = "https://ferry.example.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const DEPLOY: &str = "https://deploy.example.com";
/// The verifier's leeway for service-account assertions, and the default DPoP window.
const LEEWAY: i64 = 60;
const LOST: &str = "assertion issued before replay state was lost, retry with a new one";

static JTI: AtomicU64 = AtomicU64::new(0);

fn jti() -> String {
    format!(
        "l-{}-{}",
        std::process::id(),
        JTI.fetch_add(1, Ordering::SeqCst)
    )
}

/// Ferry with the `builder` service account; `replay` is the YAML of the replay section
/// (or nothing for the in-process cache). Replicas' clocks are the same here: no skew.
fn config(dir: &Path, replay: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        dir.parent().unwrap().join("builder.json"),
        dir.join("builder.json"),
    )
    .unwrap();
    let cfg = dir.join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
issuer: {ISS}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, replay_clock_skew: 0s }}
{replay}
service_accounts:
  - id: builder
    jwks: {{ file: builder.json }}
providers:
  - id: sa
    kind: service_account
audiences:
  - audience: {DEPLOY}
    rules:
      - allow: provider == 'service-account' && subject == 'builder'
"#
        ),
    )
    .unwrap();
    cfg
}

/// An assertion issued at `iat` (by the signer's clock), valid for 5 minutes.
fn assertion_at(signer: &Issuer, iat: i64) -> String {
    signer.token(
        &json!({"iss": signer.iss, "sub": signer.iss, "aud": ISS, "iat": iat,
        "exp": now() + 300, "jti": jti()}),
    )
}

async fn grant(ferry: &Ferry, assertion: &str, proof: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/token", ferry.url))
        .form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion),
            ("audience", DEPLOY),
        ]);
    if let Some(p) = proof {
        r = r.header("DPoP", p);
    }
    let resp = r.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// `(error, error_description)` of a refusal.
fn refusal(r: &(u16, Value)) -> (u16, &str, &str) {
    (
        r.0,
        r.1["error"].as_str().unwrap_or(""),
        r.1["error_description"].as_str().unwrap_or(""),
    )
}

async fn losses(ferry: &Ferry) -> u64 {
    let metrics = reqwest::get(format!("{}/metrics", ferry.admin.as_ref().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferry_replay_state_lost_total "))
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits past the next second boundary: ids then issued at `now() + LEEWAY` are issued
/// after a loss detected before the wait, plus the leeway.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
}

fn signer(dir: &Path) -> Issuer {
    let builder = Issuer::new("builder", TestKey::ec("b1"));
    std::fs::write(dir.join("builder.json"), jwks(&[&builder.key]).to_string()).unwrap();
    builder
}

#[tokio::test]
async fn replicas_refuse_what_was_issued_before_redis_lost_its_state() {
    let tmp = TempDir::new("replay-loss");
    let builder = signer(tmp.path());
    let (port, first) = redis_anywhere();
    let mut server = Some(first);
    let replay = format!("replay: {{ redis: \"redis://127.0.0.1:{port}\", timeout: 1s }}");
    let a = Ferry::start(&config(&tmp.path().join("a"), &replay)).unwrap();
    let b = Ferry::start(&config(&tmp.path().join("b"), &replay)).unwrap();
    let dpop_key = TestKey::ec("d1");
    let proof = |iat| {
        dpop_proof(
            &dpop_key,
            "POST",
            &format!("{ISS}/token"),
            iat,
            &jti(),
            None,
            None,
        )
    };

    // Used before the loss: an assertion alone, and one with a DPoP proof.
    let x = assertion_at(&builder, now());
    assert_eq!(grant(&a, &x, None).await.0, 200);
    let p = proof(now());
    assert_eq!(
        grant(&b, &assertion_at(&builder, now()), Some(&p)).await.0,
        200
    );
    assert_eq!(
        losses(&a).await,
        0,
        "joining the deployment's epoch is no loss"
    );

    // Redis restarts empty (no persistence).
    drop(server.take());
    let _server = redis_empty(port);

    // The replay of the still-valid assertion is refused at either replica, with a
    // fixed description (the old client accepted it: Redis had forgotten the jti).
    for r in [&b, &a] {
        let got = grant(r, &x, None).await;
        assert_eq!(refusal(&got), (400, "invalid_grant", LOST), "{got:?}");
    }
    // So is the DPoP proof's, with a fresh assertion that is itself acceptable.
    next_second().await;
    let got = grant(&a, &assertion_at(&builder, now() + LEEWAY), Some(&p)).await;
    assert_eq!(
        refusal(&got),
        (
            400,
            "invalid_dpop_proof",
            "DPoP proof issued before replay state was lost, retry with a new one"
        ),
        "{got:?}"
    );
    // Twins: issued after the loss plus the leeway, an assertion and a proof are
    // accepted, and their replays are refused as replays, at the other replica too.
    let y = assertion_at(&builder, now() + LEEWAY);
    let q = proof(now() + LEEWAY);
    assert_eq!(grant(&a, &y, Some(&q)).await.0, 200);
    let got = grant(&b, &y, None).await;
    assert_eq!(
        refusal(&got),
        (400, "invalid_grant", "invalid assertion"),
        "{got:?}"
    );
    let got = grant(&b, &assertion_at(&builder, now() + LEEWAY), Some(&q)).await;
    assert_eq!(got.1["error"], "invalid_dpop_proof", "{got:?}");
    assert!(losses(&a).await >= 1 && losses(&b).await >= 1);
    assert!(a.proc().output().contains("replay state (Redis) was lost"));
    // This Redis does not persist: each replica said so once.
    let warned = a.proc().output().matches("Redis does not persist").count();
    assert_eq!(warned, 1, "{}", a.proc().output());

    // FLUSHALL: the same.
    assert_eq!(redis_cmd(port, &["FLUSHALL"]), "+OK");
    let got = grant(&b, &y, None).await;
    assert_eq!(refusal(&got), (400, "invalid_grant", LOST), "{got:?}");
    next_second().await;
    let z = assertion_at(&builder, now() + LEEWAY);
    assert_eq!(grant(&b, &z, None).await.0, 200);
    assert_eq!(grant(&a, &z, None).await.0, 400);

    // A failover to a replica that holds an older epoch (and not the newest ids): the
    // marker is there but older than the one the replicas know — a loss as well.
    assert_eq!(redis_cmd(port, &["FLUSHALL"]), "+OK");
    assert_eq!(
        redis_cmd(port, &["SET", "ferry:replay:epoch", "older:1000"]),
        "+OK"
    );
    let got = grant(&a, &z, None).await;
    assert_eq!(refusal(&got), (400, "invalid_grant", LOST), "{got:?}");
    next_second().await;
    assert_eq!(
        grant(&b, &assertion_at(&builder, now() + LEEWAY), None)
            .await
            .0,
        200
    );
}

fn kill(ferry: &Ferry, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &ferry.proc().pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_single_node_remembers_its_ids_across_a_graceful_restart_and_refuses_older_ones_after_a_crash()
 {
    let tmp = TempDir::new("replay-restart");
    let builder = signer(tmp.path());
    let cfg = config(&tmp.path().join("node"), "");
    let mut ferry = Ferry::start(&cfg).unwrap();
    let x = assertion_at(&builder, now());
    assert_eq!(grant(&ferry, &x, None).await.0, 200);

    // Graceful stop (SIGTERM): the restarted node still refuses the replay…
    kill(&ferry, "-TERM");
    assert!(ferry.proc_mut().wait_exit(30).unwrap().success());
    let mode = std::fs::metadata(tmp.path().join("node/data/replay-state.json"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    ferry = Ferry::start(&cfg).unwrap();
    let got = grant(&ferry, &x, None).await;
    assert_eq!(
        refusal(&got),
        (400, "invalid_grant", "invalid assertion"),
        "{got:?}"
    );
    // …and accepts a fresh assertion at once: nothing was lost (twin).
    let y = assertion_at(&builder, now());
    assert_eq!(grant(&ferry, &y, None).await.0, 200);
    assert_eq!(losses(&ferry).await, 0);

    // kill -9: the restarted node refuses what was issued before its start…
    kill(&ferry, "-KILL");
    ferry.proc_mut().wait_exit(10).unwrap();
    ferry = Ferry::start(&cfg).unwrap();
    let got = grant(&ferry, &y, None).await;
    assert_eq!(refusal(&got), (400, "invalid_grant", LOST), "{got:?}");
    let got = grant(&ferry, &assertion_at(&builder, now()), None).await;
    assert_eq!(refusal(&got), (400, "invalid_grant", LOST), "{got:?}");
    assert_eq!(losses(&ferry).await, 1);
    assert!(ferry.proc().output().contains("did not stop gracefully"));
    // …and accepts one issued after the start plus the leeway (twin).
    next_second().await;
    assert_eq!(
        grant(&ferry, &assertion_at(&builder, now() + LEEWAY), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_new_deployment_begins_its_epoch_without_refusing_and_a_later_empty_redis_is_a_loss() {
    let tmp = TempDir::new("replay-first");
    let builder = signer(tmp.path());
    // A brand-new Redis: no epoch marker at all (not seeded).
    let (port, server) = redis_empty_anywhere();
    let replay = format!("replay: {{ redis: \"redis://127.0.0.1:{port}\", timeout: 1s }}");
    let cfg = config(&tmp.path().join("node"), &replay);
    let ferry = Ferry::start(&cfg).unwrap();
    // The deployment's durable store had never recorded an epoch: a first start, so a
    // fresh assertion is accepted at once and nothing counts as lost.
    let x = assertion_at(&builder, now());
    assert_eq!(grant(&ferry, &x, None).await.0, 200);
    assert_eq!(losses(&ferry).await, 0);
    assert!(
        redis_cmd(port, &["GET", "ferry:replay:epoch"]).starts_with('$'),
        "the marker was made"
    );
    assert!(
        ferry
            .proc()
            .output()
            .contains("began the deployment's first epoch")
    );
    // Its replay is still a replay.
    assert_eq!(
        refusal(&grant(&ferry, &x, None).await).1,
        "invalid_grant",
        "replayed"
    );

    // Twin: the same deployment (same durable store), Redis brand-new again and Ferry
    // restarted. A missing marker is now a loss: the same fresh-assertion shape is
    // refused, because it may have been seen before the loss.
    drop(ferry);
    drop(server);
    let _server = redis_empty(port);
    let ferry = Ferry::start(&cfg).unwrap();
    let got = grant(&ferry, &assertion_at(&builder, now()), None).await;
    assert_eq!(refusal(&got), (400, "invalid_grant", LOST), "{got:?}");
    assert_eq!(losses(&ferry).await, 1);
}

#[tokio::test]
async fn a_marker_written_far_in_the_future_costs_one_leeway_not_refusals_until_then() {
    let tmp = TempDir::new("replay-future");
    let builder = signer(tmp.path());
    let (port, _server) = redis_anywhere();
    let replay = format!("replay: {{ redis: \"redis://127.0.0.1:{port}\", timeout: 1s }}");
    let ferry = Ferry::start(&config(&tmp.path().join("node"), &replay)).unwrap();
    assert_eq!(
        grant(&ferry, &assertion_at(&builder, now()), None).await.0,
        200
    );
    // Someone with write access to Redis dates the marker in the year 5138.
    assert_eq!(
        redis_cmd(
            port,
            &["SET", "ferry:replay:epoch", "attacker:99999999999999"]
        ),
        "+OK"
    );
    // It is a loss now: what was issued before now plus the leeway is refused…
    let got = grant(&ferry, &assertion_at(&builder, now()), None).await;
    assert_eq!(refusal(&got), (400, "invalid_grant", LOST), "{got:?}");
    assert_eq!(losses(&ferry).await, 1);
    // …and nothing issued after that (before: refused until the marker's year).
    next_second().await;
    let got = grant(&ferry, &assertion_at(&builder, now() + LEEWAY), None).await;
    assert_eq!(got.0, 200, "{got:?}");
    assert!(
        !redis_cmd(port, &["GET", "ferry:replay:epoch"]).contains("99999999999999"),
        "the marker was remade"
    );
}

/// A Redis whose eviction policy may drop live ids (volatile-* evicts exactly them: they
/// expire, the epoch marker does not) draws one warning; the twin with Redis' default
/// `noeviction` is the share test in `replay.rs`.
#[tokio::test]
async fn an_evicting_redis_draws_one_warning() {
    let tmp = TempDir::new("replay-evict");
    let builder = signer(tmp.path());
    let (port, _server) =
        redis_anywhere_with(&["--save", "", "--maxmemory-policy", "volatile-lru"]);
    assert_eq!(
        redis_cmd(port, &["SET", "ferry:replay:epoch", "seed:0"]),
        "+OK"
    );
    let replay = format!("replay: {{ redis: \"redis://127.0.0.1:{port}\", timeout: 1s }}");
    let ferry = Ferry::start(&config(&tmp.path().join("node"), &replay)).unwrap();
    for _ in 0..3 {
        assert_eq!(
            grant(&ferry, &assertion_at(&builder, now()), None).await.0,
            200
        );
    }
    let log = ferry.proc().output();
    assert_eq!(
        log.matches("Redis may evict live replay ids").count(),
        1,
        "{log}"
    );
    assert!(log.contains("volatile-lru"));
}
