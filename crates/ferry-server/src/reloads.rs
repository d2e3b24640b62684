//! Counts of configuration reloads and the key store's health.

use std::sync::atomic::AtomicU64;

/// Counts of configuration reloads and the key store's health, for metrics and
/// `/readyz`.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads that took effect.
    pub ok: AtomicU64,
    /// Reloads refused (the old configuration stayed).
    pub failed: AtomicU64,
    /// Whether the last reload was refused (`false` before any).
    pub last_failed: std::sync::atomic::AtomicBool,
    /// The last key-ring poll's error, `None` when it succeeded.
    pub key_store_error: std::sync::Mutex<Option<String>>,
}

impl ReloadStats {
    /// The key store's last error, if its last poll failed.
    pub fn key_store_error(&self) -> Option<String> {
        self.key_store_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_key_store_error(&self, e: Option<String>) {
        *self
            .key_store_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = e;
    }
}
