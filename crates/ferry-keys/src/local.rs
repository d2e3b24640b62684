//! The local-directory key store: one ES256 key created on first start and kept across
//! restarts. Written atomically (temporary file, fsync, rename) with mode 0600.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::signer::{KeyError, SoftwareSigner};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "signing-key.p8";

/// Loads the signing key from `dir`, creating the directory and the key if absent.
/// Returns the signer and whether it was created now.
///
/// A key file that exists but cannot be parsed is an error, never a silent new key:
/// replacing it would invalidate every token relying services hold.
pub fn load_or_create(dir: &Path) -> Result<(SoftwareSigner, bool), KeyError> {
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(der) => Ok((SoftwareSigner::from_pkcs8(&der)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir)?;
            let (signer, der) = SoftwareSigner::generate()?;
            let tmp = dir.join(format!(".{KEY_FILE}.tmp"));
            {
                let mut f = open_private(&tmp)?;
                f.write_all(&der)?;
                f.sync_all()?;
            }
            fs::rename(&tmp, &path)?;
            Ok((signer, true))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signer;

    #[test]
    fn key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, created) = load_or_create(&data).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&data).unwrap();
        assert!(!created);
        assert_eq!(a.kid(), b.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(data.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        assert!(load_or_create(dir.path()).is_err());
        assert_eq!(fs::read(dir.path().join(KEY_FILE)).unwrap(), b"garbage");
    }
}
