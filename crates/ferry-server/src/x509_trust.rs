//! An x509 provider's trust store, read from its PEM files when the configuration is
//! loaded (at start and at every reload): a missing or malformed file is a
//! configuration error, reported with the provider's path like a bad JWKS file.

use std::sync::Arc;

use ferry_core::config::KeysConfig;
use ferry_verify::x509::TrustStore;

/// The trust store of a provider whose keys are `keys`: `None` for any other kind;
/// `Err((member, why))` when a file cannot be read or holds no usable certificate.
pub fn load(keys: &KeysConfig) -> Result<Option<Arc<TrustStore>>, (&'static str, String)> {
    let KeysConfig::X509 {
        trust_anchors,
        intermediates,
    } = keys
    else {
        return Ok(None);
    };
    let read = |member: &'static str, files: &[std::path::PathBuf]| {
        files
            .iter()
            .map(|f| {
                std::fs::read(f).map_err(|e| (member, format!("cannot read {}: {e}", f.display())))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let anchors = read("trust_anchors", trust_anchors)?;
    let inter = read("intermediates", intermediates)?;
    // Which list is at fault: the anchors alone first.
    TrustStore::from_pem(&anchors, &[]).map_err(|e| ("trust_anchors", e.to_string()))?;
    let store =
        TrustStore::from_pem(&anchors, &inter).map_err(|e| ("intermediates", e.to_string()))?;
    Ok(Some(Arc::new(store)))
}
