//! Built-in sources and sinks, and the dead-letter output.
//!
//! | source | what it reads |
//! |---|---|
//! | [`IterSource`] | any `Iterator` (a `Vec`, a generator) |
//! | [`ChannelSource`] | events pushed by user threads through cloneable [`ChannelHandle`]s |
//! | [`JsonLinesSource`] | a file of JSON objects, one per line (serde) |
//! | [`CsvSource`] | a CSV file with a header row (serde, the `csv` crate) |
//!
//! | sink | where events go |
//! |---|---|
//! | [`CollectSink`] | into a `Vec` you read after the run |
//! | [`CallbackSink`] | into a closure |
//! | [`StdoutSink`] | to standard output, one line per event |
//! | [`JsonLinesSink`] | to a file, one JSON object per line |
//!
//! File sources never stop on a malformed record: it goes to the pipeline's [`DeadLetters`]
//! with the file, the line number and the parser's reason, is counted, and reading continues.

mod callback;
pub(crate) mod channel;
mod collect;
mod csv_source;
mod dead_letter;
mod iter;
mod jsonl;
mod jsonl_parts;
mod log;
#[cfg(feature = "redis")]
mod redis;
mod stdout;

pub use callback::CallbackSink;
pub use channel::{ChannelHandle, ChannelSource, channel_source};
pub use collect::{CollectHandle, CollectSink};
pub use csv_source::CsvSource;
pub use dead_letter::{
    DeadLetter, DeadLetterRoute, DeadLetterSource, DeadLetters, KEPT_IN_MEMORY, dead_letters,
};
pub use iter::IterSource;
pub use jsonl::{JsonLinesSink, JsonLinesSource};
pub use jsonl_parts::JsonLinesParts;
pub use log::{Codec, LogReader, LogRecord, LogSink, LogSource, LogWriter};
#[cfg(feature = "redis")]
pub use redis::{RedisReader, RedisStream, RedisStreamSink, RedisStreamSource, RedisWriter};
pub use stdout::StdoutSink;

use std::path::Path;

use crate::error::SourceError;

/// Opens a file for a source, naming it in the error; returns the file and its display name.
fn open_input(path: &Path) -> Result<(std::fs::File, String), SourceError> {
    let file = std::fs::File::open(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((file, path.display().to_string()))
}
