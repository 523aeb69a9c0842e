//! Where checkpoints are stored: the [`StateBackend`] trait and [`LocalDir`], a local directory.
//!
//! See [`LocalDir`] for its layout and write protocol.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{Fs, StdFs};
use super::{Manifest, RecoveryError, StateFile, StorageError};

const MANIFEST: &str = "MANIFEST.json";
/// Present once the job ran to its end.
const FINISHED: &str = "FINISHED";
const PREFIX: &str = "chk-";
const TMP: &str = ".tmp";

/// Durable storage for checkpoints.
///
/// The coordinator [`put`](Self::put)s each state of checkpoint `id`, then
/// [`commit`](Self::commit)s its manifest, which makes the checkpoint durable and visible
/// together; a checkpoint never committed is invisible and removed. See [`LocalDir`].
pub trait StateBackend: Send {
    /// Stores the bytes of one state of the unfinished checkpoint `id`.
    fn put(&mut self, id: u64, state: &str, bytes: &[u8]) -> Result<StateFile, StorageError>;

    /// Makes checkpoint `manifest.id` (its states already put) durable and visible, then drops
    /// checkpoints beyond the retention.
    fn commit(&mut self, manifest: &Manifest) -> Result<(), StorageError>;

    /// Drops the unfinished checkpoint `id` and whatever was put for it.
    fn abort(&mut self, id: u64) -> Result<(), StorageError>;

    /// The newest checkpoint whose manifest and files all verify; `Ok(None)` if there is no
    /// checkpoint at all, an error naming each rejected one if none verifies.
    fn latest(&self) -> Result<Option<Manifest>, RecoveryError>;

    /// The bytes of `state` in a committed checkpoint, checked against its manifest.
    fn get(&self, manifest: &Manifest, state: &str) -> Result<Vec<u8>, StorageError>;

    /// Stores a delta of `state` for checkpoint `id` against the committed checkpoint `base`:
    /// the new checkpoint holds `base`'s parts of the state (a full copy and the deltas after
    /// it) and then `bytes`. Returns the state's files, in order.
    fn put_delta(
        &mut self,
        id: u64,
        state: &str,
        bytes: &[u8],
        base: u64,
    ) -> Result<Vec<StateFile>, StorageError>;

    /// Every part of `state` in a committed checkpoint, in order (one, or a full copy and the
    /// deltas after it), each checked against the manifest.
    fn get_all(&self, manifest: &Manifest, state: &str) -> Result<Vec<Vec<u8>>, StorageError>;

    /// Records that the job ran to its end: its checkpoints describe points before the end,
    /// so a later run must not resume from them.
    fn mark_finished(&mut self) -> Result<(), StorageError>;

    /// Whether [`mark_finished`](Self::mark_finished) was called (and nothing cleared it).
    fn is_finished(&self) -> bool;
}

/// Checkpoints in a local directory.
///
/// `LocalDir`'s layout and write protocol:
///
/// ```text
/// DIR/LOCK                          held (flock) while a backend has the directory open
/// DIR/chk-00000000000000000042/     a completed checkpoint: its state files and MANIFEST.json
/// DIR/chk-00000000000000000043.tmp/ a checkpoint being written (removed when the directory opens)
/// ```
///
/// Each state file is written and fsynced inside the `.tmp` directory; the manifest (sizes and
/// crc32c of every file) is written and fsynced last; the directory is fsynced, renamed to its
/// final name (atomic), and the parent fsynced. A crash at any step leaves either the previous
/// checkpoints untouched plus a `.tmp` leftover, or the new checkpoint complete. Recovery takes
/// the newest checkpoint whose manifest and files all verify, and names every one it rejected.
///
/// ```
/// use eventflux_runtime::state::{LocalDir, Manifest, StateBackend};
/// let dir = tempfile::tempdir()?;
/// let mut store = LocalDir::open(dir.path(), 2)?;
/// for id in 1..=3 {
///     let file = store.put(id, "window", &[id as u8; 10])?;
///     let mut m = Manifest::new(id);
///     m.states.push(file);
///     store.commit(&m)?;
/// }
/// let latest = store.latest()?.expect("three were committed");
/// assert_eq!(latest.id, 3);
/// assert_eq!(store.get(&latest, "window")?, [3; 10]);
/// assert_eq!(store.checkpoints()?, [2, 3], "only the last two are kept");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LocalDir {
    dir: PathBuf,
    keep: usize,
    fs: Arc<dyn Fs>,
    /// Held open (and locked) for as long as the backend lives.
    _lock: File,
    /// The unfinished checkpoint and the files put into it so far.
    pending: Option<(u64, usize)>,
}

impl std::fmt::Debug for LocalDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDir")
            .field("dir", &self.dir)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

fn io<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'p {
    move |source| StorageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl LocalDir {
    /// Opens (creating it if needed) the state directory `dir`, keeping the last `keep`
    /// checkpoints (at least 1). Takes the directory's lock and removes leftovers of
    /// unfinished checkpoints.
    pub fn open(dir: impl AsRef<Path>, keep: usize) -> Result<Self, StorageError> {
        Self::with_fs(dir, keep, Arc::new(StdFs))
    }

    /// [`open`](Self::open) over another file system (tests inject failures with it).
    pub fn with_fs(
        dir: impl AsRef<Path>,
        keep: usize,
        fs: Arc<dyn Fs>,
    ) -> Result<Self, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("create", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StorageError::Locked { dir }),
            Err(TryLockError::Error(e)) => return Err(io("lock", &lock_path)(e)),
        }
        let store = LocalDir {
            dir,
            keep: keep.max(1),
            fs,
            _lock: lock,
            pending: None,
        };
        for path in store.entries()? {
            if name_of(&path).is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(TMP)) {
                store
                    .fs
                    .remove_dir_all(&path)
                    .map_err(io("remove", &path))?;
            }
        }
        Ok(store)
    }

    /// Removes every checkpoint in the directory (a fresh start that was asked for: a later
    /// resume must not find a checkpoint of an earlier, unrelated run).
    pub fn clear(&mut self) -> Result<(), StorageError> {
        let ids = self.checkpoints()?;
        for &id in &ids {
            let path = self.final_dir(id);
            self.fs.remove_dir_all(&path).map_err(io("remove", &path))?;
        }
        // The marker goes last: a crash before it leaves a finished job, cleared again.
        let finished = self.dir.join(FINISHED);
        let marked = finished.exists();
        if marked {
            self.fs
                .remove_file(&finished)
                .map_err(io("remove", &finished))?;
        }
        if ids.is_empty() && !marked {
            return Ok(());
        }
        self.fs.sync_dir(&self.dir).map_err(io("sync", &self.dir))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ids of the committed checkpoints present, oldest first (verified or not).
    pub fn checkpoints(&self) -> Result<Vec<u64>, StorageError> {
        let mut ids: Vec<u64> = self
            .entries()?
            .iter()
            .filter_map(|p| committed_id(p))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn entries(&self) -> Result<Vec<PathBuf>, StorageError> {
        self.fs.list(&self.dir).map_err(io("list", &self.dir))
    }

    fn final_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{id:020}"))
    }

    fn tmp_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{id:020}{TMP}"))
    }

    /// The `.tmp` directory of checkpoint `id`, created on first use; a different unfinished
    /// checkpoint is dropped first.
    fn begin(&mut self, id: u64) -> Result<PathBuf, StorageError> {
        match self.pending {
            Some((p, _)) if p == id => return Ok(self.tmp_dir(id)),
            Some((p, _)) => self.abort(p)?,
            None => {}
        }
        let tmp = self.tmp_dir(id);
        if tmp.exists() {
            self.fs.remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
        }
        self.fs.create_dir(&tmp).map_err(io("create", &tmp))?;
        self.pending = Some((id, 0));
        Ok(tmp)
    }

    /// The manifest of the checkpoint directory `path`, which must name checkpoint `id`.
    fn manifest(&self, path: &Path, id: u64) -> Result<Manifest, String> {
        let manifest_path = path.join(MANIFEST);
        let text = self
            .fs
            .read(&manifest_path)
            .map_err(|e| format!("{MANIFEST}: {e}"))?;
        let m: Manifest =
            serde_json::from_slice(&text).map_err(|e| format!("{MANIFEST} is not valid: {e}"))?;
        if m.id != id {
            return Err(format!("{MANIFEST} names checkpoint {}, not {id}", m.id));
        }
        Ok(m)
    }

    /// Checks one committed checkpoint directory: its manifest parses, names this checkpoint,
    /// and every file it lists has the recorded size and checksum.
    fn verify(&self, path: &Path, id: u64) -> Result<Manifest, String> {
        let m = self.manifest(path, id)?;
        for s in &m.states {
            let bytes = self
                .fs
                .read(&path.join(&s.file))
                .map_err(|e| format!("{}: {e}", s.file))?;
            check(&bytes, s).map_err(|why| format!("{}: {why}", s.file))?;
        }
        Ok(m)
    }
}

/// Whether `bytes` are the file `s` describes.
fn check(bytes: &[u8], s: &StateFile) -> Result<(), String> {
    if bytes.len() as u64 != s.bytes {
        return Err(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            s.bytes
        ));
    }
    let crc = crc32c::crc32c(bytes);
    if crc != s.crc32c {
        return Err(format!(
            "checksum {crc:08x}, the manifest says {:08x}",
            s.crc32c
        ));
    }
    Ok(())
}

fn name_of(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// The id of a committed checkpoint's directory (`chk-<id>`, no `.tmp`).
fn committed_id(path: &Path) -> Option<u64> {
    name_of(path)?.strip_prefix(PREFIX)?.parse().ok()
}

/// A file name for state `state`: its characters that are safe in file names, and a number
/// that keeps names unique.
fn file_name(n: usize, state: &str) -> String {
    let safe: String = state
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .take(64)
        .collect();
    format!("{n:04}-{safe}.efst")
}

impl StateBackend for LocalDir {
    fn put(&mut self, id: u64, state: &str, bytes: &[u8]) -> Result<StateFile, StorageError> {
        let tmp = self.begin(id)?;
        let n = self.pending.map_or(0, |(_, n)| n);
        let file = file_name(n, state);
        let path = tmp.join(&file);
        self.fs
            .write_synced(&path, bytes)
            .map_err(io("write", &path))?;
        self.pending = Some((id, n + 1));
        Ok(StateFile {
            state: state.to_string(),
            file,
            bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        })
    }

    fn commit(&mut self, manifest: &Manifest) -> Result<(), StorageError> {
        let id = manifest.id;
        let tmp = self.begin(id)?;
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StorageError::Io {
            action: "encode",
            path: tmp.join(MANIFEST),
            source: std::io::Error::other(e),
        })?;
        let manifest_path = tmp.join(MANIFEST);
        self.fs
            .write_synced(&manifest_path, &json)
            .map_err(io("write", &manifest_path))?;
        self.fs.sync_dir(&tmp).map_err(io("sync", &tmp))?;
        let done = self.final_dir(id);
        self.fs.rename(&tmp, &done).map_err(io("rename", &tmp))?;
        self.pending = None;
        self.fs.sync_dir(&self.dir).map_err(io("sync", &self.dir))?;
        let ids = self.checkpoints()?;
        let drop = ids.len().saturating_sub(self.keep);
        for old in ids.into_iter().take(drop) {
            let path = self.final_dir(old);
            self.fs.remove_dir_all(&path).map_err(io("remove", &path))?;
        }
        Ok(())
    }

    fn abort(&mut self, id: u64) -> Result<(), StorageError> {
        if self.pending.is_some_and(|(p, _)| p == id) {
            self.pending = None;
        }
        let tmp = self.tmp_dir(id);
        if tmp.exists() {
            self.fs.remove_dir_all(&tmp).map_err(io("remove", &tmp))?;
        }
        Ok(())
    }

    fn latest(&self) -> Result<Option<Manifest>, RecoveryError> {
        let fail = |why: String| RecoveryError {
            dir: self.dir.clone(),
            rejected: vec![(self.dir.clone(), why)],
        };
        let mut found: Vec<(u64, PathBuf)> = self
            .entries()
            .map_err(|e| fail(e.to_string()))?
            .into_iter()
            .filter_map(|p| Some((committed_id(&p)?, p)))
            .collect();
        found.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
        let mut rejected = Vec::new();
        for (id, path) in found {
            match self.verify(&path, id) {
                Ok(m) => return Ok(Some(m)),
                Err(why) => rejected.push((path, why)),
            }
        }
        if rejected.is_empty() {
            Ok(None)
        } else {
            Err(RecoveryError {
                dir: self.dir.clone(),
                rejected,
            })
        }
    }

    fn put_delta(
        &mut self,
        id: u64,
        state: &str,
        bytes: &[u8],
        base: u64,
    ) -> Result<Vec<StateFile>, StorageError> {
        let base_dir = self.final_dir(base);
        // Only the manifest: the base's files are linked, not read (recovery checks them).
        let base_manifest =
            self.manifest(&base_dir, base)
                .map_err(|reason| StorageError::Damaged {
                    path: base_dir.join(MANIFEST),
                    reason: format!("the base of an incremental checkpoint: {reason}"),
                })?;
        // A delta applies to the base's parts: without them it would restore as the whole
        // state, silently losing every key it does not mention.
        if !base_manifest.states.iter().any(|s| s.state == state) {
            return Err(StorageError::MissingState {
                id: base,
                state: state.to_string(),
            });
        }
        let tmp = self.begin(id)?;
        let mut files = Vec::new();
        for old in base_manifest.states.iter().filter(|s| s.state == state) {
            let n = self.pending.map_or(0, |(_, n)| n);
            let file = file_name(n, state);
            let (from, to) = (base_dir.join(&old.file), tmp.join(&file));
            self.fs.hard_link(&from, &to).map_err(io("link", &to))?;
            self.pending = Some((id, n + 1));
            files.push(StateFile {
                file,
                ..old.clone()
            });
        }
        files.push(self.put(id, state, bytes)?);
        Ok(files)
    }

    fn get_all(&self, manifest: &Manifest, state: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        let dir = self.final_dir(manifest.id);
        let parts: Vec<&StateFile> = manifest
            .states
            .iter()
            .filter(|s| s.state == state)
            .collect();
        if parts.is_empty() {
            return Err(StorageError::MissingState {
                id: manifest.id,
                state: state.to_string(),
            });
        }
        parts
            .into_iter()
            .map(|entry| {
                let path = dir.join(&entry.file);
                let bytes = self.fs.read(&path).map_err(io("read", &path))?;
                check(&bytes, entry).map_err(|reason| StorageError::Damaged { path, reason })?;
                Ok(bytes)
            })
            .collect()
    }

    /// Written and fsynced like a state file (a marker lost in a crash right after the end
    /// would only make the next run resume from the last checkpoint: correct, but slower).
    fn mark_finished(&mut self) -> Result<(), StorageError> {
        let path = self.dir.join(FINISHED);
        if path.exists() {
            return Ok(());
        }
        self.fs
            .write_synced(&path, b"the job ran to its end\n")
            .map_err(io("write", &path))?;
        self.fs.sync_dir(&self.dir).map_err(io("sync", &self.dir))
    }

    fn is_finished(&self) -> bool {
        self.dir.join(FINISHED).exists()
    }

    fn get(&self, manifest: &Manifest, state: &str) -> Result<Vec<u8>, StorageError> {
        let entry = manifest
            .states
            .iter()
            .find(|s| s.state == state)
            .ok_or_else(|| StorageError::MissingState {
                id: manifest.id,
                state: state.to_string(),
            })?;
        let path = self.final_dir(manifest.id).join(&entry.file);
        let bytes = self.fs.read(&path).map_err(io("read", &path))?;
        check(&bytes, entry).map_err(|reason| StorageError::Damaged { path, reason })?;
        Ok(bytes)
    }
}
