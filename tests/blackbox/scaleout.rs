//! Scale-out: three Ferry replicas on loopback sharing a throwaway PostgreSQL cluster (the
//! key ring) and a Redis server (replay state), all started here, under load with
//! accelerated rotation. Every token issued by any replica verifies against `/jwks`
//! fetched from another; every version of the ring was written by exactly one replica
//! (the compare-and-swap history in the database against what each replica logged);
//! killing one replica fails no request at the others; an assertion used at one replica
//! is refused at another; restarting PostgreSQL under load does not stop signing, and
//! rotation resumes afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, Postgres, TestKey, now, sha256_hex};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Value, json};

use crate::harness::{Ferry, TEST_KEK, TempDir, builder_trust, replica_dir};
use crate::replay::redis_anywhere;

const ISS: &str = "https://ferry.example.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const DEPLOY: &str = "https://deploy.example.com";
const NAMES: [&str; 3] = ["a", "b", "c"];

static JTI: AtomicU64 = AtomicU64::new(0);

fn replica(dir: &Path, name: &str, redis_port: u16, pg_url: &str, extra: &str) -> Ferry {
    let d = replica_dir(dir, name);
    let trust = builder_trust(DEPLOY);
    let cfg = d.join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
issuer: {ISS}
data_dir: data
# One service account makes the whole load: its share of the replay cache must hold
# every assertion it makes within their lifetime (the default is 10 000).
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, max_replay_entries_per_principal: 1000000 }}
tokens: {{ default_ttl: 5s, max_ttl: 5s, min_ttl: 1s }}
replay: {{ redis: "redis://127.0.0.1:{redis_port}", timeout: 2s }}
signing:
  rotation_period: 8s
  jwks_max_age: 2s
  leeway: 1s
  postgres: {{ url: {{ env: FERRY_TEST_PG }}, poll_interval: 250ms, timeout: 2s }}
{trust}{extra}"#
        ),
    )
    .unwrap();
    Ferry::start_with(&cfg, &[("FERRY_KEK", TEST_KEK), ("FERRY_TEST_PG", pg_url)]).unwrap()
}

fn assertion(signer: &Issuer) -> String {
    let t = now();
    signer.token(
        &json!({"iss": signer.iss, "sub": signer.iss, "aud": ISS, "iat": t, "exp": t + 300,
        "jti": format!("s-{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::SeqCst))}),
    )
}

async fn grant(http: &reqwest::Client, url: &str, assertion: &str) -> Result<Value, String> {
    let resp = http
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion),
            ("audience", DEPLOY),
        ])
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|e| format!("body: {e}"))?;
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("{status} {body}"))
    }
}

/// Verifies `token` against the JWKS served by `url`, independently of Ferry's code.
async fn verify_at(http: &reqwest::Client, url: &str, token: &str) -> Result<(), String> {
    let set: JwkSet = http
        .get(format!("{url}/jwks"))
        .send()
        .await
        .map_err(|e| format!("jwks: {e}"))?
        .json()
        .await
        .map_err(|e| format!("jwks body: {e}"))?;
    let kid = jsonwebtoken::decode_header(token)
        .map_err(|e| e.to_string())?
        .kid
        .unwrap_or_default();
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in the JWKS of {url}"))?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[DEPLOY]);
    v.set_issuer(&[ISS]);
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|_| ())
        .map_err(|e| format!("verify at {url}: {e}"))
}

/// What the load saw: per replica, successes and failures (with the time they ended).
#[derive(Default)]
struct Seen {
    ok: [u64; 3],
    /// When each success finished.
    at: Vec<Instant>,
    failures: Vec<(usize, Instant, String)>,
    kids: BTreeSet<String>,
}

fn ring_versions_logged(ferry: &Ferry) -> Vec<u64> {
    let text = ferry.proc().output();
    text.lines()
        .filter(|l| l.contains("signing key ring changed"))
        .filter_map(|l| {
            // Strip ANSI colours, then read `version=N`.
            let mut plain = String::new();
            let mut esc = false;
            for c in l.chars() {
                match (esc, c) {
                    (false, '\u{1b}') => esc = true,
                    (true, 'm') => esc = false,
                    (true, _) => {}
                    (false, c) => plain.push(c),
                }
            }
            let v = plain.split("version=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_keys_and_replay_state_through_rotation_a_lost_replica_and_a_database_restart()
 {
    let tmp = TempDir::new("scaleout");
    let builder = Arc::new(Issuer::new("builder", TestKey::ec("b1")));
    std::fs::write(
        tmp.path().join("builder.json"),
        jwks(&[&builder.key]).to_string(),
    )
    .unwrap();
    let mut pg = Postgres::start();
    let (redis_port, _redis) = redis_anywhere();
    let replicas: Vec<Ferry> = NAMES
        .iter()
        .map(|n| replica(tmp.path(), n, redis_port, &pg.url(), ""))
        .collect();
    let urls: Arc<Vec<String>> = Arc::new(replicas.iter().map(|f| f.url.clone()).collect());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Load: three workers cycling over the live replicas; each token is verified
    // against the JWKS of the next live replica.
    let alive = Arc::new([
        AtomicBool::new(true),
        AtomicBool::new(true),
        AtomicBool::new(true),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (http, urls, alive, stop, seen, builder) = (
                http.clone(),
                urls.clone(),
                alive.clone(),
                stop.clone(),
                seen.clone(),
                builder.clone(),
            );
            tokio::spawn(async move {
                let mut n = w;
                // Bounded in count as well as in time.
                for _ in 0..300_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    n += 1;
                    let i = n % 3;
                    let j = (1..3)
                        .map(|k| (i + k) % 3)
                        .find(|&j| alive[j].load(Ordering::SeqCst));
                    if !alive[i].load(Ordering::SeqCst) {
                        continue;
                    }
                    let result = match grant(&http, &urls[i], &assertion(&builder)).await {
                        Ok(body) => {
                            let token =
                                body["access_token"].as_str().unwrap_or_default().to_owned();
                            // A failure here is charged to the replica asked for /jwks.
                            match j {
                                Some(j) => verify_at(&http, &urls[j], &token)
                                    .await
                                    .map(|_| token)
                                    .map_err(|e| (j, e)),
                                None => Ok(token),
                            }
                        }
                        Err(e) => Err((i, e)),
                    };
                    let mut s = seen.lock().unwrap();
                    match result {
                        Ok(token) => {
                            s.ok[i] += 1;
                            s.at.push(Instant::now());
                            if let Ok(h) = jsonwebtoken::decode_header(&token) {
                                s.kids.insert(h.kid.unwrap_or_default());
                            }
                        }
                        Err((at, e)) => s.failures.push((at, Instant::now(), e)),
                    }
                }
            })
        })
        .collect();

    let history_max = |pg: &Postgres| -> u64 {
        pg.psql("SELECT coalesce(max(version), 0) FROM ferry_key_ring_history")
            .trim()
            .parse()
            .unwrap()
    };

    // A rotation or so under load, then replica C is killed (SIGKILL, no goodbye).
    tokio::time::sleep(Duration::from_secs(10)).await;
    alive[2].store(false, Ordering::SeqCst);
    let killed_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &replicas[2].proc().pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_secs(4)).await;

    // PostgreSQL restarts under load: signing goes on from memory.
    let before_restart = history_max(&pg);
    let down = Instant::now();
    pg.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.start_again();
    let up = Instant::now();
    // Rotation resumes: new versions are written (none could be while it was down).
    let deadline = Instant::now() + Duration::from_secs(30);
    while history_max(&pg) <= before_restart + 1 {
        assert!(
            Instant::now() < deadline,
            "rotation did not resume after the database restart"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let counted: Vec<&(usize, Instant, String)> = seen
        .failures
        .iter()
        // Requests in flight at C when it was killed fail: they are not "at the others".
        .filter(|(i, ended, _)| *i != 2 || *ended < killed_at)
        .collect();
    assert!(
        counted.is_empty(),
        "{} failed requests at live replicas, e.g. {:?}",
        counted.len(),
        counted.first().map(|f| (NAMES[f.0], &f.2))
    );
    assert!(
        seen.ok[0] >= 50 && seen.ok[1] >= 50 && seen.ok[2] >= 10,
        "load reached every replica: {:?}",
        seen.ok
    );
    assert!(
        seen.kids.len() >= 3,
        "tokens were signed by several keys in turn: {:?}",
        seen.kids
    );

    // The load went on while the database was down and after it came back.
    let during = seen.at.iter().filter(|t| **t > down && **t < up).count();
    let after = seen.at.iter().filter(|t| **t > up).count();
    assert!(
        during >= 10 && after >= 10,
        "{during} during, {after} after"
    );
    eprintln!(
        "scale-out load: ok per replica {:?} ({during} while PostgreSQL was down), {} signing keys seen, failures at C after its kill: {}",
        seen.ok,
        seen.kids.len(),
        seen.failures.len()
    );
    // An assertion used at A is refused at B; a fresh one is accepted at B (twin).
    let x = assertion(&builder);
    grant(&http, &urls[0], &x).await.unwrap();
    let refused = grant(&http, &urls[1], &x).await.unwrap_err();
    assert!(
        refused.starts_with("400") && refused.contains("invalid_grant"),
        "{refused}"
    );
    grant(&http, &urls[1], &assertion(&builder)).await.unwrap();

    // The compare-and-swap history: versions 1..=N, each once, each written by the one
    // replica that logged writing it; at most one active key in every version.
    let rows =
        pg.psql("SELECT version, written_by, keys FROM ferry_key_ring_history ORDER BY version");
    let mut writer_of: BTreeMap<u64, String> = BTreeMap::new();
    for line in rows.lines() {
        let mut f = line.splitn(3, '|');
        let v: u64 = f.next().unwrap().parse().unwrap();
        let by = f.next().unwrap().to_owned();
        let keys: Value = serde_json::from_str(f.next().unwrap()).unwrap();
        let active = keys
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["state"] == "active")
            .count();
        assert!(active <= 1, "version {v}: {active} active keys");
        assert!(writer_of.insert(v, by).is_none(), "version {v} twice");
    }
    let n = *writer_of.keys().last().unwrap();
    assert_eq!(
        writer_of.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let mut claimed: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, f) in replicas.iter().enumerate() {
        let pid = f.proc().pid();
        for v in ring_versions_logged(f) {
            assert!(
                claimed.insert(v, i).is_none(),
                "version {v} claimed by two replicas"
            );
            assert!(
                writer_of[&v].ends_with(&format!(":{pid}")),
                "version {v} logged by {} but recorded as written by {}",
                NAMES[i],
                writer_of[&v]
            );
        }
    }
    assert_eq!(
        claimed.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "every version written was logged by its writer"
    );
    // The secret connection string never reached a log.
    for f in &replicas {
        assert!(!f.proc().output().contains(pg.password()));
    }
}

/// Revocation state and reference-token handles live in PostgreSQL (by default the
/// signing store's database), and every read syncs the replica's copy first: what one
/// replica revokes or issues, the others know at once.
#[tokio::test]
async fn a_token_revoked_at_one_replica_is_inactive_at_another() {
    let tmp = TempDir::new("scaleout-revocation");
    let builder = Issuer::new("builder", TestKey::ec("b1"));
    std::fs::write(
        tmp.path().join("builder.json"),
        jwks(&[&builder.key]).to_string(),
    )
    .unwrap();
    let pg = Postgres::start();
    let (redis_port, _redis) = redis_anywhere();
    let gateway_hash = sha256_hex("gw-secret");
    let relying_hash = sha256_hex("rs-secret");
    let clients = format!(
        "clients:\n  - {{ id: gateway, auth: client_secret_basic, secret_sha256: {gateway_hash}, introspect: true }}\n  - {{ id: relying, auth: client_secret_basic, secret_sha256: {relying_hash}, revocations: true }}\n"
    );
    let start = |name: &str| replica(tmp.path(), name, redis_port, &pg.url(), &clients);
    let (a, b) = (start("a"), start("b"));
    let http = reqwest::Client::new();
    let issue = |reference: bool| {
        let (http, url, x) = (http.clone(), a.url.clone(), assertion(&builder));
        async move {
            let mut form = vec![
                ("grant_type", JWT_BEARER.to_owned()),
                ("assertion", x),
                ("audience", DEPLOY.to_owned()),
            ];
            if reference {
                form.push((
                    "requested_token_type",
                    "urn:ferry:params:oauth:token-type:reference_token".to_owned(),
                ));
            }
            let v: Value = http
                .post(format!("{url}/token"))
                .form(&form)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let introspect = |url: String, token: String| {
        let http = http.clone();
        async move {
            let v: Value = http
                .post(format!("{url}/introspect"))
                .basic_auth("gateway", Some("gw-secret"))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["active"] == json!(true)
        }
    };
    let (t, twin, handle) = (issue(false).await, issue(false).await, issue(true).await);
    // Issued at A, known at B (shared keys; the handle through PostgreSQL).
    assert!(introspect(b.url.clone(), t.clone()).await);
    assert!(introspect(b.url.clone(), handle.clone()).await);
    // Revoked at A's admin listener (these tokens belong to no authenticating client).
    let admin = a.admin.clone().unwrap();
    for token in [&t, &handle] {
        let r = http
            .post(format!("{admin}/revoke"))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    assert!(!introspect(b.url.clone(), t.clone()).await);
    assert!(!introspect(b.url.clone(), handle).await);
    assert!(
        introspect(b.url.clone(), twin).await,
        "the twin stays active"
    );
    // B's revocation list carries it too.
    let list = http
        .get(format!("{}/revocations", b.url))
        .basic_auth("relying", Some("rs-secret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jti = ferry_testkit::mint::payload(&t)["jti"].clone();
    assert!(
        ferry_testkit::mint::payload(&list)["revoked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["jti"] == jti)
    );
}
