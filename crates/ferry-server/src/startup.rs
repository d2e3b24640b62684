//! The steps of `ferry serve` before anything is served: trusted providers, the signing
//! key ring, the audit sink, the revocation state.

use std::sync::Arc;

use anyhow::Context as _;
use ferry_core::config::{AuditSinkConfig, Config};
use ferry_core::{Clock, SystemClock};
use ferry_keys::KeyManager;
use ferry_verify::time::SystemMono;

use crate::audit::AuditSink;
use crate::load::{load_providers, open_keys};
use crate::state::AppState;
use crate::state::TrustedProvider;

/// The trusted providers (their key sources ready), with their warnings logged.
pub fn load_trusted(config: &Config) -> anyhow::Result<Vec<TrustedProvider>> {
    let (providers, warnings) = load_providers(config, Arc::new(SystemMono::default()))
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(providers)
}

/// Opens the signing key ring and says which key signs.
pub fn open_signing_keys(config: &Config) -> anyhow::Result<KeyManager> {
    let keys =
        open_keys(config, SystemClock.now()).map_err(|e| anyhow::anyhow!("signing keys: {e}"))?;
    tracing::info!(
        kid = keys.active().kid(),
        version = keys.snapshot().version,
        kek_fingerprints = %keys.kek_ids().join(", "),
        "signing key ring ready"
    );
    crate::load::warn_kek_order(&keys, config);
    Ok(keys)
}

pub fn open_audit(sink: &AuditSinkConfig) -> anyhow::Result<AuditSink> {
    Ok(match sink {
        AuditSinkConfig::Stdout => AuditSink::stdout(),
        AuditSinkConfig::File(p) => {
            AuditSink::file(p).with_context(|| format!("audit file {}", p.display()))?
        }
    })
}

/// Loads the revocation state before anything is served: never from an empty copy,
/// where a revoked token would be active again.
pub async fn start_revocations(state: &AppState) -> anyhow::Result<()> {
    if let Some(e) = state.revocations.broken() {
        anyhow::bail!("revocation state: {e}");
    }
    state
        .revocations
        .start(state.clock.now())
        .await
        .map_err(|e| anyhow::anyhow!("revocation store: {e}"))?;
    for w in crate::revocation::startup_warnings(&state.loaded().config, &state.revocations) {
        tracing::warn!("{w}");
    }
    Ok(())
}
