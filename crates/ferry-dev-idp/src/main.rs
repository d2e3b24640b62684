//! `ferry-dev-idp`: a development identity provider for trying Ferry out.
//!
//! NOT FOR PRODUCTION. It mints any token you ask for, with any claims, to anyone who can
//! run it. It serves OIDC discovery and a JWKS on loopback, and keeps its RSA key in a
//! data directory so tokens keep verifying across restarts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ferry_testkit::{Issuer, TestKey};
use serde_json::{Map, Value, json};

const KEY_FILE: &str = "dev-idp-key.p8";
const ISSUER_FILE: &str = "issuer";
const JWKS_FILE: &str = "jwks.json";
const KID: &str = "dev-idp-1";

#[derive(Parser, Debug)]
#[command(
    name = "ferry-dev-idp",
    version,
    about = "A development identity provider for Ferry. NOT FOR PRODUCTION."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve discovery and the JWKS; writes `issuer` and `jwks.json` into the data
    /// directory (and `jwks.json` into `--publish-dir`, if given).
    Serve {
        /// Where the signing key and the published files live.
        #[arg(long, default_value = "dev-idp-data")]
        data_dir: PathBuf,
        /// Another directory that receives only the public `jwks.json`: share this one
        /// with Ferry, never the data directory (it holds the private key).
        #[arg(long)]
        publish_dir: Option<PathBuf>,
        /// Listen address (loopback only).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Mint a subject token and print it.
    Mint {
        /// The data directory of a `serve` run (its key and issuer are used).
        #[arg(long, default_value = "dev-idp-data")]
        data_dir: PathBuf,
        /// `iss`; defaults to the issuer of the last `serve`.
        #[arg(long)]
        issuer: Option<String>,
        /// `sub`
        #[arg(long)]
        sub: String,
        /// `aud`
        #[arg(long)]
        aud: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        ttl: i64,
        /// Extra claims, `name=value`; a value that parses as JSON is used as JSON.
        #[arg(long = "claim")]
        claims: Vec<String>,
    },
    /// Print the public JWKS.
    Jwks {
        /// The data directory.
        #[arg(long, default_value = "dev-idp-data")]
        data_dir: PathBuf,
    },
}

fn load_or_create_key(dir: &Path) -> anyhow::Result<TestKey> {
    let path = dir.join(KEY_FILE);
    if let Ok(der) = std::fs::read(&path) {
        return TestKey::from_pkcs8(KID, &der);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = TestKey::rsa(KID);
    std::fs::write(&path, key.pkcs8()).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(key)
}

fn now() -> i64 {
    ferry_testkit::now()
}

async fn serve(data_dir: &Path, publish_dir: Option<&Path>, listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        bail!("the development issuer only listens on loopback addresses");
    }
    let key = load_or_create_key(data_dir)?;
    let issuer = format!("http://{addr}");
    let jwks = ferry_testkit::keys::jwks(&[&key]);
    std::fs::write(data_dir.join(ISSUER_FILE), &issuer)?;
    std::fs::write(data_dir.join(JWKS_FILE), serde_json::to_vec_pretty(&jwks)?)?;
    if let Some(dir) = publish_dir {
        std::fs::write(dir.join(JWKS_FILE), serde_json::to_vec_pretty(&jwks)?)?;
    }
    eprintln!(
        "ferry-dev-idp: DEVELOPMENT ISSUER, NOT FOR PRODUCTION: it mints any token it is asked for"
    );
    println!("ferry-dev-idp listening on {issuer}");
    let app = ferry_testkit::idp::router(issuer, jwks);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn mint(
    data_dir: &Path,
    issuer: Option<String>,
    sub: &str,
    aud: &str,
    ttl: i64,
    claims: &[String],
) -> anyhow::Result<String> {
    let key_path = data_dir.join(KEY_FILE);
    let der = std::fs::read(&key_path).with_context(|| {
        format!(
            "no key at {}: run `ferry-dev-idp serve` first",
            key_path.display()
        )
    })?;
    let key = TestKey::from_pkcs8(KID, &der)?;
    let iss = match issuer {
        Some(i) => i,
        None => std::fs::read_to_string(data_dir.join(ISSUER_FILE))
            .context("no issuer recorded: pass --issuer or run `ferry-dev-idp serve` first")?,
    };
    let mut extra = Map::new();
    for c in claims {
        let (k, v) = c.split_once('=').context("claims are name=value")?;
        let v = serde_json::from_str::<Value>(v).unwrap_or_else(|_| json!(v));
        extra.insert(k.to_owned(), v);
    }
    extra.insert("exp".into(), json!(now() + ttl));
    let issuer = Issuer::new(iss.trim(), key);
    Ok(issuer.token(&issuer.claims(aud, sub, now(), Value::Object(extra))))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            data_dir,
            publish_dir,
            listen,
        } => serve(&data_dir, publish_dir.as_deref(), &listen).await,
        Command::Mint {
            data_dir,
            issuer,
            sub,
            aud,
            ttl,
            claims,
        } => {
            println!("{}", mint(&data_dir, issuer, &sub, &aud, ttl, &claims)?);
            Ok(())
        }
        Command::Jwks { data_dir } => {
            let key = load_or_create_key(&data_dir)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&ferry_testkit::keys::jwks(&[&key]))?
            );
            Ok(())
        }
    }
}
