//! The dead-letter output: malformed records with where they came from and why they failed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::SinkError;
use crate::sink::Sink;

/// A record that could not be turned into an event.
///
/// ```
/// use eventflux_runtime::io::DeadLetter;
/// let d = DeadLetter::new("trades.jsonl", Some(7), "expected value", "{oops");
/// assert_eq!(d.to_string(), "trades.jsonl:7: expected value: {oops");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The file or source it came from.
    pub origin: String,
    /// Its 1-based line number, when the origin has lines.
    pub line: Option<u64>,
    /// Why it was rejected.
    pub reason: String,
    /// The record as read (lossily decoded if it was not UTF-8).
    pub raw: String,
}

impl DeadLetter {
    /// Creates a dead letter.
    pub fn new(
        origin: impl Into<String>,
        line: Option<u64>,
        reason: impl Into<String>,
        raw: impl Into<String>,
    ) -> Self {
        Self {
            origin: origin.into(),
            line,
            reason: reason.into(),
            raw: raw.into(),
        }
    }
}

impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.origin, line, self.reason, self.raw),
            None => write!(f, "{}: {}: {}", self.origin, self.reason, self.raw),
        }
    }
}

enum Target {
    Collect(Vec<DeadLetter>),
    Sink(Box<dyn Sink<DeadLetter>>),
}

/// The pipeline-wide dead-letter output, shared by every source. Cheap to clone.
///
/// By default ([`DeadLetters::collect`]) dead letters are kept in memory and returned in the
/// run report; [`DeadLetters::to_sink`] sends them to any sink instead (a JSON-lines file, say).
/// It is on the error path only, so it takes a lock per letter.
///
/// ```
/// use eventflux_runtime::io::{DeadLetter, DeadLetters};
/// let dl = DeadLetters::collect();
/// dl.send(DeadLetter::new("x", None, "bad", "?")).unwrap();
/// assert_eq!(dl.count(), 1);
/// assert_eq!(dl.take()[0].reason, "bad");
/// ```
#[derive(Clone)]
pub struct DeadLetters {
    target: Arc<Mutex<Target>>,
    count: Arc<AtomicU64>,
}

impl fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetters")
            .field("count", &self.count())
            .finish()
    }
}

impl Default for DeadLetters {
    fn default() -> Self {
        Self::collect()
    }
}

impl DeadLetters {
    /// Keeps dead letters in memory.
    pub fn collect() -> Self {
        Self {
            target: Arc::new(Mutex::new(Target::Collect(Vec::new()))),
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sends dead letters to `sink`.
    pub fn to_sink(sink: impl Sink<DeadLetter> + 'static) -> Self {
        Self {
            target: Arc::new(Mutex::new(Target::Sink(Box::new(sink)))),
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records one dead letter.
    pub fn send(&self, letter: DeadLetter) -> Result<(), SinkError> {
        self.count.fetch_add(1, Relaxed);
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Collect(v) => {
                v.push(letter);
                Ok(())
            }
            Target::Sink(s) => s.send(letter),
        }
    }

    /// Dead letters recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Takes the collected dead letters (empty when they go to a sink).
    pub fn take(&self) -> Vec<DeadLetter> {
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Collect(v) => std::mem::take(v),
            Target::Sink(_) => Vec::new(),
        }
    }

    pub(crate) fn open(&self) -> Result<(), SinkError> {
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Collect(_) => Ok(()),
            Target::Sink(s) => s.open(),
        }
    }

    pub(crate) fn close(&self) -> Result<(), SinkError> {
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Collect(_) => Ok(()),
            Target::Sink(s) => s.close(),
        }
    }
}
