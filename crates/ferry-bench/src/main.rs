//! `ferry-bench`: the helpers `scripts/bench.sh` drives. Loopback only.
//!
//! - `setup`: the fixture (configuration, JWKS, a pool of request bodies).
//! - `floor`: the cryptographic floor on this core (jsonwebtoken RS256 verify + ES256 sign).
//! - `load`: a fixed-rate (open-loop) load generator; latency is measured from each
//!   request's scheduled send time, so a stalled server cannot hide its queue
//!   (coordinated omission). It busy-polls, like `max` (`spin.rs`).
//! - `max`: a closed-loop generator that busy-polls its sockets instead of sleeping
//!   (see `spin.rs` for why the maximum throughput is also measured this way).
//! - `stampede`: a mock OIDC issuer counting its fetches, and 100 concurrent exchanges
//!   against a Ferry that has never fetched its keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::indexing_slicing,
    clippy::too_many_lines,
    clippy::disallowed_methods,
    reason = "benchmark tooling, never shipped: it measures real time, and a panic is a failed run"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod spin;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ferry_bench::{DEPLOY, FERRY, Fixture, SCOPE, form};
use ferry_core::{Clock, SystemClock};

#[derive(Parser)]
#[command(about = "Benchmark helpers for scripts/bench.sh (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes ferry.yaml, jwks.json and bodies.txt (one form body per line) into DIR.
    Setup {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10)]
        providers: usize,
        #[arg(long, default_value_t = 2000)]
        tokens: usize,
    },
    /// Measures the floor for SECS seconds on the current core.
    Floor {
        #[arg(long, default_value_t = 3)]
        secs: u64,
    },
    /// Sends RATE requests per second for SECS seconds to URL/token.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long)]
        bodies: PathBuf,
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Connections (requests in flight at most).
        #[arg(long, default_value_t = 64)]
        conns: usize,
    },
    /// Sends requests on CONNS connections as fast as the server answers, for SECS
    /// seconds, busy-polling (run it on a core of its own).
    Max {
        #[arg(long)]
        url: String,
        #[arg(long)]
        bodies: PathBuf,
        #[arg(long, default_value_t = 32)]
        conns: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Counts an issuer's fetches under 100 concurrent exchanges of a fresh Ferry.
    Stampede {
        #[arg(long)]
        ferry: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup {
            dir,
            providers,
            tokens,
        } => {
            let fx = Fixture::new();
            fx.write_at_default_limits(&dir, providers);
            let bodies: Vec<String> = fx
                .tokens(providers, tokens, SystemClock.now())
                .iter()
                .map(|t| form(t))
                .collect();
            std::fs::write(dir.join("bodies.txt"), bodies.join("\n") + "\n")?;
            println!(
                "{} providers, {} request bodies in {}",
                providers,
                tokens,
                dir.display()
            );
        }
        Cmd::Floor { secs } => floor(secs),
        Cmd::Load {
            url,
            bodies,
            rate,
            secs,
            conns,
        } => spin::fixed(&url, &std::fs::read_to_string(bodies)?, rate, secs, conns)?,
        Cmd::Max {
            url,
            bodies,
            conns,
            secs,
        } => spin::run(&url, &std::fs::read_to_string(bodies)?, conns, secs)?,
        Cmd::Stampede { ferry, dir } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(stampede(ferry, dir))?;
        }
    }
    Ok(())
}

fn floor(secs: u64) {
    let floor = ferry_bench::Floor::new(&Fixture::new(), SystemClock.now());
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..100 {
            std::hint::black_box((floor.verify(), floor.sign()));
        }
        n += 100;
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("floor_us={us:.1} floor_per_s={:.0}", 1e6 / us);
}

/// Ferry's URL from its `ferry listening on URL` log line; the rest of its log is
/// drained in the background so that Ferry never blocks on a full pipe.
fn listening_url(stderr: std::process::ChildStderr) -> anyhow::Result<String> {
    use std::io::BufRead as _;
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some((_, rest)) = line.split_once("ferry listening on ") {
            let url = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(url);
        }
    }
    anyhow::bail!("ferry exited before it listened")
}

async fn stampede(ferry: PathBuf, dir: PathBuf) -> anyhow::Result<()> {
    use axum::routing::get;
    std::fs::create_dir_all(&dir)?;
    let key = ferry_testkit::TestKey::rsa("cold");
    let jwks = ferry_testkit::keys::jwks(&[&key]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let (disc, keys) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let app = {
        let (disc, keys, issuer2, jwks) =
            (disc.clone(), keys.clone(), issuer.clone(), jwks.clone());
        axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let (disc, issuer) = (disc.clone(), issuer2.clone());
                    async move {
                        disc.fetch_add(1, Ordering::SeqCst);
                        // A slow issuer: the stampede arrives while the fetch is out.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        axum::Json(serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
                    }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    let (keys, jwks) = (keys.clone(), jwks.clone());
                    async move {
                        keys.fetch_add(1, Ordering::SeqCst);
                        axum::Json(jwks)
                    }
                }),
            )
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Ferry binds port 0 and says where (its configuration names no address of its own).
    std::fs::write(
        dir.join("ferry.yaml"),
        format!(
            "issuer: {FERRY}\ndata_dir: data\nlisten: 127.0.0.1:0\n\
             limits: {{ rate_per_source: 1000000, rate_global: 1000000, rate_per_provider: 1000000, shutdown_delay: 0s }}\n\
             outbound: {{ allow_insecure_origins: [\"{issuer}\"] }}\n\
             providers:\n  - id: cold\n    kind: oidc\n    issuer: {issuer}\n    audiences: [{FERRY}]\n    algorithms: [RS256]\n\
             audiences:\n  - audience: {DEPLOY}\n    rules:\n      - allow: \"true\"\n        scopes: [{SCOPE}]\n"
        ),
    )?;
    let mut child = std::process::Command::new(&ferry)
        .args(["serve", "--config"])
        .arg(dir.join("ferry.yaml"))
        .env("FERRY_ADMIN_LISTEN", "off")
        .env("FERRY_KEK", "dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("ferry's stderr")?;
    let url = tokio::task::spawn_blocking(move || listening_url(stderr)).await??;
    let http = reqwest::Client::new();
    let up = Instant::now();
    while http.get(format!("{url}/healthz")).send().await.is_err() {
        anyhow::ensure!(
            up.elapsed() < Duration::from_secs(20),
            "ferry did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let signer = ferry_testkit::Issuer::new(issuer.clone(), key);
    let now = SystemClock.now();
    let reqs: Vec<_> = (0..100)
        .map(|n| {
            let body = form(
                &signer.token(&serde_json::json!({"iss": issuer, "sub": format!("w{n}"),
                "aud": FERRY, "iat": now, "nbf": now, "exp": now + 600})),
            );
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                http.post(format!("{url}/token"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let mut ok = 0;
    for r in reqs {
        if r.await? == 200 {
            ok += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "stampede: 100 concurrent exchanges, {ok} ok; issuer fetches: discovery={} jwks={}",
        disc.load(Ordering::SeqCst),
        keys.load(Ordering::SeqCst)
    );
    Ok(())
}
