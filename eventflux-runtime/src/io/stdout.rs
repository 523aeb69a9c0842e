//! `StdoutSink`: one line per event on standard output.

use std::fmt::{Debug, Display};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use crate::error::SinkError;
use crate::sink::Sink;

type Format<T> = fn(&T, &mut dyn Write) -> io::Result<()>;

/// Prints events, buffered, flushed whenever the upstream goes idle and at end of stream.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let sink: StdoutSink<u32> = StdoutSink::display();
/// # drop(sink);
/// ```
pub struct StdoutSink<T> {
    /// `None` once aborted.
    out: Option<BufWriter<io::Stdout>>,
    format: Format<T>,
}

impl<T> std::fmt::Debug for StdoutSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutSink").finish_non_exhaustive()
    }
}

impl<T> StdoutSink<T> {
    fn with(format: Format<T>) -> Self {
        Self {
            out: Some(BufWriter::with_capacity(64 * 1024, io::stdout())),
            format,
        }
    }
}

impl<T: Display> StdoutSink<T> {
    /// Prints with `Display`.
    pub fn display() -> Self {
        Self::with(|t, w| writeln!(w, "{t}"))
    }
}

impl<T: Debug> StdoutSink<T> {
    /// Prints with `Debug`.
    pub fn debug() -> Self {
        Self::with(|t, w| writeln!(w, "{t:?}"))
    }
}

impl<T: serde::Serialize> StdoutSink<T> {
    /// Prints one JSON object per line.
    pub fn json() -> Self {
        Self::with(|t, w| {
            serde_json::to_writer(&mut *w, t).map_err(io::Error::other)?;
            w.write_all(b"\n")
        })
    }
}

fn io_err(source: io::Error) -> SinkError {
    SinkError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}

impl<T> StdoutSink<T> {
    fn writer(&mut self) -> Result<&mut BufWriter<io::Stdout>, SinkError> {
        self.out
            .as_mut()
            .ok_or_else(|| io_err(io::Error::other("the sink was aborted")))
    }
}

impl<T> Sink<T> for StdoutSink<T> {
    /// Writes (or user code) can wait: marked so a stuck stop names this sink.
    fn may_block(&self) -> bool {
        true
    }

    fn send(&mut self, item: T) -> Result<(), SinkError> {
        let format = self.format;
        format(&item, self.writer()?).map_err(io_err)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.writer()?.flush().map_err(io_err)
    }

    /// Discards the buffered lines: a failed run prints only what was flushed while live.
    fn abort(&mut self) {
        if let Some(w) = self.out.take() {
            let (_stdout, _unwritten) = w.into_parts();
        }
    }
}
