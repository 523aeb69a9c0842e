//! JSON-lines files: one JSON value per line, read and written with serde.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{SinkError, SourceError};
use crate::io::DeadLetter;
use crate::sink::Sink;
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::Emit;

/// Reads one `T` per line.
///
/// Blank lines are skipped. A line that is not valid JSON for `T` (or not UTF-8) goes to the
/// dead-letter output with the file name, its 1-based line number and serde's message; reading
/// continues. Only I/O errors stop the source.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::io::DeadLetters;
/// let data = "1\nnot json\n\n3\n";
/// let mut src = JsonLinesSource::<u32>::from_reader("mem", data.as_bytes());
/// let letters = DeadLetters::collect();
/// let mut cx = SourceContext::new(100, &letters);
/// let mut out = Vec::new();
/// while src.poll(&mut cx, &mut out).unwrap() != SourcePoll::Done {}
/// assert_eq!(out, [1, 3]);
/// assert_eq!(letters.take()[0].line, Some(2));
/// ```
pub struct JsonLinesSource<T> {
    name: String,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    /// Byte offset of the next line.
    offset: u64,
    buf: Vec<u8>,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for JsonLinesSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSource")
            .field("name", &self.name)
            .field("line", &self.line)
            .finish()
    }
}

impl<T> JsonLinesSource<T> {
    /// Opens `path` for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let (file, name) = super::open_input(path.as_ref())?;
        Ok(Self::from_reader(name, file))
    }

    /// Reads from any reader; `name` identifies it in dead letters and errors.
    pub fn from_reader(name: impl Into<String>, reader: impl Read + Send + 'static) -> Self {
        Self {
            name: name.into(),
            reader: Box::new(BufReader::with_capacity(64 * 1024, reader)),
            line: 0,
            offset: 0,
            buf: Vec::with_capacity(256),
            _item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Source for JsonLinesSource<T> {
    type Item = T;

    fn poll<E: Emit<T>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        for _ in 0..cx.max_items() {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| SourceError::Io {
                    path: PathBuf::from(&self.name),
                    source,
                })?;
            if n == 0 {
                return Ok(SourcePoll::Done);
            }
            self.line += 1;
            let start = self.offset;
            self.offset += n as u64;
            let text = trim_line_end(&self.buf);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<T>(text) {
                Ok(item) => out.emit(item),
                Err(e) => cx.dead_letter(
                    DeadLetter::new(
                        &self.name,
                        Some(self.line),
                        e.to_string(),
                        String::from_utf8_lossy(text),
                    )
                    .with_offset(start),
                ),
            }
        }
        Ok(SourcePoll::Ready)
    }

    /// The byte offset and number of the next line.
    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "offset": self.offset, "line": self.line }))
    }

    /// Skips the bytes before `position` (reading them again: the input must be the same
    /// file).
    fn seek(&mut self, position: &serde_json::Value) -> Result<(), SourceError> {
        let bad = |reason: String| SourceError::seek(position, reason);
        let field = |name: &str| position.get(name).and_then(serde_json::Value::as_u64);
        let (Some(offset), Some(line)) = (field("offset"), field("line")) else {
            return Err(bad(
                "expected {\"offset\": <bytes>, \"line\": <number>}".into()
            ));
        };
        let skipped =
            io::copy(&mut (&mut self.reader).take(offset), &mut io::sink()).map_err(|source| {
                SourceError::Io {
                    path: PathBuf::from(&self.name),
                    source,
                }
            })?;
        if skipped < offset {
            return Err(bad(format!("`{}` has only {skipped} bytes", self.name)));
        }
        (self.offset, self.line) = (offset, line);
        Ok(())
    }
}

/// Why [`write_line`] failed.
pub(crate) enum LineError {
    Io(io::Error),
    Serialize(String),
}

impl LineError {
    /// The sink's error, naming the file written to.
    pub(crate) fn into_sink_error(self, path: &Path) -> SinkError {
        match self {
            LineError::Io(source) => SinkError::Io {
                path: path.to_path_buf(),
                source,
            },
            LineError::Serialize(e) => SinkError::Serialize(e),
        }
    }
}

/// Writes `item` as one JSON line.
pub(crate) fn write_line<T: Serialize>(out: &mut impl Write, item: &T) -> Result<(), LineError> {
    serde_json::to_writer(&mut *out, item)
        .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
        .map_err(|e| {
            if e.is_io() {
                LineError::Io(io::Error::other(e))
            } else {
                LineError::Serialize(e.to_string())
            }
        })
}

fn trim_line_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

/// Writes one JSON object per line to a file.
///
/// The file is created by [`create`](Self::create) (truncating an existing one), written through
/// a 64 KiB buffer, flushed when the upstream is idle, and flushed and `fsync`ed on close. On
/// abort (a failed run) the buffered lines are discarded, not written: the file holds only what
/// was written out while the stream was live.
///
/// ```no_run
/// use eventflux_runtime::prelude::*;
/// let sink = JsonLinesSink::<u64>::create("out.jsonl")?;
/// # Ok::<(), eventflux_runtime::SinkError>(())
/// ```
pub struct JsonLinesSink<T> {
    path: PathBuf,
    /// `None` once aborted.
    out: Option<BufWriter<File>>,
    _item: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for JsonLinesSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("path", &self.path)
            .finish()
    }
}

impl<T> JsonLinesSink<T> {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, SinkError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| SinkError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            _item: PhantomData,
        })
    }

    fn io(&self, source: io::Error) -> SinkError {
        SinkError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, SinkError> {
        match &mut self.out {
            Some(w) => Ok(w),
            None => Err(SinkError::Io {
                path: self.path.clone(),
                source: io::Error::other("the sink was aborted"),
            }),
        }
    }
}

impl<T: Serialize> Sink<T> for JsonLinesSink<T> {
    /// Writes (or user code) can wait: marked so a stuck stop names this sink.
    fn may_block(&self) -> bool {
        true
    }

    fn send(&mut self, item: T) -> Result<(), SinkError> {
        let out = self.writer()?;
        write_line(out, &item).map_err(|e| e.into_sink_error(&self.path))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.writer()?.flush().map_err(|e| self.io(e))
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        self.writer()?.get_ref().sync_all().map_err(|e| self.io(e))
    }

    /// Discards the buffered lines (a `BufWriter` would write them when dropped).
    fn abort(&mut self) {
        if let Some(w) = self.out.take() {
            let (_file, _unwritten) = w.into_parts();
        }
    }
}
