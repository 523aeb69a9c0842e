//! `CsvSource`: rows of a CSV file with a header row, deserialised with serde by column name.

use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::SourceError;
use crate::io::DeadLetter;
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::Emit;

/// Reads one `T` per CSV row, matching columns to fields by the header row.
///
/// A row that cannot be deserialised (a wrong type, a missing column, a wrong number of fields,
/// invalid UTF-8) goes to the dead-letter output with the file name, its 1-based line number
/// and the reason; reading continues. Only I/O errors stop the source. The row buffer is reused,
/// so reading allocates only what `T` itself owns.
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
/// assert_eq!(letters.take()[0].line, Some(3));
/// ```
pub struct CsvSource<T> {
    name: String,
    reader: csv::Reader<Box<dyn Read + Send>>,
    headers: Option<csv::ByteRecord>,
    record: csv::ByteRecord,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for CsvSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvSource")
            .field("name", &self.name)
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
        let reader: Box<dyn Read + Send> = Box::new(reader);
        Self {
            name: name.into(),
            reader: csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(reader),
            headers: None,
            record: csv::ByteRecord::new(),
            _item: PhantomData,
        }
    }

    fn raw(&self) -> String {
        let fields: Vec<String> = self
            .record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        fields.join(",")
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
        for _ in 0..cx.max_items() {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(SourcePoll::Done),
                Ok(true) => {}
                Err(e) if e.is_io_error() => return Err(self.io_error(e)),
                Err(e) => {
                    let line = e.position().map(|p| p.line());
                    let raw = self.raw();
                    cx.dead_letter(DeadLetter::new(&self.name, line, e.to_string(), raw));
                    continue;
                }
            }
            let line = self.record.position().map(|p| p.line());
            let Some(headers) = &self.headers else {
                self.headers = Some(self.record.clone());
                continue;
            };
            if self.record.len() != headers.len() {
                let reason = format!(
                    "expected {} fields (as in the header row), found {}",
                    headers.len(),
                    self.record.len()
                );
                let raw = self.raw();
                cx.dead_letter(DeadLetter::new(&self.name, line, reason, raw));
                continue;
            }
            match self.record.deserialize::<T>(Some(headers)) {
                Ok(item) => out.emit(item),
                Err(e) => {
                    let reason = match e.kind() {
                        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                        _ => e.to_string(),
                    };
                    let raw = self.raw();
                    cx.dead_letter(DeadLetter::new(&self.name, line, reason, raw));
                }
            }
        }
        Ok(SourcePoll::Ready)
    }
}
