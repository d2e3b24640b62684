//! The single node's in-process replay caches across restarts. At a graceful stop
//! Ferry saves the live entries and the latest loss to `replay-state.json` in the data
//! directory (mode 0600, written to a temporary file, synced, then renamed); at start
//! it loads them, deletes the file and leaves `replay.running` in its place until the
//! next graceful stop. A start that finds `replay.running` follows a stop that saved
//! nothing (`kill -9`, a crash, power loss): everything the old process had seen is
//! lost, so the start itself counts as the loss — ids issued before it plus the leeway
//! are refused until they expire. A start that finds neither file is the node's first
//! (or its data directory was emptied: then its signing keys are new as well).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::memory::{Entry, InProcessReplay};
use super::model::Losses;

/// The saved state.
pub const STATE_FILE: &str = "replay-state.json";
/// Present while a process runs: found at start, the last stop was not graceful.
pub const RUNNING_FILE: &str = "replay.running";
/// A saved state larger than this is not read (it holds at most the caches' capacity).
const MAX_STATE_BYTES: u64 = 256 << 20;

/// Why the replay state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A file or directory of the data directory could not be written or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The saved state could not be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// The saved state is larger than any the caches can hold.
    #[error("too large")]
    TooLarge,
    /// The saved state does not parse, or the state does not encode.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The in-process caches of a single node and their losses.
#[derive(Debug)]
pub struct Local {
    /// Assertion ids.
    pub assertions: Arc<InProcessReplay>,
    /// DPoP proof ids.
    pub proofs: Arc<InProcessReplay>,
    /// When their state was last lost.
    pub losses: Arc<Losses>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    saved_at: i64,
    lost_at: Option<i64>,
    assertions: Vec<Entry>,
    proofs: Vec<Entry>,
}

/// How the previous process stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// No trace of one.
    None,
    /// Saved its state.
    Graceful,
    /// Left no state: its ids are lost from `now`.
    Unclean,
}

impl Local {
    /// Loads what the previous process saved and marks this one running; after an
    /// unclean stop, records the loss at `now`.
    pub fn open(&self, dir: &Path, now: i64) -> Result<Previous, PersistError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io_at(dir))?;
        let running = dir.join(RUNNING_FILE);
        let state = dir.join(STATE_FILE);
        let was_running = running.exists();
        let saved = match read(&state) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "ferry", file = %state.display(), error = %e,
                    "replay state unreadable: counting it as lost");
                None
            }
        };
        let unreadable = state.exists() && saved.is_none();
        if let Some(s) = &saved {
            self.assertions.restore(s.assertions.clone(), now);
            self.proofs.restore(s.proofs.clone(), now);
            if let Some(at) = s.lost_at {
                self.losses.raise(at);
            }
        }
        let previous = if was_running || unreadable {
            // The old process may have accepted ids until this very second.
            let at = now.saturating_add(1);
            self.losses.raise(at);
            self.losses.count_one();
            tracing::warn!(target: "ferry", lost_at = at,
                "the previous process did not stop gracefully: its replay state is lost; refusing assertions and DPoP proofs issued before this start plus the leeway until they expire");
            Previous::Unclean
        } else if saved.is_some() {
            Previous::Graceful
        } else {
            Previous::None
        };
        write_private(&running, b"")?;
        if state.exists() {
            std::fs::remove_file(&state).map_err(io_at(&state))?;
        }
        Ok(previous)
    }

    /// Saves the live entries and the latest loss, then removes the running mark. The
    /// caches are sealed first: a request still in flight can spend no id that the
    /// file would miss (it gets `503`).
    pub fn save(&self, dir: &Path, now: i64) -> Result<usize, PersistError> {
        let saved = Saved {
            saved_at: now,
            lost_at: self.losses.at(),
            assertions: self.assertions.seal(now),
            proofs: self.proofs.seal(now),
        };
        let n = saved.assertions.len() + saved.proofs.len();
        let body = serde_json::to_vec(&saved)?;
        write_private(&dir.join(STATE_FILE), &body)?;
        let running = dir.join(RUNNING_FILE);
        if running.exists() {
            std::fs::remove_file(&running).map_err(io_at(&running))?;
        }
        sync_dir(dir);
        Ok(n)
    }
}

/// Saves a single node's replay state at a graceful stop.
#[derive(Debug)]
pub struct Saver {
    local: Arc<Local>,
    dir: PathBuf,
}

/// At start: loads the single node's saved replay state from `dir` and marks it
/// running (nothing to do with Redis: `local` is `None`); the saver to call at a
/// graceful stop, after the last request.
pub fn start(
    local: Option<Arc<Local>>,
    dir: &Path,
    now: i64,
) -> Result<Option<Saver>, PersistError> {
    let Some(local) = local else {
        return Ok(None);
    };
    local.open(dir, now)?;
    Ok(Some(Saver {
        local,
        dir: dir.to_owned(),
    }))
}

impl Saver {
    /// Saves, logging the outcome: a state not saved is counted as lost at next start.
    pub fn save(self, now: i64) {
        match self.local.save(&self.dir, now) {
            Ok(n) => tracing::info!(target: "ferry", entries = n, "replay state saved"),
            Err(e) => tracing::error!(target: "ferry", error = %e,
                "replay state not saved: the next start counts it as lost"),
        }
    }
}

fn read(path: &Path) -> Result<Option<Saved>, PersistError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PersistError::Read(e)),
    };
    if meta.len() > MAX_STATE_BYTES {
        return Err(PersistError::TooLarge);
    }
    let body = std::fs::read(path).map_err(PersistError::Read)?;
    Ok(Some(serde_json::from_slice(&body)?))
}

/// Writes `body` to `path` atomically, readable by Ferry's user only.
fn write_private(path: &Path, body: &[u8]) -> Result<(), PersistError> {
    let tmp: PathBuf = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = written {
        // A write that failed half-way (a full disk) leaves no temporary file behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_at(path)(e));
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Makes a rename durable (best effort: not every file system syncs directories).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Capacity;

    fn local() -> Local {
        let losses = Arc::new(Losses::default());
        let cap = Capacity {
            total: 100,
            per_principal: 100,
        };
        Local {
            assertions: Arc::new(InProcessReplay::new(cap, losses.clone())),
            proofs: Arc::new(InProcessReplay::new(cap, losses.clone())),
            losses,
        }
    }

    fn spend(l: &Local, jti: &str, issued: i64, now: i64) -> Result<(), super::super::ReplayError> {
        spend_in(&l.assertions, jti, issued, now)
    }

    fn spend_in(
        cache: &InProcessReplay,
        jti: &str,
        issued: i64,
        now: i64,
    ) -> Result<(), super::super::ReplayError> {
        use super::super::{ReplayCache, Spend};
        futures_util::FutureExt::now_or_never(cache.consume(Spend {
            principal: "sa",
            jti,
            issued,
            leeway: 60,
            skew: 0,
            until: now + 300,
            now,
        }))
        .unwrap()
    }

    #[test]
    fn a_graceful_stop_keeps_the_ids_and_an_unclean_one_counts_as_a_loss() {
        use super::super::ReplayError;
        let dir = tempfile::tempdir().unwrap();
        let first = local();
        assert_eq!(first.open(dir.path(), 1_000).unwrap(), Previous::None);
        assert_eq!(spend(&first, "a", 1_000, 1_000), Ok(()));
        assert_eq!(spend_in(&first.proofs, "p", 1_000, 1_000), Ok(()));
        assert_eq!(first.save(dir.path(), 1_010).unwrap(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(STATE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Graceful: the id is still spent, a fresh one (issued now) is accepted.
        let second = local();
        assert_eq!(second.open(dir.path(), 1_020).unwrap(), Previous::Graceful);
        assert_eq!(
            spend(&second, "a", 1_000, 1_020),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            spend_in(&second.proofs, "p", 1_000, 1_020),
            Err(ReplayError::Replayed)
        );
        assert_eq!(spend(&second, "b", 1_020, 1_020), Ok(()));
        assert_eq!(second.losses.count(), 0);

        // Unclean (no save): what was issued before the start + leeway is refused…
        let third = local();
        assert_eq!(third.open(dir.path(), 1_030).unwrap(), Previous::Unclean);
        assert_eq!(third.losses.count(), 1);
        assert_eq!(
            spend(&third, "b", 1_020, 1_030),
            Err(ReplayError::BeforeLoss)
        );
        assert_eq!(
            spend(&third, "c", 1_090, 1_030),
            Err(ReplayError::BeforeLoss)
        );
        // …and one issued after it (+ 1 s: the old process may have run until then)
        // plus the leeway is accepted (twin).
        assert_eq!(spend(&third, "d", 1_091, 1_031), Ok(()));

        // The loss survives a later graceful restart.
        third.save(dir.path(), 1_040).unwrap();
        let fourth = local();
        assert_eq!(fourth.open(dir.path(), 1_050).unwrap(), Previous::Graceful);
        assert_eq!(
            spend(&fourth, "b", 1_020, 1_050),
            Err(ReplayError::BeforeLoss)
        );
    }

    #[test]
    fn an_unreadable_state_counts_as_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let l = local();
        assert_eq!(l.open(dir.path(), 500).unwrap(), Previous::Unclean);
        assert_eq!(l.losses.at(), Some(501));
    }

    /// A state that cannot be written names the file (typed, same text as before); its
    /// twin, a writable directory, saves.
    #[test]
    fn a_save_that_cannot_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let l = local();
        assert_eq!(l.save(dir.path(), 500).unwrap(), 0);
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let err = l.save(&not_a_dir, 500).unwrap_err();
        assert!(matches!(err, PersistError::Io { .. }), "{err:?}");
        let file = not_a_dir.join(STATE_FILE);
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", file.display())),
            "{err}"
        );
    }
}
