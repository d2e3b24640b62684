//! `ferry keys`: inspect and operate the signing key ring. Commands act on the key store
//! directly; running servers pick the change up at their next ring poll (at most 10 s).

use ferry_core::config::Config;
use ferry_core::keyring::KeyState;

use ferry_keys::Replica;
use ferry_keys::manager::names;

use crate::load::{open_keys, replica_max_age};

/// `ferry keys list`: one line per key.
pub fn list(config: &Config, now: i64) -> Result<String, String> {
    let m = open_keys(config, now).map_err(|e| e.to_string())?;
    let snap = m.snapshot();
    let sealed: std::collections::HashMap<String, Option<String>> = m
        .sealed_under()
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
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
        let kek = match sealed.get(&k.kid) {
            Some(Some(fp)) => format!(", sealed under key-encryption key {fp}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{state:8} {} {} published {}s ago{}{}{kek}\n",
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
    let m = open_keys(config, now).map_err(|e| e.to_string())?;
    let kid = m.rotate(now).map_err(|e| e.to_string())?;
    Ok(format!(
        "rotated: {kid} now signs; the previous key stays published until its tokens expire"
    ))
}

/// `ferry keys revoke KID [--force]`: emergency revocation.
pub fn revoke(config: &Config, now: i64, kid: &str, force: bool) -> Result<String, String> {
    let m = open_keys(config, now).map_err(|e| e.to_string())?;
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
    let m = open_keys(config, now).map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&m.snapshot().jwks).map_err(|e| e.to_string())?;
    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())
}

/// `ferry keys rewrap [--force]`: re-seal every key with the first key-encryption key.
/// In a store shared by replicas, refused (unless forced) while a live replica (one
/// whose heartbeat is recent: see `replica_max_age`) does not hold that key: it could
/// no longer unseal the ring, so it would stop signing. A single node's directory keeps
/// no heartbeats: nothing to check.
pub fn rewrap(config: &Config, now: i64, force: bool) -> Result<String, String> {
    let m = open_keys(config, now).map_err(|e| e.to_string())?;
    let lacking = match (
        m.kek_ids().first(),
        m.live_replicas(replica_max_age(config)),
    ) {
        (Some(first), Ok(Some(live))) => {
            let lacking: Vec<Replica> = live
                .into_iter()
                .filter(|r| !r.keks.contains(first))
                .collect();
            (!lacking.is_empty()).then(|| (first.clone(), lacking))
        }
        (_, Ok(None)) | (None, _) => None,
        (_, Err(e)) if force => {
            eprintln!("warning: the replicas' key-encryption keys could not be read: {e}");
            None
        }
        (_, Err(e)) => {
            return Err(format!(
                "the replicas' key-encryption keys could not be read ({e}); pass --force to re-seal without checking"
            ));
        }
    };
    let mut out = String::new();
    if let Some((first, lacking)) = lacking {
        let what = format!(
            "{} live replica(s) do not hold the first key-encryption key {first}: {}",
            lacking.len(),
            names(&lacking)
        );
        if !force {
            return Err(format!(
                "refusing to re-seal: {what}. After the rewrap they could not sign. Add the key to every replica \
                 (as a second key, then first) and reload them, or pass --force"
            ));
        }
        out.push_str(&format!(
            "warning: {what}; re-sealing anyway (--force): they stop signing until they hold it\n"
        ));
    }
    let n = m.rewrap().map_err(|e| e.to_string())?;
    out.push_str(&format!(
        "re-sealed {n} key(s) with the first key-encryption key"
    ));
    Ok(out)
}
