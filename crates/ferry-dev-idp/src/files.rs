//! The data directory: private keys written readable by their owner only, public files
//! written where Ferry can be pointed at them.

use std::path::Path;

use anyhow::Context;

/// The issuer URL of the last `serve`.
pub const ISSUER_FILE: &str = "issuer";

/// Writes a private key (owner read/write only).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

/// Writes a public file into the data directory and, when given, the publish directory.
pub fn publish(
    data_dir: &Path,
    publish_dir: Option<&Path>,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    for dir in std::iter::once(data_dir).chain(publish_dir) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The issuer recorded by the last `serve` (`--issuer` / `--entity-id` override it).
pub fn recorded_issuer(data_dir: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(data_dir.join(ISSUER_FILE))
        .context("no issuer recorded: run `ferry-dev-idp serve` first (or name the issuer)")?;
    Ok(text.trim().to_owned())
}
