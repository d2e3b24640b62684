//! `ferry check`'s look at the signing key ring. When this machine can read both the
//! key-encryption keys and the key store, the ring is inspected read-only (no schema
//! migration, no write) against the configured KEKs and the live replicas' heartbeats
//! (see `KekReport`): a configuration whose KEKs cannot unseal the active key (it would
//! not sign) or any key at all is an error; one that drops a KEK still sealing keys of
//! the ring, or seals new keys with a KEK some live replica lacks, gets a warning.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::config::Config;
use ferry_keys::{KekReport, KeyStore, LocalStore, Material, PgStore};

use crate::load::{read_keks, read_secret, replica_max_age};

/// One finding.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    /// The configuration must not be deployed as it is.
    Error(String),
    /// An unsafe order of a key-encryption key rollout.
    Warning(String),
    /// What could not be checked here, and why.
    Note(String),
}

fn open_store(config: &Config) -> Result<Option<Arc<dyn KeyStore>>, String> {
    let s = &config.signing;
    match &s.postgres {
        Some(pg) => {
            let Some(url) = read_secret(&pg.url).map_err(|e| e.to_string())? else {
                return Err("the PostgreSQL connection string is not set here".into());
            };
            let store = PgStore::connect(
                &url,
                Duration::from_millis(pg.timeout_ms),
                pg.ca_file.as_deref(),
            )
            .map_err(|e| e.to_string())?;
            Ok(Some(Arc::new(store)))
        }
        // No ring yet: the first start creates it with these KEKs.
        None if !s.keys_dir.join("ring.json").exists() => Ok(None),
        None => Ok(Some(Arc::new(
            LocalStore::open(&s.keys_dir).map_err(|e| e.to_string())?,
        ))),
    }
}

/// The findings for `config`'s key-encryption keys and key ring.
pub fn inspect(config: &Config) -> Vec<Finding> {
    let s = &config.signing;
    if s.hsm.is_some() {
        return Vec::new();
    }
    let skipped = |why: String| {
        vec![Finding::Note(format!(
            "the key ring was not checked against the key-encryption keys: {why}"
        ))]
    };
    let keks = match read_keks(config) {
        Ok(k) => k,
        Err(e) => return skipped(e.to_string()),
    };
    let store = match open_store(config) {
        Ok(Some(store)) => store,
        Ok(None) => return Vec::new(),
        Err(e) => return skipped(e.to_string()),
    };
    let ring = match store.load() {
        Ok(r) => r,
        Err(e) => return skipped(e.to_string()),
    };
    let mut out = Vec::new();
    let replicas = store
        .live_replicas(replica_max_age(config))
        .unwrap_or_else(|e| {
            out.push(Finding::Note(format!(
                "the replicas' key-encryption keys could not be read: {e}"
            )));
            None
        });
    let report = KekReport::inspect(&ring, &keks.ids(), replicas);
    let sealed = ring
        .keys
        .iter()
        .filter(|k| matches!(k.material, Material::Encrypted { .. }))
        .count();
    if sealed > 0 && report.unsealable.len() == sealed {
        out.push(Finding::Error(
            "the configured key-encryption keys open none of the key ring's keys: the key is wrong or missing".into(),
        ));
        return out;
    }
    let cannot_sign = report.cannot_sign();
    for (i, w) in report.warnings().into_iter().enumerate() {
        // The active key's line comes first when there is one.
        out.push(if cannot_sign && i == 0 {
            Finding::Error(w)
        } else {
            Finding::Warning(w)
        });
    }
    out
}
