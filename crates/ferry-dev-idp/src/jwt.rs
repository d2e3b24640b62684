//! The OIDC side: an RSA key kept in the data directory, its JWKS, and JWTs minted
//! with any claims asked for.

use std::path::Path;

use anyhow::Context;
use ferry_testkit::{Issuer, TestKey};
use serde_json::{Map, Value, json};

use crate::files;

const KEY_FILE: &str = "dev-idp-key.p8";
pub use crate::files::ISSUER_FILE;
/// The public JWKS.
pub const JWKS_FILE: &str = "jwks.json";
const KID: &str = "dev-idp-1";

/// The RSA key in `dir`, created (with `dir`) on first use.
pub fn load_or_create_key(dir: &Path) -> anyhow::Result<TestKey> {
    let path = dir.join(KEY_FILE);
    if let Ok(der) = std::fs::read(&path) {
        return TestKey::from_pkcs8(KID, &der);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = TestKey::rsa(KID);
    files::write_private(&path, key.pkcs8())?;
    Ok(key)
}

/// The public JWKS of `key`.
pub fn jwks(key: &TestKey) -> Value {
    ferry_testkit::keys::jwks(&[key])
}

/// What `mint` puts in a JWT.
#[derive(Debug)]
pub struct MintJwt<'a> {
    pub issuer: Option<String>,
    pub sub: &'a str,
    pub aud: &'a str,
    pub ttl: i64,
    pub claims: &'a [String],
}

/// A JWT signed with the stored key.
pub fn mint(data_dir: &Path, m: &MintJwt<'_>) -> anyhow::Result<String> {
    let key_path = data_dir.join(KEY_FILE);
    let der = std::fs::read(&key_path).with_context(|| {
        format!(
            "no key at {}: run `ferry-dev-idp serve` first",
            key_path.display()
        )
    })?;
    let key = TestKey::from_pkcs8(KID, &der)?;
    let iss = match &m.issuer {
        Some(i) => i.clone(),
        None => files::recorded_issuer(data_dir)?,
    };
    let now = ferry_testkit::now();
    let mut extra = Map::new();
    for c in m.claims {
        let (k, v) = c.split_once('=').context("claims are name=value")?;
        let v = serde_json::from_str::<Value>(v).unwrap_or_else(|_| json!(v));
        extra.insert(k.to_owned(), v);
    }
    extra.insert("exp".into(), json!(now + m.ttl));
    let issuer = Issuer::new(iss.trim(), key);
    Ok(issuer.token(&issuer.claims(m.aud, m.sub, now, Value::Object(extra))))
}
