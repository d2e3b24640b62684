//! What `ferry check` refuses and `serve` warns about in where revocation state lives.

use ferry_core::config::Config;

use super::Revocations;

/// The problem with a configuration that shares replay state between replicas
/// (`replay.redis`) but keeps revocations in each node's data directory: a token revoked
/// at one replica would stay active at the others. `None` when there is none.
pub fn per_node_revocations(config: &Config) -> Option<String> {
    (config.replay_redis.is_some() && !config.revocation.is_shared()).then(|| {
        "replay.redis shares replay state between replicas, but revocations and reference \
         handles are kept in each node's data directory: a token revoked at one replica would \
         stay active at the others. Configure revocation.postgres (or keep the signing keys in \
         PostgreSQL with signing.postgres: revocations then default to that database)"
            .to_owned()
    })
}

/// Warnings for the log at start.
pub fn startup_warnings(config: &Config, r: &Revocations) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = per_node_revocations(config) {
        out.push(format!(
            "{p} (`ferry check` refuses this; a single node may run so)"
        ));
    }
    if !r.seals_handles() {
        out.push(if r.is_shared() {
            "no key-encryption key (signing.key_encryption_keys, default FERRY_KEK): reference \
             tokens are refused, since their JWTs are only ever stored sealed"
                .to_owned()
        } else {
            "no key-encryption key (signing.key_encryption_keys, default FERRY_KEK): reference \
             handles are kept in memory only and lost at restart"
                .to_owned()
        });
    }
    out
}
