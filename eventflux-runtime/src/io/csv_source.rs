//! `CsvSource`: rows of a CSV file, deserialised with serde by column name or position.

use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::SourceError;
use crate::io::DeadLetter;
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::Emit;

/// Reads one `T` per CSV row: by the header row's column names (the default), or by position
/// without a header ([`has_headers(false)`](Self::has_headers)).
///
/// Options, set before the first read: [`delimiter`](Self::delimiter) (default `,`),
/// [`has_headers`](Self::has_headers) (default `true`), [`trim`](Self::trim) (default
/// `false`: whitespace around fields and headers is kept).
///
/// A row that cannot be deserialised (a wrong type, a missing column, a wrong number of fields,
/// invalid UTF-8) goes to the dead-letter output with the file name, its 1-based line number,
/// its byte offset, the column that failed (by its header name, or `column N` counting from 1
/// without a header) and the reason; reading continues. Only I/O errors stop the source. The row
/// buffer is reused, so reading allocates only what `T` itself owns.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::io::DeadLetters;
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Row { id: u32, name: String }
/// let data = "id,name\n1,a\nx,b\n3,c\n";
/// let mut src = CsvSource::<Row>::from_reader("mem.csv", data.as_bytes());
/// let letters = DeadLetters::collect();
/// let mut cx = SourceContext::new(100, &letters);
/// let mut out = Vec::new();
/// while src.poll(&mut cx, &mut out).unwrap() != SourcePoll::Done {}
/// assert_eq!(out.len(), 2);
/// let bad = &letters.take()[0];
/// assert_eq!((bad.line, bad.column.as_deref()), (Some(3), Some("id")));
/// assert!(bad.reason.starts_with("column `id`: "), "{}", bad.reason);
///
/// // Semicolons, no header row, padded fields:
/// let data = " 1 ; a\n2;b\n";
/// let mut src = CsvSource::<Row>::from_reader("mem.csv", data.as_bytes())
///     .delimiter(b';')
///     .has_headers(false)
///     .trim(true);
/// let mut out = Vec::new();
/// while src.poll(&mut cx, &mut out).unwrap() != SourcePoll::Done {}
/// assert_eq!(out, [Row { id: 1, name: "a".into() }, Row { id: 2, name: "b".into() }]);
/// ```
pub struct CsvSource<T> {
    name: String,
    /// The input until the first read builds the reader with the options.
    input: Option<Box<dyn Read + Send>>,
    reader: Option<csv::Reader<Box<dyn Read + Send>>>,
    delimiter: u8,
    has_headers: bool,
    trim: bool,
    headers: Option<csv::ByteRecord>,
    record: csv::ByteRecord,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for CsvSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSource")
            .field("name", &self.name)
            .field("delimiter", &char::from(self.delimiter))
            .field("has_headers", &self.has_headers)
            .field("trim", &self.trim)
            .finish_non_exhaustive()
    }
}

impl<T> CsvSource<T> {
    /// Opens `path` for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let (file, name) = super::open_input(path.as_ref())?;
        Ok(Self::from_reader(name, file))
    }

    /// Reads from any reader; `name` identifies it in dead letters and errors.
    pub fn from_reader(name: impl Into<String>, reader: impl Read + Send + 'static) -> Self {
        Self {
            name: name.into(),
            input: Some(Box::new(reader)),
            reader: None,
            delimiter: b',',
            has_headers: true,
            trim: false,
            headers: None,
            record: csv::ByteRecord::new(),
            _item: PhantomData,
        }
    }

    /// The field delimiter (default `b','`; `b';'`, `b'\t'`, ...).
    pub fn delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Whether the first row names the columns (default `true`). Without a header, fields map
    /// to `T`'s fields by position.
    pub fn has_headers(mut self, yes: bool) -> Self {
        self.has_headers = yes;
        self
    }

    /// Whether to trim whitespace around every field and header (default `false`).
    pub fn trim(mut self, yes: bool) -> Self {
        self.trim = yes;
        self
    }

    fn raw(&self) -> String {
        let fields: Vec<String> = self
            .record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        fields.join(&char::from(self.delimiter).to_string())
    }

    /// The name of 0-based column `i`: its header, or `column N` (1-based) without one.
    fn column(&self, i: u64) -> String {
        self.headers
            .as_ref()
            .and_then(|h| usize::try_from(i).ok().and_then(|i| h.get(i)))
            .map_or_else(
                || format!("column {}", i + 1),
                |h| String::from_utf8_lossy(h).into_owned(),
            )
    }

    fn letter(&self, reason: String, column: Option<String>) -> DeadLetter {
        let pos = self.record.position();
        let mut letter = DeadLetter::new(&self.name, pos.map(|p| p.line()), reason, self.raw());
        if let Some(p) = pos {
            letter = letter.with_offset(p.byte());
        }
        match column {
            Some(c) => letter.with_column(c),
            None => letter,
        }
    }

    /// Builds the reader with the options, on first use.
    fn build_reader(&mut self) {
        if self.reader.is_none()
            && let Some(input) = self.input.take()
        {
            self.reader = Some(
                csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .delimiter(self.delimiter)
                    .trim(if self.trim {
                        csv::Trim::All
                    } else {
                        csv::Trim::None
                    })
                    .from_reader(input),
            );
        }
    }

    fn io_error(&self, e: csv::Error) -> SourceError {
        let source = match e.into_kind() {
            csv::ErrorKind::Io(io) => io,
            other => std::io::Error::other(format!("{other:?}")),
        };
        SourceError::Io {
            path: PathBuf::from(&self.name),
            source,
        }
    }
}

impl<T: DeserializeOwned> Source for CsvSource<T> {
    type Item = T;

    fn poll<E: Emit<T>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        self.build_reader();
        for _ in 0..cx.max_items() {
            let read = match self.reader.as_mut() {
                Some(reader) => reader.read_byte_record(&mut self.record),
                None => return Ok(SourcePoll::Done),
            };
            match read {
                Ok(false) => return Ok(SourcePoll::Done),
                Ok(true) => {}
                Err(e) if e.is_io_error() => return Err(self.io_error(e)),
                Err(e) => {
                    let mut letter = self.letter(e.to_string(), None);
                    if let Some(p) = e.position() {
                        (letter.line, letter.offset) = (Some(p.line()), Some(p.byte()));
                    }
                    cx.dead_letter(letter);
                    continue;
                }
            }
            if self.has_headers && self.headers.is_none() {
                self.headers = Some(self.record.clone());
                continue;
            }
            if let Some(headers) = &self.headers
                && self.record.len() != headers.len()
            {
                let reason = format!(
                    "expected {} fields (as in the header row), found {}",
                    headers.len(),
                    self.record.len()
                );
                cx.dead_letter(self.letter(reason, None));
                continue;
            }
            match self.record.deserialize::<T>(self.headers.as_ref()) {
                Ok(item) => out.emit(item),
                Err(e) => {
                    let letter = match e.kind() {
                        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                            Some(i) => {
                                let column = self.column(i);
                                self.letter(
                                    format!("column `{column}`: {}", err.kind()),
                                    Some(column),
                                )
                            }
                            None => self.letter(err.kind().to_string(), None),
                        },
                        _ => self.letter(e.to_string(), None),
                    };
                    cx.dead_letter(letter);
                }
            }
        }
        Ok(SourcePoll::Ready)
    }

    /// Records read so far (the header row included), with the line and byte offset reached.
    fn position(&self) -> Option<serde_json::Value> {
        let (records, line, byte) = match &self.reader {
            Some(r) => (
                r.position().record(),
                r.position().line(),
                r.position().byte(),
            ),
            None => (0, 1, 0),
        };
        Some(serde_json::json!({ "records": records, "line": line, "byte": byte }))
    }

    /// Reads past the records before `position` again (the header row is taken as such), so
    /// the input must be the same file.
    fn seek(&mut self, position: &serde_json::Value) -> Result<(), SourceError> {
        let bad = |reason: String| SourceError::seek(position, reason);
        let n = position
            .get("records")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("expected {\"records\": <count>, ...}".into()))?;
        self.build_reader();
        for i in 0..n {
            let read = match self.reader.as_mut() {
                Some(reader) => reader.read_byte_record(&mut self.record),
                None => Ok(false),
            };
            match read {
                Ok(true) => {}
                Ok(false) => return Err(bad(format!("`{}` ends after {i} records", self.name))),
                Err(e) if e.is_io_error() => return Err(self.io_error(e)),
                // A malformed record was skipped (and dead-lettered) the first time.
                Err(_) => {}
            }
            if self.has_headers && self.headers.is_none() {
                self.headers = Some(self.record.clone());
            }
        }
        Ok(())
    }
}
