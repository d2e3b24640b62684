//! The shared replay cache: two Ferry replicas and a Redis server started here on
//! loopback. An assertion used at one replica is refused at the other; without Redis,
//! assertions are refused (`503`) unless the configuration fails open; when Redis comes
//! back, checks resume.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, TestKey, daemon_port, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Proc, TempDir, builder_trust, replica_dir};

const ISS: &str = "https://ferry.example.com";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const DEPLOY: &str = "https://deploy.example.com";

static JTI: AtomicU64 = AtomicU64::new(0);

/// `redis-server` on loopback holding the epoch marker of a deployment that has used it
/// for long (a marker from 1970): Ferry joins its epoch and counts no loss. Used by the
/// tests that are not about losses.
pub(crate) fn redis(port: u16) -> Proc {
    let p = redis_empty(port);
    assert_eq!(
        redis_cmd(port, &["SET", "ferry:replay:epoch", "seed:0"]),
        "+OK"
    );
    p
}

/// One Redis command over a fresh connection; the first line of the reply.
pub(crate) fn redis_cmd(port: u16, args: &[&str]) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// `redis-server` on loopback, empty, no persistence (a restart loses everything);
/// installed by scripts/install-test-deps.sh.
pub(crate) fn redis_empty(port: u16) -> Proc {
    redis_with(port, &["--save", "", "--appendonly", "no"])
}

/// `redis-server` on loopback with these extra arguments.
pub(crate) fn redis_with(port: u16, extra: &[&str]) -> Proc {
    try_redis_with(port, extra).unwrap()
}

fn try_redis_with(port: u16, extra: &[&str]) -> anyhow::Result<Proc> {
    let mut p = Proc::spawn(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(extra),
    )
    .expect("redis-server (scripts/install-test-deps.sh installs it)");
    p.wait_for("Ready to accept connections")?;
    Ok(p)
}

/// [`redis_with`] on a port no other process holds, and that port. redis-server cannot
/// listen on port 0 and say where: a random port is tried (`daemon_port`), and another
/// one when Redis finds it taken.
pub(crate) fn redis_anywhere_with(extra: &[&str]) -> (u16, Proc) {
    for _ in 0..20 {
        let port = daemon_port();
        match try_redis_with(port, extra) {
            Ok(p) => return (port, p),
            Err(e) if format!("{e:#}").contains("already in use") => continue,
            Err(e) => panic!("redis-server did not start: {e:#}"),
        }
    }
    panic!("redis-server found no free port in 20 tries")
}

/// [`redis_empty`] on a port of its own ([`redis_anywhere_with`]).
pub(crate) fn redis_empty_anywhere() -> (u16, Proc) {
    redis_anywhere_with(&["--save", "", "--appendonly", "no"])
}

/// [`redis`] on a port of its own ([`redis_anywhere_with`]).
pub(crate) fn redis_anywhere() -> (u16, Proc) {
    let (port, p) = redis_empty_anywhere();
    assert_eq!(
        redis_cmd(port, &["SET", "ferry:replay:epoch", "seed:0"]),
        "+OK"
    );
    (port, p)
}

fn replica(dir: &Path, name: &str, redis_port: u16, fail_open: bool) -> Ferry {
    let d = replica_dir(dir, name);
    let trust = builder_trust(DEPLOY);
    let cfg = d.join("ferry.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
issuer: {ISS}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}
replay: {{ redis: "redis://127.0.0.1:{redis_port}", fail_open: {fail_open}, timeout: 1s }}
{trust}"#
        ),
    )
    .unwrap();
    Ferry::start(&cfg).unwrap()
}

fn assertion(signer: &Issuer) -> String {
    let t = now();
    signer.token(
        &json!({"iss": signer.iss, "sub": signer.iss, "aud": ISS, "iat": t, "exp": t + 300,
        "jti": format!("r-{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::SeqCst))}),
    )
}

async fn grant(ferry: &Ferry, assertion: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/token", ferry.url))
        .form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion),
            ("audience", DEPLOY),
        ])
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn replicas_share_replay_state_through_redis_and_fail_closed_without_it() {
    let tmp = TempDir::new("replay");
    let builder = Issuer::new("builder", TestKey::ec("b1"));
    std::fs::write(
        tmp.path().join("builder.json"),
        jwks(&[&builder.key]).to_string(),
    )
    .unwrap();
    let (port, first) = redis_anywhere();
    let mut server = Some(first);
    let a = replica(tmp.path(), "a", port, false);
    let b = replica(tmp.path(), "b", port, false);
    let open = replica(tmp.path(), "open", port, true);

    // Used at A, refused at B (and at A again); a fresh one works at B (the twin).
    let x = assertion(&builder);
    let (s, body) = grant(&a, &x).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = grant(&b, &x).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(grant(&a, &x).await.0, 400);
    assert_eq!(grant(&b, &assertion(&builder)).await.0, 200);
    // The Redis key names neither the issuer nor the jti.
    assert!(!a.proc().output().contains(&x));

    // Redis gone: fail closed by default, with a fixed error and a counted failure…
    drop(server.take());
    let (s, body) = grant(&a, &assertion(&builder)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    // …and accepted where the configuration says fail_open (twin).
    assert_eq!(grant(&open, &assertion(&builder)).await.0, 200);
    let admin = a.admin.clone().unwrap();
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ferry_replay_backend_errors_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(errors >= 1, "{metrics}");
    assert!(
        a.proc()
            .output()
            .contains("replay cache (Redis) unreachable: refusing the assertion")
    );

    // Redis back (with the deployment's state): the replicas reconnect and share state
    // again. (Redis back empty: tests/blackbox/replay_loss.rs.)
    let _server = redis(port);
    let y = assertion(&builder);
    assert_eq!(grant(&b, &y).await.0, 200);
    assert_eq!(grant(&a, &y).await.0, 400);
}

/// The shares of the shared cache: one account filling its share at one replica cannot
/// lock another account out at the other (the same rule as in process).
#[tokio::test]
async fn replicas_keep_each_accounts_share_through_redis() {
    let tmp = TempDir::new("replay-share");
    let builder = Issuer::new("builder", TestKey::ec("b1"));
    let other = Issuer::new("other", TestKey::ec("o1"));
    // A Redis that persists, as production's must (the other tests' do not).
    let aof = tmp.path().join("redis");
    std::fs::create_dir_all(&aof).unwrap();
    let (port, _server) = redis_anywhere_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--dir",
        aof.to_str().unwrap(),
    ]);
    assert_eq!(
        redis_cmd(port, &["SET", "ferry:replay:epoch", "seed:0"]),
        "+OK"
    );
    let start = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (file, key) in [("builder.json", &builder.key), ("other.json", &other.key)] {
            std::fs::write(d.join(file), jwks(&[key]).to_string()).unwrap();
        }
        let cfg = d.join("ferry.yaml");
        std::fs::write(
            &cfg,
            format!(
                r#"
issuer: {ISS}
data_dir: data
limits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000, max_replay_entries_per_principal: 2 }}
replay: {{ redis: "redis://127.0.0.1:{port}", timeout: 1s }}
service_accounts:
  - {{ id: builder, jwks: {{ file: builder.json }} }}
  - {{ id: other, jwks: {{ file: other.json }} }}
providers:
  - id: sa
    kind: service_account
audiences:
  - audience: {DEPLOY}
    rules:
      - allow: provider == 'service-account'
"#
            ),
        )
        .unwrap();
        Ferry::start(&cfg).unwrap()
    };
    let (a, b) = (start("a"), start("b"));
    assert_eq!(grant(&a, &assertion(&builder)).await.0, 200);
    assert_eq!(grant(&b, &assertion(&builder)).await.0, 200);
    // The third live assertion of the same account is refused at either replica, as
    // a full share (503), not as a replay…
    for r in [&a, &b] {
        let (s, body) = grant(r, &assertion(&builder)).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
    }
    // …while the other account's are accepted (twin), and replays are still replays.
    let y = assertion(&other);
    assert_eq!(grant(&a, &y).await.0, 200);
    assert_eq!(grant(&b, &assertion(&other)).await.0, 200);
    assert_eq!(grant(&b, &y).await.0, 400);
    // Persisting and never evicting (Redis' default policy), it draws no warning (twins
    // of replay_loss' Redis without persistence and with an evicting policy).
    for r in [&a, &b] {
        assert!(!r.proc().output().contains("Redis does not persist"));
        assert!(
            !r.proc()
                .output()
                .contains("Redis may evict live replay ids")
        );
    }
}
