//! `ferry keys`: inspect and operate the signing key ring. Commands act on the key store
//! directly; running servers pick the change up at their next ring poll (at most 10 s).

use ferry_core::config::Config;
use ferry_core::keyring::KeyState;

use crate::load::open_keys;

/// `ferry keys list`: one line per key.
pub fn list(config: &Config, now: i64) -> Result<String, String> {
    let m = open_keys(config, now)?;
    let snap = m.snapshot();
    let mut out = format!(
        "key ring version {} ({} keys)\n",
        snap.version,
        snap.keys.len()
    );
    for k in &snap.keys {
        let state = match k.state {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        };
        out.push_str(&format!(
            "{state:8} {} {} published {}s ago{}{}\n",
            k.kid,
            k.alg,
            now - k.published_at,
            k.activated_at
                .map(|a| format!(", active since {}s", now - a))
                .unwrap_or_default(),
            k.retired_at
                .map(|r| format!(", retired {}s ago", now - r))
                .unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// `ferry keys rotate`: orderly rotation respecting the publication margin.
pub fn rotate(config: &Config, now: i64) -> Result<String, String> {
    let m = open_keys(config, now)?;
    let kid = m.rotate(now).map_err(|e| e.to_string())?;
    Ok(format!(
        "rotated: {kid} now signs; the previous key stays published until its tokens expire"
    ))
}

/// `ferry keys revoke KID [--force]`: emergency revocation.
pub fn revoke(config: &Config, now: i64, kid: &str, force: bool) -> Result<String, String> {
    let m = open_keys(config, now)?;
    m.revoke(kid, now, force).map_err(|e| e.to_string())?;
    Ok(format!(
        "revoked {kid}: it left /jwks; {} signs. Relying services that cached the old JWKS accept the \
         revoked key until their cache expires (at most jwks_max_age = {}s).",
        m.active().kid(),
        config.signing.jwks_max_age
    ))
}

/// `ferry keys export-public`: the JWKS relying services would fetch.
pub fn export_public(config: &Config, now: i64) -> Result<String, String> {
    let m = open_keys(config, now)?;
    let v: serde_json::Value =
        serde_json::from_str(&m.snapshot().jwks).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

/// `ferry keys rewrap`: re-seal every key with the first key-encryption key.
pub fn rewrap(config: &Config, now: i64) -> Result<String, String> {
    let m = open_keys(config, now)?;
    let n = m.rewrap().map_err(|e| e.to_string())?;
    Ok(format!(
        "re-sealed {n} key(s) with the first key-encryption key"
    ))
}
