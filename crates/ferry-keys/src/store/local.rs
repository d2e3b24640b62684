//! The local-directory store: `ring.json` in the data directory, written atomically
//! (temporary file, fsync, rename) under an exclusive lock on `ring.lock`, so two
//! processes sharing the directory never both write a version. Files are 0600 and the
//! directory 0700.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::model::{KeyStore, StoredRing};
use crate::signer::KeyError;

const RING: &str = "ring.json";
const LOCK: &str = "ring.lock";

/// A ring in a directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// A store in `dir`, created (0700) if absent.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        create_private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The ring file's path.
    pub fn ring_path(&self) -> PathBuf {
        self.dir.join(RING)
    }

    fn read(&self) -> Result<StoredRing, KeyError> {
        match fs::read(self.ring_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                KeyError::Store(format!(
                    "{} is not a valid key ring: {e}",
                    self.ring_path().display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoredRing::default()),
            Err(e) => Err(e.into()),
        }
    }
}

impl KeyStore for LocalStore {
    fn load(&self) -> Result<StoredRing, KeyError> {
        self.read()
    }

    fn compare_and_swap(&self, expected: u64, ring: &StoredRing) -> Result<bool, KeyError> {
        let lock = open_private(&self.dir.join(LOCK), false)?;
        // Blocks until no other writer (thread or process) holds the lock; released
        // when `lock` is dropped.
        lock.lock()?;
        let current = self.read()?;
        if current.version != expected {
            return Ok(false);
        }
        let mut next = ring.clone();
        next.version = expected + 1;
        // Only ever raised, whoever writes (as PostgreSQL's GREATEST does).
        next.max_issued_ttl = next.max_issued_ttl.max(current.max_issued_ttl);
        let tmp = self.dir.join(format!(".{RING}.{}.tmp", std::process::id()));
        {
            let mut f = open_private(&tmp, true)?;
            f.write_all(&serde_json::to_vec_pretty(&next)?)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.ring_path())?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(true)
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

fn open_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}
