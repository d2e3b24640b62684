//! Rolling restarts and this replica's own health, through the real binary: SIGTERM
//! fails readiness at once while requests are still served for `limits.shutdown_delay`
//! (with `Connection: close`), then the listener closes and the process exits 0 (and
//! with a delay of 0 it closes at once); a data directory that stops taking writes
//! fails readiness within a probe interval and recovers; a warning every request
//! causes (a 503 for an unavailable issuer, a shortened token lifetime) is logged once
//! per interval with a count.

use std::path::Path;
use std::time::Duration;

use ferry_testkit::keys::jwks;
use ferry_testkit::{Issuer, MockIdp, TestKey, now};
use serde_json::{Value, json};

use crate::harness::{Ferry, Setup};

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const FERRY: &str = "https://ferry.example.com";
const DEPLOY: &str = "https://deploy.example.com";

/// A Ferry configuration trusting `idp` with these `limits`, not started yet.
struct Env {
    setup: Setup,
    idp: Issuer,
}

fn setup(tag: &str, limits: &str) -> Env {
    let setup = Setup::new(tag);
    let idp = Issuer::new("https://idp.example.com", TestKey::rsa("k1"));
    setup.jwks("idp.json", &[&idp.key]);
    setup.config(&format!(
            "issuer: {FERRY}\ndata_dir: data\nlimits: {{ {limits} }}\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [{FERRY}]\n    jwks: {{ file: idp.json }}\naudiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n"
        ));
    Env { setup, idp }
}

impl Env {
    fn token(&self) -> String {
        self.idp
            .token(&self.idp.claims(FERRY, "svc", now(), json!({})))
    }
}

async fn exchange(url: &str, token: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("audience", DEPLOY),
        ])
        .send()
        .await
}

async fn ready(url: &str) -> reqwest::Result<(u16, Value)> {
    let r = reqwest::get(format!("{url}/readyz")).await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn sigterm(ferry: &Ferry) {
    let pid = ferry.proc().pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Waits (bounded) until a new connection to `url` is refused.
async fn refused(url: &str) -> bool {
    for _ in 0..200 {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        match http.get(format!("{url}/healthz")).send().await {
            Err(e) if e.is_connect() => return true,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}

/// The text without ANSI colour sequences (the human log format may colour fields).
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn exit_status(mut ferry: Ferry) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || ferry.proc_mut().wait_exit(30).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn sigterm_fails_readiness_and_keeps_serving_for_the_shutdown_delay() {
    let mut s = setup("rollout-delay", "shutdown_delay: 2s");
    let ferry = s.setup.run_alone();
    let admin = ferry.admin.clone().unwrap();
    assert_eq!(ready(&ferry.url).await.unwrap().0, 200);
    let r = exchange(&ferry.url, &s.token()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("connection").is_none(), "keep-alive before");

    sigterm(&ferry);
    // Readiness fails at once (public: the status only; admin: the details)...
    let mut public = (200, Value::Null);
    for _ in 0..100 {
        public = ready(&ferry.url).await.unwrap();
        if public.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(public, (503, json!({"status": "shutting down"})));
    // ...while a token request routed here meanwhile still succeeds, told to reconnect.
    let r = exchange(&ferry.url, &s.token()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["connection"], "close");
    let (status, details) = ready(&admin).await.unwrap();
    assert_eq!((status, &details["shutting_down"]), (503, &json!(true)));

    // After the delay: the listener is closed, and the process exits 0.
    assert!(
        refused(&ferry.url).await,
        "connections refused after the delay"
    );
    let out = ferry.proc().output();
    assert!(
        out.contains("still serving for limits.shutdown_delay"),
        "{out}"
    );
    assert!(exit_status(ferry).await.success(), "exit 0");
}

#[tokio::test]
async fn with_no_shutdown_delay_sigterm_stops_accepting_at_once() {
    // Twin of the test above, differing only in the delay.
    let mut s = setup("rollout-nodelay", "shutdown_delay: 0s");
    let ferry = s.setup.run_alone();
    assert_eq!(ready(&ferry.url).await.unwrap().0, 200);
    sigterm(&ferry);
    assert!(refused(&ferry.url).await, "connections refused");
    let out = ferry.proc().output();
    assert!(!out.contains("still serving"), "{out}");
    assert!(out.contains("no longer accepting"), "{out}");
    assert!(exit_status(ferry).await.success(), "exit 0");
}

/// Makes `data` refuse the write probe. As root, permissions do not stop writes, so a
/// directory is put where the probe writes its file (which no user can open for writing).
fn block_writes(data: &Path) -> &'static str {
    let mut perms = std::fs::metadata(data).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o500);
    std::fs::set_permissions(data, perms).unwrap();
    if std::fs::write(data.join("root-check"), b"x").is_ok() {
        let _ = std::fs::remove_file(data.join("root-check"));
        restore_writes(data);
        // Ferry's probe may hold its file there this instant (it creates and removes it
        // every few seconds): take the place once the file is gone.
        let probe = data.join(".ferry-write-probe");
        let mut tries = 0;
        while let Err(e) = std::fs::create_dir(&probe) {
            assert!(
                tries < 500 && e.kind() == std::io::ErrorKind::AlreadyExists,
                "{e}"
            );
            let _ = std::fs::remove_file(&probe);
            std::thread::sleep(std::time::Duration::from_millis(10));
            tries += 1;
        }
        "a directory in the probe file's place (running as root: permissions do not apply)"
    } else {
        "chmod 0500"
    }
}

fn restore_writes(data: &Path) {
    let mut perms = std::fs::metadata(data).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(data, perms).unwrap();
    let _ = std::fs::remove_dir(data.join(".ferry-write-probe"));
}

async fn wait_ready(url: &str, status: u16) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        let (s, body) = ready(url).await.unwrap();
        if s == status {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readiness never became {status}: {last}");
}

async fn metrics(admin: &str) -> String {
    reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_data_directory_that_stops_taking_writes_fails_readiness_until_it_recovers() {
    let s = setup("rollout-datadir", "shutdown_delay: 0s");
    let ferry = s.setup.run();
    let admin = ferry.admin.clone().unwrap();
    let data = s.setup.path().join("data");
    let body = wait_ready(&admin, 200).await;
    assert_eq!(body["data_dir"], "ok");
    assert!(metrics(&admin).await.contains("ferry_data_dir_writable 1"));

    let how = block_writes(&data);
    let body = wait_ready(&admin, 503).await;
    assert_eq!(body["status"], "data directory not writable", "{how}");
    assert!(
        body["data_dir"]
            .as_str()
            .is_some_and(|d| d.starts_with("not writable")),
        "{body}"
    );
    assert_eq!(
        ready(&ferry.url).await.unwrap(),
        (503, json!({"status": "data directory not writable"}))
    );
    let m = metrics(&admin).await;
    assert!(m.contains("ferry_data_dir_writable 0"), "{m}");
    assert!(!m.contains("ferry_data_dir_probe_failures_total 0"), "{m}");
    assert!(
        ferry
            .proc()
            .output()
            .contains("data directory not writable")
    );

    // Twin: writable again, readiness returns.
    restore_writes(&data);
    wait_ready(&ferry.url, 200).await;
    assert_eq!(ready(&admin).await.unwrap().1["data_dir"], "ok");
    assert!(metrics(&admin).await.contains("ferry_data_dir_writable 1"));
}

#[tokio::test]
async fn a_503_every_request_gets_is_logged_once_per_interval_with_a_count() {
    // An issuer that is down and whose keys were never fetched: every exchange is 503.
    let key = TestKey::rsa("k1");
    let idp = MockIdp::start(jwks(&[&key])).await.unwrap();
    idp.refuse_connections().await;
    let issuer = Issuer::new(idp.url.clone(), key);
    let setup = Setup::new("rollout-warn");
    let ferry = setup.start(&format!(
            "issuer: {FERRY}\ndata_dir: data\nlimits: {{ rate_per_source: 100000, rate_global: 100000 }}\noutbound: {{ allow_insecure_origins: [\"{u}\"] }}\nproviders:\n  - id: idp\n    kind: oidc\n    issuer: {u}\n    audiences: [{FERRY}]\n    cache: {{ error_ttl: 1h }}\naudiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n",
            u = idp.url
        ));
    let token = issuer.token(&issuer.claims(FERRY, "svc", now(), json!({})));
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let r = exchange(&ferry.url, &token).await.unwrap();
        assert_eq!(r.status().as_u16(), 503);
    }
    let took = started.elapsed();
    let out = plain(&ferry.proc().output());
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("requests answered 503"))
        .collect();
    // One line per 10 s interval at most (the first at once), never one per request.
    let most = 1 + took.as_secs() / 10;
    assert!(
        !lines.is_empty() && lines.len() as u64 <= most,
        "{} lines in {took:?}:\n{out}",
        lines.len()
    );
    assert!(lines[0].contains("repeated=1"), "{}", lines[0]);
    // These 503s are not load shedding, and are not reported as such.
    assert!(!out.contains("requests shed"), "{out}");
}

#[tokio::test]
async fn many_shortened_lifetimes_make_one_log_line_with_a_count() {
    // Rotation every 2 s and 60 s tokens: once the key store is unreachable for a few
    // seconds past the scheduled rotation, every token is shortened (README, "PostgreSQL
    // unreachable from one replica past the scheduled rotation"; a broken ring file
    // stands for the unreachable store).
    let setup = Setup::new("rollout-shortened");
    let idp = Issuer::new("https://idp.example.com", TestKey::rsa("k1"));
    setup.jwks("idp.json", &[&idp.key]);
    let ferry = setup.start(&format!(
            "issuer: {FERRY}\ndata_dir: data\ntokens: {{ default_ttl: 60s, max_ttl: 60s, min_ttl: 1s }}\nsigning: {{ jwks_max_age: 1s, leeway: 0s, rotation_period: 2s }}\nlimits: {{ rate_per_source: 100000, rate_global: 100000, rate_per_provider: 100000 }}\nproviders:\n  - id: idp\n    issuer: https://idp.example.com\n    audiences: [{FERRY}]\n    jwks: {{ file: idp.json }}\naudiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n"
        ));
    let token = || idp.token(&idp.claims(FERRY, "svc", now(), json!({})));
    let lifetime = |r: Value| r["expires_in"].as_u64().unwrap();
    // Twin: with the store reachable, the full lifetime and no such line.
    let r = exchange(&ferry.url, &token()).await.unwrap();
    assert_eq!(lifetime(r.json().await.unwrap()), 60);

    std::fs::write(setup.path().join("data/ring.json"), "not json").unwrap();
    let mut shortened = false;
    for _ in 0..100 {
        let r = exchange(&ferry.url, &token()).await.unwrap();
        if lifetime(r.json().await.unwrap()) < 60 {
            shortened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shortened, "{}", ferry.proc().output());
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let r = exchange(&ferry.url, &token()).await.unwrap();
        assert!(lifetime(r.json().await.unwrap()) < 60);
    }
    let took = started.elapsed();
    let out = plain(&ferry.proc().output());
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("token lifetime shortened"))
        .collect();
    // 41 shortened tokens, one line per 10 s interval at most, not one per token.
    let most = 2 + took.as_secs() / 10;
    assert!(
        !lines.is_empty() && lines.len() as u64 <= most,
        "{} lines in {took:?}:\n{out}",
        lines.len()
    );
    assert!(lines[0].contains("repeated=1"), "{}", lines[0]);
}

#[tokio::test]
async fn a_second_sigterm_skips_the_rest_of_the_delay() {
    // A five-minute delay, cut short by a second signal (an operator's second Ctrl-C).
    let mut s = setup("rollout-twice", "shutdown_delay: 5m");
    let mut ferry = s.setup.run_alone();
    sigterm(&ferry);
    ferry
        .proc_mut()
        .wait_for("still serving for limits.shutdown_delay")
        .unwrap();
    assert_eq!(ready(&ferry.url).await.unwrap().0, 503, "draining");
    sigterm(&ferry);
    assert!(refused(&ferry.url).await, "connections refused");
    assert!(exit_status(ferry).await.success(), "exit 0");
}
