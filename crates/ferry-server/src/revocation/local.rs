//! The data-directory store of a single node. Revoked `jti`s and rules live in
//! `revocations.json` (rewritten whole: temporary file, fsync, rename; 0600), which
//! survives any restart, of Ferry or of a Redis used for replay. Reference handles live
//! one per file in `reference-handles/<sha256 of the handle>` (0600, directory 0700),
//! each holding the JWT sealed under the key-encryption key and its `exp`, so issuing
//! one never rewrites the others; they are written atomically but not fsynced (a handle
//! lost to a power cut only makes its holder ask again — a lost revocation would
//! resurrect a token, hence the fsync above).
//!
//! One process owns the directory: the front's in-memory copy is this store's state,
//! so the change feed returns everything once (at start) and nothing afterwards.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::model::{Listing, Rule};
use super::store::{Changes, Cursor, HandleError, Store, StoreError, StoredHandle};

const LISTING: &str = "revocations.json";
const HANDLES: &str = "reference-handles";
/// Exists once a Redis replay epoch was begun for this node.
const REPLAY_EPOCH: &str = "replay-epoch-begun";

/// The state kept in a data directory.
#[derive(Debug)]
pub struct LocalStore {
    dir: PathBuf,
    listing: Mutex<Listing>,
    /// Live handles' `exp`, by hash: the count the cap applies to.
    handles: Mutex<BTreeMap<String, i64>>,
    /// Whether the one full read was returned.
    read: AtomicBool,
}

fn is_hash(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn private_file(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("f");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let written = o.open(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            if sync {
                f.sync_all()?;
            }
            Ok(())
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            // A write that failed half-way (a full disk) leaves no temporary file behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    if sync && let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

impl LocalStore {
    /// The store in `data_dir`, read now (a file that cannot be read is an error, never
    /// an empty state: that would resurrect revoked tokens).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(LISTING);
        let listing = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Listing::default(),
            Err(e) => return Err(StoreError::io(path)(e)),
        };
        Ok(Self {
            dir: data_dir.to_owned(),
            listing: Mutex::new(listing),
            handles: Mutex::new(BTreeMap::new()),
            read: AtomicBool::new(false),
        })
    }

    fn handle_dir(&self) -> PathBuf {
        self.dir.join(HANDLES)
    }

    /// Every stored handle live at `now`; expired or unreadable files are removed.
    fn read_handles(&self, now: i64) -> Result<Vec<(String, StoredHandle)>, StoreError> {
        let dir = self.handle_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_hash(&name) {
                continue;
            }
            let stored = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<StoredHandle>(&b).ok());
            match stored {
                Some(h) if h.exp >= now => out.push((name, h)),
                Some(_) => {
                    let _ = std::fs::remove_file(entry.path());
                }
                None => {
                    tracing::warn!(file = %entry.path().display(), "unreadable reference-token handle dropped");
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut index = self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *index = out.iter().map(|(h, s)| (h.clone(), s.exp)).collect();
        Ok(out)
    }

    fn update(&self, now: i64, f: impl FnOnce(&mut Listing)) -> Result<(), StoreError> {
        let mut s = self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = s.clone();
        f(&mut next);
        next.prune(now);
        private_dir(&self.dir).map_err(StoreError::io(&self.dir))?;
        let bytes = serde_json::to_vec(&next).map_err(|e| StoreError::Encode(e.to_string()))?;
        let path = self.dir.join(LISTING);
        private_file(&path, &bytes, true).map_err(StoreError::io(&path))?;
        *s = next;
        Ok(())
    }
}

impl LocalStore {
    /// Everything live at `now` (all of it, whatever was returned before).
    pub fn everything(&self, now: i64) -> Result<Changes, StoreError> {
        self.read.store(true, Ordering::SeqCst);
        let mut listing = self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        listing.prune(now);
        let handles = self.read_handles(now).inspect_err(|_| {
            self.read.store(false, Ordering::SeqCst);
        })?;
        Ok(Changes {
            listing,
            handles,
            next: Cursor(1),
        })
    }
}

impl Store for LocalStore {
    async fn mark_replay_epoch(&self) -> Result<bool, StoreError> {
        let path = self.dir.join(REPLAY_EPOCH);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(&path) {
            Ok(f) => {
                f.sync_all().map_err(StoreError::io(&path))?;
                if let Ok(d) = std::fs::File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                Ok(false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
            Err(e) => Err(StoreError::io(path)(e)),
        }
    }

    async fn changes(&self, _since: Cursor, now: i64) -> Result<Changes, StoreError> {
        if self.read.load(Ordering::SeqCst) {
            return Ok(Changes {
                next: Cursor(1),
                ..Changes::default()
            });
        }
        self.everything(now)
    }

    async fn revoke_jti(&self, jti: &str, exp: i64, now: i64) -> Result<(), StoreError> {
        self.update(now, |l| l.add_jti(jti, exp))
    }

    async fn add_rule(&self, rule: &Rule, now: i64) -> Result<(), StoreError> {
        self.update(now, |l| l.add_rule(rule.clone()))
    }

    async fn put_handle(
        &self,
        hash: &str,
        handle: &StoredHandle,
        now: i64,
        cap: usize,
    ) -> Result<(), HandleError> {
        if !is_hash(hash) {
            return Err(StoreError::NotAHash.into());
        }
        let dir = self.handle_dir();
        let mut index = self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if index.len() >= cap {
            index.retain(|h, exp| {
                let live = *exp >= now;
                if !live {
                    let _ = std::fs::remove_file(dir.join(h));
                }
                live
            });
            if index.len() >= cap {
                return Err(HandleError::Full);
            }
        }
        private_dir(&dir).map_err(StoreError::io(&dir))?;
        let bytes = serde_json::to_vec(handle).map_err(|e| StoreError::Encode(e.to_string()))?;
        private_file(&dir.join(hash), &bytes, false).map_err(StoreError::io(&dir))?;
        index.insert(hash.to_owned(), handle.exp);
        Ok(())
    }
}
