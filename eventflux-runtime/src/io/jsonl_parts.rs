//! JSON lines in part files committed with checkpoints: exactly-once file output.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::jsonl::write_line;
use crate::error::SinkError;
use crate::sink::Sink;
use crate::stage::CheckpointId;

const IN_PROGRESS: &str = ".in-progress.jsonl";
const STAGED: &str = ".staged-";
const PART: &str = "part-";
const EXT: &str = ".jsonl";

/// Writes one JSON object per line into part files in a directory, taking part in
/// checkpoints' two-phase commit, so the committed output is exactly once across crashes.
///
/// Lines go to `.in-progress.jsonl`. When checkpoint *n*'s barrier arrives, that file is
/// flushed, fsynced and renamed `.staged-n.jsonl` (pre-commit); when checkpoint *n* completes,
/// every staged file up to *n* is renamed `part-n.jsonl` (commit). At end of stream the rest
/// becomes the last part. A run that resumes from checkpoint *n* first commits what was staged
/// up to *n* and deletes everything after it — staged files, and parts a later run made — since
/// the resumed run produces those lines again. The output is the `part-*.jsonl` files in name
/// order ([`read_committed`](Self::read_committed)); nothing else in the directory is output.
/// Without checkpoints it behaves like a file sink that starts afresh on every run.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::io::JsonLinesParts;
/// let dir = tempfile::tempdir().unwrap();
/// let sink = JsonLinesParts::<u32>::create(dir.path().join("out"))?;
/// let mut p = PipelineBuilder::new(PipelineConfig::default());
/// let out = p.sink("out", sink);
/// p.add_source("src", IterSource::new([1u32, 2, 3]), Identity, out);
/// p.build()?.run()?;
/// assert_eq!(JsonLinesParts::<u32>::read_committed(dir.path().join("out"))?, ["1", "2", "3"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JsonLinesParts<T> {
    dir: PathBuf,
    /// The in-progress part; `None` before `open` and after `abort`.
    out: Option<BufWriter<File>>,
    /// Lines in the in-progress part.
    lines: u64,
    /// The newest checkpoint this run staged or resumed from: the tail published at the end
    /// of the stream is numbered after it, so a run that resumes from that checkpoint drops
    /// the tail (it writes those lines again) even when the checkpoint staged no lines.
    last_checkpoint: u64,
    _item: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for JsonLinesParts<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesParts")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path, source: io::Error) -> SinkError {
    SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn part_name(id: u64) -> String {
    format!("{PART}{id:020}{EXT}")
}

fn staged_name(id: u64) -> String {
    format!("{STAGED}{id:020}{EXT}")
}

/// The files of `dir` named `{prefix}{id}.jsonl`, by id.
fn files_in(dir: &Path, prefix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| {
            let e = e.ok()?;
            let id = id_of(e.file_name().to_str()?, prefix)?;
            Some((id, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The checkpoint id in a file name `{prefix}{id}.jsonl`.
fn id_of(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(EXT)?.parse().ok()
}

impl<T> JsonLinesParts<T> {
    /// Writes into the directory `dir` (created if needed). Files from an earlier run are
    /// settled when the pipeline starts (see the type's documentation).
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, SinkError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            out: None,
            lines: 0,
            last_checkpoint: 0,
            _item: PhantomData,
        })
    }

    /// The committed lines of the directory `dir`: its part files in order.
    pub fn read_committed(dir: impl AsRef<Path>) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        for (_, path) in files_in(dir.as_ref(), PART)? {
            lines.extend(fs::read_to_string(path)?.lines().map(str::to_string));
        }
        Ok(lines)
    }

    /// The files of the directory named `{prefix}{id}.jsonl`, by id.
    fn files(&self, prefix: &str) -> Result<Vec<(u64, PathBuf)>, SinkError> {
        files_in(&self.dir, prefix).map_err(|e| io_error(&self.dir, e))
    }

    fn sync_dir(&self) -> Result<(), SinkError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, e))
    }

    /// Starts a new, empty in-progress part.
    fn begin(&mut self) -> Result<(), SinkError> {
        let path = self.dir.join(IN_PROGRESS);
        let file = File::create(&path).map_err(|e| io_error(&path, e))?;
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        self.lines = 0;
        Ok(())
    }

    /// Flushes and fsyncs the in-progress part and renames it `to` (if it holds lines).
    fn seal(&mut self, to: &str) -> Result<(), SinkError> {
        let path = self.dir.join(IN_PROGRESS);
        let Some(mut out) = self.out.take() else {
            return Err(io_error(&path, io::Error::other("the sink is not open")));
        };
        out.flush().map_err(|e| io_error(&path, e))?;
        out.get_ref().sync_all().map_err(|e| io_error(&path, e))?;
        drop(out);
        if self.lines > 0 {
            let target = self.dir.join(to);
            fs::rename(&path, &target).map_err(|e| io_error(&target, e))?;
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Renames every staged file up to `upto` into a part.
    fn publish(&self, upto: u64) -> Result<(), SinkError> {
        let mut any = false;
        for (id, path) in self.files(STAGED)? {
            if id <= upto {
                let target = self.dir.join(part_name(id));
                fs::rename(&path, &target).map_err(|e| io_error(&target, e))?;
                any = true;
            }
        }
        if any {
            self.sync_dir()?;
        }
        Ok(())
    }
}

impl<T: Serialize> Sink<T> for JsonLinesParts<T> {
    fn may_block(&self) -> bool {
        true
    }

    fn open(&mut self) -> Result<(), SinkError> {
        self.begin()
    }

    fn send(&mut self, item: T) -> Result<(), SinkError> {
        // The path is built only for an error: nothing is allocated per line.
        let Some(out) = self.out.as_mut() else {
            let path = self.dir.join(IN_PROGRESS);
            return Err(io_error(&path, io::Error::other("the sink is not open")));
        };
        write_line(out, &item).map_err(|e| e.into_sink_error(&self.dir.join(IN_PROGRESS)))?;
        self.lines += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let path = self.dir.join(IN_PROGRESS);
        match self.out.as_mut() {
            Some(out) => out.flush().map_err(|e| SinkError::Io { path, source: e }),
            None => Ok(()),
        }
    }

    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        self.last_checkpoint = self.last_checkpoint.max(checkpoint.0);
        self.seal(&staged_name(checkpoint.0))?;
        self.begin()
    }

    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        self.publish(checkpoint.0)
    }

    /// Commits what was staged up to `checkpoint`; deletes staged files and parts after it.
    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        self.last_checkpoint = checkpoint.0;
        self.publish(checkpoint.0)?;
        for prefix in [STAGED, PART] {
            for (id, path) in self.files(prefix)? {
                if id > checkpoint.0 {
                    fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
            }
        }
        self.sync_dir()
    }

    /// End of stream: everything staged is final, and so is the rest.
    fn close(&mut self) -> Result<(), SinkError> {
        self.publish(u64::MAX)?;
        let next = self
            .files(PART)?
            .last()
            .map_or(0, |(id, _)| *id)
            .max(self.last_checkpoint)
            .saturating_add(1);
        self.seal(&part_name(next))?;
        let leftover = self.dir.join(IN_PROGRESS);
        if leftover.exists() {
            fs::remove_file(&leftover).map_err(|e| io_error(&leftover, e))?;
        }
        Ok(())
    }

    /// Discards the in-progress part; staged files wait for the next run's recovery.
    fn abort(&mut self) {
        self.out = None;
        let _ = fs::remove_file(self.dir.join(IN_PROGRESS));
    }
}
