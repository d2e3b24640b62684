//! A key-encryption key rollout in the wrong order, across two replicas sharing
//! PostgreSQL: replica A holds [new, old], replica B only [old], and rotations run from
//! A's configuration, so the keys A generates are sealed under a KEK that B lacks. Every
//! token A signs verifies against B's `/jwks` (B publishes every key of the ring from the
//! stored public keys); once the active key is sealed under the new KEK, B refuses to
//! sign (503 `temporarily_unavailable`), fails its `/readyz`, says why on its admin
//! `/readyz` and logs it once; given the new KEK (a reload), B signs again. `ferry keys
//! rewrap` refuses while a live replica lacks the new KEK, ignores a replica whose
//! heartbeat is stale, and proceeds with `--force`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, Postgres, TestKey, now};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Value, json};

use crate::harness::{Ferry, TEST_KEK, TempDir, builder_trust, ferry_cmd, replica_dir};

const ISS: &str = "https://ferry.example.com";
const DEPLOY: &str = "https://deploy.example.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// "new-key-encryption-key-32-bytes!" in base64.
const NEW_KEK: &str = "bmV3LWtleS1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyE=";
/// "a-third-key-encryption-key-32by!" in base64.
const THIRD_KEK: &str = "YS10aGlyZC1rZXktZW5jcnlwdGlvbi1rZXktMzJieSE=";

/// Writes `dir/name/ferry.yaml` holding the KEK files `keks` (in order).
fn write_config(dir: &Path, name: &str, keks: &[&str]) -> std::path::PathBuf {
    let d = replica_dir(dir, name);
    let trust = builder_trust(DEPLOY);
    std::fs::write(d.join("old.kek"), TEST_KEK).unwrap();
    std::fs::write(d.join("new.kek"), NEW_KEK).unwrap();
    std::fs::write(d.join("third.kek"), THIRD_KEK).unwrap();
    let keks = keks
        .iter()
        .map(|k| format!("{{file: {k}.kek}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = d.join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
issuer: {ISS}
data_dir: data
tokens: {{ default_ttl: 60s, max_ttl: 60s, min_ttl: 1s }}
signing:
  rotation_period: 1h
  jwks_max_age: 1s
  leeway: 0s
  key_encryption_keys: [{keks}]
  postgres: {{ url: {{ env: FERRY_TEST_PG }}, poll_interval: 100ms, timeout: 2s }}
{trust}"#
        ),
    )
    .unwrap();
    cfg
}

/// `ferry keys ARGS --config CFG`: (success, stdout + stderr).
fn keys_cmd(cfg: &Path, pg: &Postgres, args: &[&str]) -> (bool, String) {
    let out = ferry_cmd()
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("FERRY_TEST_PG", pg.url())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// POST /token with a fresh service-account assertion: (status, body).
async fn token(http: &reqwest::Client, url: &str, builder: &Issuer, n: &mut u32) -> (u16, Value) {
    *n += 1;
    let t = now();
    let assertion = builder.token(&json!({"iss": builder.iss, "sub": builder.iss, "aud": ISS,
        "iat": t, "exp": t + 300, "jti": format!("kek-{}-{n}", std::process::id())}));
    let resp = http
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.as_str()),
            ("audience", DEPLOY),
        ])
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = http.get(url).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Verifies `token` against the JWKS served at `url`, independently of Ferry's code.
async fn verify_at(http: &reqwest::Client, url: &str, token: &str) -> Result<(), String> {
    let set: JwkSet = http
        .get(format!("{url}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not in the JWKS of {url}"))?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[DEPLOY]);
    v.set_issuer(&[ISS]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .map(|_| ())
        .map_err(|e| format!("verify at {url}: {e}"))
}

/// Waits (at most 5 s) until the replica's admin `/readyz` reports ring `version`.
async fn converge(http: &reqwest::Client, admin: &str, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let (_, v) = get(http, &format!("{admin}/readyz")).await;
        if v["key_ring_version"].as_u64() == Some(version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kek_rollout_in_the_wrong_order_keeps_one_key_set_and_the_replica_without_the_kek_does_not_sign()
 {
    let tmp = TempDir::new("kek-rollout");
    let builder = Issuer::new("builder", TestKey::ec("b1"));
    std::fs::write(
        tmp.path().join("builder.json"),
        jwks(&[&builder.key]).to_string(),
    )
    .unwrap();
    let pg = Postgres::start();
    let env = [("FERRY_TEST_PG", pg.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // B starts first and creates the ring under the old KEK; A holds [new, old].
    let b_cfg = write_config(tmp.path(), "b", &["old"]);
    let b = Ferry::start_with(&b_cfg, &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg.psql("SELECT count(*) FROM ferry_replicas").trim() != "1" {
        assert!(Instant::now() < deadline, "no heartbeat from B");
        std::thread::sleep(Duration::from_millis(20));
    }
    let a_cfg = write_config(tmp.path(), "a", &["new", "old"]);
    let a = Ferry::start_with(&a_cfg, &env).unwrap();
    let (a_admin, b_admin) = (a.admin.clone().unwrap(), b.admin.clone().unwrap());
    let http = reqwest::Client::new();
    let (_, a_ready) = get(&http, &format!("{a_admin}/readyz")).await;
    let new_fp = a_ready["key_encryption_keys"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let b_name = format!(":{}", b.proc().pid());
    // A warns at start: B, live, lacks the KEK that A seals new keys with.
    let a_log = a.proc().output();
    assert!(
        a_log.contains(&format!(
            "do not hold the key-encryption key {new_fp} that this configuration seals new keys with"
        )) && a_log.contains("1 live replica(s) (")
            && a_log.contains(&b_name),
        "{a_log}"
    );

    // Both replicas have a heartbeat: the rewrap is refused, naming B.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg.psql("SELECT count(*) FROM ferry_replicas").trim() != "2" {
        assert!(Instant::now() < deadline, "no heartbeats");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out) = keys_cmd(&a_cfg, &pg, &["rewrap"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "refusing to re-seal: 1 live replica(s) do not hold the first key-encryption key"
        ) && out.contains(&new_fp)
            && out.contains(&b_name),
        "{out}"
    );

    // Rotations from A's configuration: the standbys it generates are sealed under the
    // new KEK (B may generate some too, under the old one), and a few rotations later
    // one of them signs. The rounds go on until A has signed with a key generated after
    // B could no longer unseal the active key (B's JWKS of that moment lacks it).
    let mut n = 0;
    let mut at_b = Vec::new();
    let ring_kids = || -> BTreeSet<String> {
        pg.psql("SELECT k->>'kid' FROM ferry_key_ring, jsonb_array_elements(keys) k")
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let mut before = ring_kids();
    let mut known_when_b_stopped: Option<BTreeSet<String>> = None;
    let mut covered = false;
    for round in 1..=20 {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let (ok, out) = keys_cmd(&a_cfg, &pg, &["rotate"]);
        assert!(ok, "round {round}: {out}");
        let version: u64 = pg
            .psql("SELECT version FROM ferry_key_ring")
            .trim()
            .parse()
            .unwrap();
        converge(&http, &a_admin, version).await;
        converge(&http, &b_admin, version).await;
        // Every token A signs verifies against B's /jwks: one key set.
        let (status, body) = token(&http, &a.url, &builder, &mut n).await;
        assert_eq!(status, 200, "round {round}: {body}");
        let t = body["access_token"].as_str().unwrap();
        verify_at(&http, &b.url, t).await.unwrap_or_else(|e| {
            panic!(
                "round {round}: a token A signed: {e}\nB: {}",
                b.proc().output()
            )
        });
        let blob = pg.psql(
            "SELECT k->'material'->>'blob' FROM ferry_key_ring, jsonb_array_elements(keys) k WHERE k->>'state' = 'active'",
        );
        let sealed_new = blob.trim().starts_with(&format!("v1.{new_fp}."));
        let kid = jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        if sealed_new {
            let known = known_when_b_stopped.get_or_insert_with(|| before.clone());
            covered |= !known.contains(&kid);
        }
        before = ring_kids();
        let (status, body) = token(&http, &b.url, &builder, &mut n).await;
        if sealed_new {
            // More requests: the reason is logged once per active key, not per request.
            for _ in 0..2 {
                assert_eq!(token(&http, &b.url, &builder, &mut n).await.0, status);
            }
        }
        let (ready, _) = get(&http, &format!("{}/readyz", b.url)).await;
        let (admin_status, details) = get(&http, &format!("{b_admin}/readyz")).await;
        // B's side is checked after the loop, so that a token unverifiable at B is
        // the first failure to show.
        at_b.push((
            round,
            sealed_new,
            status,
            body,
            ready,
            admin_status,
            details,
        ));
        if covered {
            break;
        }
    }
    assert!(
        covered,
        "A never signed with a key generated after B stopped signing"
    );
    let mut refused_by_b = 0;
    for (round, sealed_new, status, body, ready, admin_status, details) in at_b {
        if sealed_new {
            refused_by_b += 1;
            assert_eq!(status, 503, "round {round}: {body}");
            assert_eq!(body["error"], "temporarily_unavailable");
            assert_eq!(
                body["error_description"],
                "temporarily unable to sign tokens"
            );
            assert_eq!(ready, 503, "round {round}: B's /readyz");
            assert_eq!(admin_status, 503);
            assert_eq!(details["signing"]["can_sign"], false, "{details}");
            let reason = details["signing"]["reason"].as_str().unwrap();
            assert!(
                reason.contains(details["signing_key"].as_str().unwrap())
                    && reason.contains(&new_fp),
                "{reason}"
            );
        } else {
            // Twin: while the active key is sealed under the old KEK, B signs.
            assert_eq!(status, 200, "round {round}: {body}");
            verify_at(&http, &a.url, body["access_token"].as_str().unwrap())
                .await
                .unwrap();
            assert_eq!((ready, admin_status), (200, 200));
            assert_eq!(details["signing"]["can_sign"], true);
        }
    }
    assert!(refused_by_b >= 1);
    let log = b.proc().output();
    assert_eq!(
        log.matches("this replica cannot sign: ").count(),
        refused_by_b,
        "logged once per active key it cannot unseal: {log}"
    );
    for secret in [TEST_KEK, NEW_KEK] {
        assert!(!log.contains(secret) && !a.proc().output().contains(secret));
    }

    // B is given the new KEK (its configuration file changes: a reload) and signs again.
    write_config(tmp.path(), "b", &["new", "old"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&http, &format!("{}/readyz", b.url)).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "B did not recover: {}",
            b.proc().output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = token(&http, &b.url, &builder, &mut n).await;
    assert_eq!(status, 200, "{body}");
    verify_at(&http, &a.url, body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    let (_, details) = get(&http, &format!("{b_admin}/readyz")).await;
    assert_eq!(details["signing"]["can_sign"], true);

    // Every live replica holds the new KEK now (B's next heartbeat says so); a replica
    // lacking it whose heartbeat is an hour old is ignored: the rewrap proceeds.
    let old_fp = a_ready["key_encryption_keys"][1]
        .as_str()
        .unwrap()
        .to_owned();
    pg.psql(&format!(
        "INSERT INTO ferry_replicas VALUES ('ghost:1', '[\"{old_fp}\"]', now() - interval '1 hour')"
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, out) = keys_cmd(&a_cfg, &pg, &["rewrap"]);
    assert!(ok, "{out}");
    assert!(out.contains("re-sealed") && !out.contains("ghost"), "{out}");
    // Twin: the same replica with a fresh heartbeat is counted; --force proceeds.
    pg.psql("UPDATE ferry_replicas SET last_seen = now() WHERE replica = 'ghost:1'");
    let (ok, out) = keys_cmd(&a_cfg, &pg, &["rewrap"]);
    assert!(
        !ok && out.contains("1 live replica(s)") && out.contains("ghost:1"),
        "{out}"
    );
    pg.psql("UPDATE ferry_replicas SET last_seen = now() WHERE replica = 'ghost:1'");
    let (ok, out) = keys_cmd(&a_cfg, &pg, &["rewrap", "--force"]);
    assert!(
        ok && out.contains("ghost:1") && out.contains("re-sealed"),
        "{out}"
    );

    // A rewrap forced under a KEK that B lacks: B keeps signing with the key it holds,
    // and says at its next ring poll that the ring is sealed under a KEK it does not
    // hold (before, nothing was logged until it failed to restart).
    let lacking = "that this configuration does not hold";
    let before = b.proc().output().matches(lacking).count();
    let third_cfg = write_config(tmp.path(), "third", &["third", "new", "old"]);
    let (ok, out) = keys_cmd(&third_cfg, &pg, &["rewrap", "--force"]);
    assert!(ok && out.contains("re-sealed"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.proc().output().matches(lacking).count() == before {
        assert!(
            Instant::now() < deadline,
            "B never warned: {}",
            b.proc().output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = token(&http, &b.url, &builder, &mut n).await;
    assert_eq!(status, 200, "B still signs with the key in memory: {body}");
    assert!(!b.proc().output().contains(THIRD_KEK));
}

/// `ferry check` inspects the ring against the configured KEKs (read-only): a KEK that
/// opens none of the keys or not the active one is an error; dropping a KEK that still
/// seals a standby is a warning naming it; the safe orders pass without either.
#[test]
fn ferry_check_reports_an_unsafe_key_encryption_key_order() {
    let tmp = TempDir::new("kek-check");
    let dir = tmp.path();
    std::fs::write(dir.join("old.kek"), TEST_KEK).unwrap();
    std::fs::write(dir.join("new.kek"), NEW_KEK).unwrap();
    let with = |keks: &str| {
        std::fs::write(
            dir.join("ferry.yaml"),
            format!(
                "issuer: {ISS}\ndata_dir: data\nsigning: {{ jwks_max_age: 1s, leeway: 0s, key_encryption_keys: [{keks}] }}\n\
                 providers:\n  - id: a\n    issuer: https://idp.example.com\n    audiences: [{ISS}]\n    jwks: {{ file: builder.json }}\n\
                 audiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n"
            ),
        )
        .unwrap();
    };
    std::fs::write(
        dir.join("builder.json"),
        jwks(&[&TestKey::ec("b1")]).to_string(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = ferry_cmd()
            .args(args)
            .args(["--config", "ferry.yaml"])
            .current_dir(dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A ring under the old KEK, then a standby sealed under the new one (new first).
    with("{file: old.kek}");
    assert!(run(&["keys", "list"]).0);
    with("{file: new.kek}, {file: old.kek}");
    std::thread::sleep(Duration::from_millis(1_100));
    assert!(run(&["keys", "rotate"]).0);
    let ring: Value =
        serde_json::from_slice(&std::fs::read(dir.join("data/ring.json")).unwrap()).unwrap();
    let kek_of = |k: &Value| {
        k["material"]["blob"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .to_owned()
    };
    let keys = ring["keys"].as_array().unwrap();
    let old_fp = keys
        .iter()
        .find(|k| k["state"] == "active")
        .map(kek_of)
        .unwrap();
    let standby_new = keys
        .iter()
        .find(|k| k["state"] == "pending" && kek_of(k) != old_fp)
        .map(|k| k["kid"].as_str().unwrap().to_owned());
    // `ferry keys list` tells which KEK seals each key.
    let out = ferry_cmd()
        .args(["keys", "list", "--config", "ferry.yaml"])
        .current_dir(dir)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains(&format!("sealed under key-encryption key {old_fp}")),
        "{listed}"
    );
    let before = std::fs::read(dir.join("data/ring.json")).unwrap();

    // Both KEKs: safe.
    let (ok, err) = run(&["check"]);
    assert!(
        ok && !err.contains("signing:") && !err.contains("sealed under"),
        "{err}"
    );
    // Only the old KEK: the standby sealed under the new one is named.
    with("{file: old.kek}");
    let (ok, err) = run(&["check"]);
    assert!(ok, "{err}");
    let standby_new = standby_new.expect("a standby sealed under the new KEK");
    assert!(
        err.contains("warning: signing keys") && err.contains(&standby_new),
        "{err}"
    );
    // Only the new KEK: the active key cannot be unsealed.
    with("{file: new.kek}");
    let (ok, err) = run(&["check"]);
    assert!(
        !ok && err.contains("signing: the active signing key"),
        "{err}"
    );
    // A KEK that opens nothing.
    std::fs::write(
        dir.join("other.kek"),
        "b3RoZXIta2V5LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGU=",
    )
    .unwrap();
    with("{file: other.kek}");
    let (ok, err) = run(&["check"]);
    assert!(
        !ok && err.contains("open none of the key ring's keys"),
        "{err}"
    );
    // `ferry check` wrote nothing.
    assert_eq!(std::fs::read(dir.join("data/ring.json")).unwrap(), before);
    for secret in [TEST_KEK, NEW_KEK] {
        assert!(!err.contains(secret));
    }
}
