//! The local state backend under storage faults: damaged, missing and stale files, a crash
//! between every step of the write protocol, leftovers, and a second user of the directory.
//! Recovery always takes the newest checkpoint that verifies — never a mix — and names what it
//! rejected.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eventflux::state::fs::{Fs, StdFs};
use eventflux::state::{LocalDir, Manifest, StateBackend, StorageError};

/// Commits checkpoint `id` with two states whose bytes depend on `id`.
fn checkpoint(store: &mut LocalDir, id: u64) -> Result<(), StorageError> {
    let mut m = Manifest::new(id);
    m.states.push(store.put(id, "stats", &states(id).0)?);
    m.states
        .push(store.put(id, "stats#1 (worker)", &states(id).1)?);
    m.sources
        .insert("feed".into(), serde_json::json!({ "offset": id * 100 }));
    store.commit(&m)
}

fn states(id: u64) -> (Vec<u8>, Vec<u8>) {
    (vec![id as u8; 100], (0..=id as u8).collect())
}

/// The latest checkpoint, with both its states read back and checked to be that checkpoint's.
fn recovered(dir: &Path) -> Option<u64> {
    let store = LocalDir::open(dir, 3).unwrap_or_else(|e| panic!("open: {e}"));
    let m = store.latest().unwrap_or_else(|e| panic!("latest: {e}"))?;
    let got = (
        store.get(&m, "stats").unwrap_or_else(|e| panic!("{e}")),
        store
            .get(&m, "stats#1 (worker)")
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(got, states(m.id), "checkpoint {} is whole", m.id);
    assert_eq!(m.sources["feed"]["offset"], m.id * 100);
    Some(m.id)
}

fn file_of(dir: &Path, id: u64, n: usize) -> PathBuf {
    let chk = dir.join(format!("chk-{id:020}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&chk)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "efst"))
        .collect();
    files.sort();
    files.swap_remove(n)
}

#[test]
fn retention_keeps_the_last_n_and_recovery_takes_the_newest() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.latest(),
        Ok(None),
        "an empty directory has no checkpoint"
    );
    for id in 1..=5 {
        checkpoint(&mut store, id).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(store.checkpoints().ok(), Some(vec![3, 4, 5]));
    drop(store);
    assert_eq!(recovered(dir.path()), Some(5));
}

#[test]
fn damaged_missing_and_stale_files_fall_back_to_the_previous_checkpoint() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 6] = [
        ("truncated", |d| {
            let f = file_of(d, 3, 0);
            let bytes = std::fs::read(&f).unwrap_or_default();
            std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
        }),
        ("flipped byte", |d| {
            let f = file_of(d, 3, 1);
            let mut bytes = std::fs::read(&f).unwrap_or_default();
            bytes[1] ^= 0x10;
            std::fs::write(&f, bytes).unwrap_or_else(|e| panic!("{e}"));
        }),
        ("missing file", |d| {
            std::fs::remove_file(file_of(d, 3, 0)).unwrap_or_else(|e| panic!("{e}"));
        }),
        ("missing manifest", |d| {
            let m = d.join(format!("chk-{:020}/MANIFEST.json", 3));
            std::fs::remove_file(m).unwrap_or_else(|e| panic!("{e}"));
        }),
        ("stale manifest", |d| {
            let (old, new) = (
                d.join(format!("chk-{:020}/MANIFEST.json", 2)),
                d.join(format!("chk-{:020}/MANIFEST.json", 3)),
            );
            std::fs::copy(old, new).unwrap_or_else(|e| panic!("{e}"));
        }),
        ("garbage manifest", |d| {
            let m = d.join(format!("chk-{:020}/MANIFEST.json", 3));
            std::fs::write(m, b"{ not json").unwrap_or_else(|e| panic!("{e}"));
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let mut store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
            for id in 1..=3 {
                checkpoint(&mut store, id).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        damage(dir.path());
        assert_eq!(recovered(dir.path()), Some(2), "{what}: falls back to 2");
    }
}

#[test]
fn no_usable_checkpoint_is_an_error_naming_each_one_and_why() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let mut store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        for id in 1..=2 {
            checkpoint(&mut store, id).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let f2 = file_of(dir.path(), 2, 0);
    std::fs::write(&f2, b"x").unwrap_or_else(|e| panic!("{e}"));
    let m1 = dir.path().join(format!("chk-{:020}/MANIFEST.json", 1));
    std::fs::remove_file(&m1).unwrap_or_else(|e| panic!("{e}"));
    let store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
    let err = store
        .latest()
        .err()
        .unwrap_or_else(|| panic!("nothing verifies"));
    let ids: Vec<String> = err
        .rejected
        .iter()
        .map(|(p, _)| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        ids,
        [format!("chk-{:020}", 2), format!("chk-{:020}", 1)],
        "newest first"
    );
    let text = err.to_string();
    let f2_name = f2
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        text.contains(&format!("{f2_name}: 1 bytes, the manifest says 100")),
        "{text}"
    );
    assert!(text.contains("MANIFEST.json: "), "{text}");
}

/// The real file system, failing every mutating step from the `fail_at`-th on (as if the
/// process had died there: nothing after it happens).
struct CrashAt {
    fail_at: usize,
    steps: AtomicUsize,
}

impl CrashAt {
    fn step(&self) -> io::Result<()> {
        if self.steps.fetch_add(1, Ordering::SeqCst) >= self.fail_at {
            return Err(io::Error::other("injected crash"));
        }
        Ok(())
    }
}

impl Fs for CrashAt {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        StdFs.create_dir(path)
    }
    fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.step()?;
        StdFs.write_synced(path, bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        StdFs.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        StdFs.sync_dir(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        StdFs.remove_dir_all(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFs.read(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        StdFs.list(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        StdFs.hard_link(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        StdFs.remove_file(path)
    }
}

#[test]
fn a_crash_between_any_two_steps_leaves_the_old_or_the_new_checkpoint_never_a_mix() {
    let mut outcomes = Vec::new();
    for fail_at in 0.. {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let mut store = LocalDir::open(dir.path(), 1).unwrap_or_else(|e| panic!("{e}"));
            checkpoint(&mut store, 1).unwrap_or_else(|e| panic!("{e}"));
        }
        let fs = Arc::new(CrashAt {
            fail_at,
            steps: AtomicUsize::new(0),
        });
        let crashed = {
            let mut store =
                LocalDir::with_fs(dir.path(), 1, fs.clone()).unwrap_or_else(|e| panic!("{e}"));
            checkpoint(&mut store, 2).is_err()
        };
        let got = recovered(dir.path());
        outcomes.push(got);
        // No leftovers survive a reopen.
        let leftovers = std::fs::read_dir(dir.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(leftovers, 0, "crash at step {fail_at}");
        if !crashed {
            assert_eq!(got, Some(2));
            break;
        }
    }
    // Steps: 0 create the .tmp dir, 1–2 the two state files, 3 the manifest, 4 sync the
    // directory, 5 rename it, 6 sync the parent, 7 remove the older checkpoint (8: no crash).
    // A crash up to and including the rename keeps the old checkpoint; after it, the new one.
    let old = Some(1);
    let new = Some(2);
    assert_eq!(outcomes, [old, old, old, old, old, old, new, new, new]);
}

/// The same for an incremental checkpoint, whose state links its base's parts: a crash at
/// any step leaves checkpoint 1 (its full copy) or checkpoint 2 (the copy and the delta),
/// never a chain with a part missing.
#[test]
fn a_crash_while_writing_a_delta_chain_leaves_the_old_or_the_new_chain() {
    let mut outcomes = Vec::new();
    for fail_at in 0.. {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        {
            let mut store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
            let mut m = Manifest::new(1);
            m.states
                .push(store.put(1, "k", b"full").unwrap_or_else(|e| panic!("{e}")));
            store.commit(&m).unwrap_or_else(|e| panic!("{e}"));
        }
        let fs = Arc::new(CrashAt {
            fail_at,
            steps: AtomicUsize::new(0),
        });
        let crashed = {
            let mut store =
                LocalDir::with_fs(dir.path(), 3, fs.clone()).unwrap_or_else(|e| panic!("{e}"));
            let mut m = Manifest::new(2);
            store
                .put_delta(2, "k", b"delta", 1)
                .and_then(|files| {
                    m.states.extend(files);
                    store.commit(&m)
                })
                .is_err()
        };
        let store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        let latest = store.latest().unwrap_or_else(|e| panic!("{e}"));
        let chain = latest.as_ref().map(|m| {
            let parts = store.get_all(m, "k").unwrap_or_else(|e| panic!("{e}"));
            (m.id, parts)
        });
        outcomes.push(chain.as_ref().map(|c| c.0));
        match chain {
            Some((1, parts)) => assert_eq!(parts, [b"full".to_vec()]),
            Some((2, parts)) => assert_eq!(parts, [b"full".to_vec(), b"delta".to_vec()]),
            other => panic!("crash at step {fail_at}: {other:?}"),
        }
        if !crashed {
            break;
        }
    }
    // Steps: 0 create the .tmp dir, 1 link the base's part, 2 the delta, 3 the manifest,
    // 4 sync the directory, 5 rename it, 6 sync the parent (7: no crash).
    let (old, new) = (Some(1), Some(2));
    assert_eq!(outcomes, [old, old, old, old, old, old, new, new]);
}

#[test]
fn leftovers_of_unfinished_checkpoints_are_removed_when_the_directory_opens() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tmp = dir.path().join(format!("chk-{:020}.tmp", 9));
    std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(tmp.join("0000-x.efst"), b"half").unwrap_or_else(|e| panic!("{e}"));
    let store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
    assert!(!tmp.exists());
    assert_eq!(store.latest(), Ok(None));
}

#[test]
fn a_second_user_of_the_directory_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let first = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
    let err = LocalDir::open(dir.path(), 3).err();
    assert!(
        matches!(&err, Some(StorageError::Locked { dir: d }) if d == dir.path()),
        "{err:?}"
    );
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("in use by another process")
    );
    drop(first);
    assert!(LocalDir::open(dir.path(), 3).is_ok());
}

/// The two-phase-commit JSON-lines sink, step by step: staged lines are invisible until their
/// checkpoint commits; a recovery commits what its checkpoint covers and drops what followed;
/// the end of stream makes the rest visible.
#[test]
fn json_lines_parts_stage_commit_and_recover() {
    use eventflux::io::JsonLinesParts;
    use eventflux::prelude::*;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("out");
    let read = || JsonLinesParts::<u32>::read_committed(&out).unwrap_or_else(|e| panic!("{e}"));
    let ok = |r: Result<(), SinkError>| r.unwrap_or_else(|e| panic!("{e}"));
    let mut s = JsonLinesParts::<u32>::create(&out).unwrap_or_else(|e| panic!("{e}"));
    ok(s.open());
    ok(s.recover(CheckpointId(0)));
    ok(s.send(1));
    ok(s.send(2));
    ok(s.pre_commit(CheckpointId(1)));
    ok(s.send(3));
    ok(s.pre_commit(CheckpointId(2)));
    ok(s.send(4));
    assert!(read().is_empty(), "nothing committed yet");
    ok(s.commit(CheckpointId(1)));
    assert_eq!(read(), ["1", "2"]);
    // A crash now: checkpoint 2 is staged, 4 is in progress. The resumed run recovers to 1
    // (say checkpoint 2 never completed): 3 and 4 will be produced again.
    s.abort();
    let mut again = JsonLinesParts::<u32>::create(&out).unwrap_or_else(|e| panic!("{e}"));
    ok(again.open());
    ok(again.recover(CheckpointId(1)));
    assert_eq!(read(), ["1", "2"]);
    ok(again.send(3));
    ok(again.send(4));
    ok(again.pre_commit(CheckpointId(2)));
    ok(again.send(5));
    ok(again.close());
    assert_eq!(read(), ["1", "2", "3", "4", "5"]);
    // A fresh start (recover to 0) discards every part.
    let mut fresh = JsonLinesParts::<u32>::create(&out).unwrap_or_else(|e| panic!("{e}"));
    ok(fresh.open());
    ok(fresh.recover(CheckpointId(0)));
    assert!(read().is_empty());
}

/// An incremental checkpoint whose linked base part is damaged is rejected as a whole, and
/// recovery falls back to the previous checkpoint.
#[test]
fn a_damaged_part_of_a_delta_chain_falls_back_to_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    {
        let mut store = LocalDir::open(dir.path(), 5).unwrap_or_else(|e| panic!("{e}"));
        let mut m = Manifest::new(1);
        m.states
            .push(store.put(1, "k", b"full").unwrap_or_else(|e| panic!("{e}")));
        store.commit(&m).unwrap_or_else(|e| panic!("{e}"));
        let mut m = Manifest::new(2);
        m.states.extend(
            store
                .put_delta(2, "k", b"delta", 1)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        store.commit(&m).unwrap_or_else(|e| panic!("{e}"));
        let latest = store.latest().unwrap_or_else(|e| panic!("{e}"));
        let parts = latest
            .as_ref()
            .map(|m| store.get_all(m, "k").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(parts, Some(vec![b"full".to_vec(), b"delta".to_vec()]));
        // A delta of a state the base does not hold is refused: it would restore as the whole
        // state.
        let err = store
            .put_delta(3, "other", b"delta", 2)
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("checkpoint 2 holds no state `other`"));
        store.abort(3).unwrap_or_else(|e| panic!("{e}"));
    }
    // Checkpoint 2's delta file is damaged: 2 is rejected, 1 is used.
    let f = file_of(dir.path(), 2, 1);
    std::fs::write(&f, b"xxxxx").unwrap_or_else(|e| panic!("{e}"));
    let store = LocalDir::open(dir.path(), 5).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.latest().ok().flatten().map(|m| m.id), Some(1));
}
