//! The dead-letter output: malformed records with where they came from and why they failed.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{SinkError, SourceError};
use crate::io::{ChannelHandle, ChannelSource};
use crate::sink::Sink;
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::Emit;

/// A record that could not be turned into an event: the one shape of every dead letter.
///
/// | field | meaning |
/// |---|---|
/// | `node` | the pipeline node (source) that read it |
/// | `origin` | the file (or reader name) it came from |
/// | `line` | its 1-based line number, when the input has lines |
/// | `offset` | the byte offset where the record starts, when known |
/// | `column` | the column that failed (CSV: its header name, or `column N` without a header) |
/// | `reason` | why it was rejected, naming the column when there is one |
/// | `raw` | the record as read (lossily decoded if it was not UTF-8) |
/// | `time_ms` | when it was rejected, in milliseconds since the Unix epoch |
///
/// Serialised (with serde, for example by a `JsonLinesSink` on a `dead_letters()` node) the
/// fields keep these names.
///
/// ```
/// use eventflux_runtime::io::DeadLetter;
/// let d = DeadLetter::new("trades.jsonl", Some(7), "expected value", "{oops");
/// assert_eq!(d.to_string(), "trades.jsonl:7: expected value: {oops");
/// let d = d.with_column("price").with_offset(120);
/// assert_eq!((d.column.as_deref(), d.offset), (Some("price"), Some(120)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The pipeline node that read it (filled in by the pipeline; empty outside one).
    #[serde(default)]
    pub node: String,
    /// The file or source it came from.
    pub origin: String,
    /// Its 1-based line number, when the origin has lines.
    pub line: Option<u64>,
    /// The byte offset where the record starts, when known.
    #[serde(default)]
    pub offset: Option<u64>,
    /// The column that failed, when the input has columns.
    #[serde(default)]
    pub column: Option<String>,
    /// Why it was rejected.
    pub reason: String,
    /// The record as read (lossily decoded if it was not UTF-8).
    pub raw: String,
    /// When it was rejected, in milliseconds since the Unix epoch (filled in by the pipeline).
    #[serde(default)]
    pub time_ms: u64,
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
            node: String::new(),
            origin: origin.into(),
            line,
            offset: None,
            column: None,
            reason: reason.into(),
            raw: raw.into(),
            time_ms: 0,
        }
    }

    /// With the byte offset where the record starts.
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// With the column that failed.
    pub fn with_column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }
}

impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.node.is_empty() {
            write!(f, "[{}] ", self.node)?;
        }
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.origin, line, self.reason, self.raw),
            None => write!(f, "{}: {}: {}", self.origin, self.reason, self.raw),
        }
    }
}

/// How many dead letters the default in-memory output keeps for the run report; the rest are
/// counted, not kept.
pub const KEPT_IN_MEMORY: usize = 1000;

enum Target {
    /// Up to `limit` kept for the report, the rest only counted.
    Collect {
        kept: Vec<DeadLetter>,
        limit: usize,
    },
    Sink(Box<dyn Sink<DeadLetter>>),
    /// A `dead_letters()` node of the pipeline: streamed to its segment (bounded, blocking).
    Node(Option<ChannelHandle<DeadLetter>>),
}

/// The pipeline-wide dead-letter output, shared by every source. Cheap to clone.
///
/// Where dead letters go, from most to least common:
/// - **a node of the pipeline**: declare `source bad = dead_letters();` in `pipeline!` (or add
///   a [`dead_letters()`](crate::io::dead_letters) source with the builder) and connect it like
///   any source — to a file, a counter, any sink. They are streamed through a bounded channel,
///   so reading slows down rather than memory growing when their sink is slow;
/// - **a sink** ([`DeadLetters::to_sink`]), called on the reading source's thread;
/// - by default, **in memory**: the first [`KEPT_IN_MEMORY`] are kept and returned in the run
///   report, every one is counted ([`RunReport::dead_letter_count`](crate::RunReport)).
///
/// It is on the error path only, so it takes a lock per letter.
///
/// ```
/// use eventflux_runtime::io::{DeadLetter, DeadLetters};
/// let dl = DeadLetters::collect_up_to(1);
/// dl.send(DeadLetter::new("x", None, "bad", "?")).unwrap();
/// dl.send(DeadLetter::new("x", None, "worse", "??")).unwrap();
/// assert_eq!(dl.count(), 2);
/// assert_eq!(dl.take().len(), 1, "only the first is kept");
/// ```
#[derive(Clone)]
pub struct DeadLetters {
    target: Arc<Mutex<Target>>,
    count: Arc<AtomicU64>,
    /// The second (since the Unix epoch) a dead letter was last logged, and how many were
    /// not logged since.
    logged_second: Arc<AtomicU64>,
    suppressed: Arc<AtomicU64>,
    /// Source segments still running that may produce dead letters (for a node's end).
    writers: Arc<AtomicUsize>,
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
    fn with_target(target: Target) -> Self {
        Self {
            target: Arc::new(Mutex::new(target)),
            count: Arc::new(AtomicU64::new(0)),
            logged_second: Arc::new(AtomicU64::new(0)),
            suppressed: Arc::new(AtomicU64::new(0)),
            writers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Keeps the first [`KEPT_IN_MEMORY`] dead letters in memory and counts the rest.
    pub fn collect() -> Self {
        Self::collect_up_to(KEPT_IN_MEMORY)
    }

    /// Keeps the first `limit` dead letters in memory and counts the rest.
    pub fn collect_up_to(limit: usize) -> Self {
        Self::with_target(Target::Collect {
            kept: Vec::new(),
            limit,
        })
    }

    /// Sends dead letters to `sink`.
    pub fn to_sink(sink: impl Sink<DeadLetter> + 'static) -> Self {
        Self::with_target(Target::Sink(Box::new(sink)))
    }

    /// Streams dead letters to a `dead_letters()` node.
    pub(crate) fn to_node(route: DeadLetterRoute) -> Self {
        Self::with_target(Target::Node(Some(route.0.attach())))
    }

    /// Records one dead letter.
    pub fn send(&self, letter: DeadLetter) -> Result<(), SinkError> {
        self.count.fetch_add(1, Relaxed);
        self.trace(&letter);
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Collect { kept, limit } => {
                if kept.len() < *limit {
                    kept.push(letter);
                }
                Ok(())
            }
            Target::Sink(s) => s.send(letter),
            Target::Node(Some(h)) => h.send(letter).map(drop).map_err(|_| {
                SinkError::Other("the dead-letter node is gone (its segment stopped)".into())
            }),
            Target::Node(None) => Err(SinkError::Other(
                "a dead letter arrived after every source had ended".into(),
            )),
        }
    }

    /// Logs a dead letter as a `tracing` warning, at most one per second: the others in that
    /// second are counted and reported with the next one logged.
    fn trace(&self, letter: &DeadLetter) {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.logged_second.swap(second, Relaxed) == second {
            self.suppressed.fetch_add(1, Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Relaxed);
        tracing::warn!(
            node = %letter.node,
            origin = %letter.origin,
            line = letter.line,
            reason = %letter.reason,
            suppressed,
            "dead letter (at most one logged per second; `suppressed` were not logged)"
        );
    }

    /// Dead letters recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Takes the collected dead letters (empty when they go to a sink or a node).
    pub fn take(&self) -> Vec<DeadLetter> {
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Collect { kept, .. } => std::mem::take(kept),
            Target::Sink(_) | Target::Node(_) => Vec::new(),
        }
    }

    pub(crate) fn open(&self) -> Result<(), SinkError> {
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Sink(s) => s.open(),
            Target::Collect { .. } | Target::Node(_) => Ok(()),
        }
    }

    pub(crate) fn close(&self) -> Result<(), SinkError> {
        match &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner) {
            Target::Sink(s) => s.close(),
            Target::Collect { .. } | Target::Node(_) => Ok(()),
        }
    }

    /// `n` source segments will write (set when the pipeline is built).
    pub(crate) fn expect_writers(&self, n: usize) {
        self.writers.store(n, Relaxed);
    }

    /// A source segment finished its stream: once every one has, a dead-letter node's stream
    /// ends too. (A failed source never calls this: a failure is not an end of stream.)
    pub(crate) fn writer_done(&self) {
        if self.writers.fetch_sub(1, Relaxed) == 1
            && let Target::Node(h) =
                &mut *self.target.lock().unwrap_or_else(PoisonError::into_inner)
            && let Some(h) = h.take()
        {
            h.end();
        }
    }
}

/// What a [`DeadLetterSource`] hands the pipeline so dead letters reach it. Opaque.
#[derive(Debug)]
pub struct DeadLetterRoute(ChannelHandle<DeadLetter>);

/// The pipeline's dead letters as a source node: see [`dead_letters`].
pub struct DeadLetterSource {
    inner: ChannelSource<DeadLetter>,
    route: Option<DeadLetterRoute>,
}

impl fmt::Debug for DeadLetterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterSource").finish_non_exhaustive()
    }
}

/// A source of this pipeline's dead letters, streamed: connect it like any source node.
///
/// Every malformed record any source of the pipeline rejects arrives here as a [`DeadLetter`]
/// (one documented shape: record, reason, node, position, time) while the pipeline runs,
/// through a bounded channel of `capacity` letters (readers wait when it is full: nothing is
/// lost and memory stays bounded). Its stream ends when every other source has ended; a
/// pipeline may have one. In `pipeline!`:
///
/// ```text
/// source trades = CsvSource::<Trade>::open("trades.csv")?;
/// source bad    = dead_letters(1024);
/// sink   errors = JsonLinesSink::create("trades.dead.jsonl")?;
/// bad -> errors;
/// ```
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// let good = CollectSink::new();
/// let bad = CollectSink::<DeadLetter>::new();
/// let (got, letters) = (good.handle(), bad.handle());
/// let mut p = PipelineBuilder::new(PipelineConfig::default());
/// let out = p.sink("good", good);
/// p.add_source("rows", JsonLinesSource::<u32>::from_reader("mem", &b"1\nx\n3\n"[..]), Identity, out);
/// let errors = p.sink("errors", bad);
/// p.add_source("bad", dead_letters(16), Identity, errors);
/// let report = p.build()?.run()?;
/// assert_eq!(got.take(), [1, 3]);
/// let letters = letters.take();
/// assert_eq!((letters[0].node.as_str(), letters[0].line), ("rows", Some(2)));
/// assert_eq!(report.dead_letter_count, 1);
/// # Ok::<(), PipelineError>(())
/// ```
pub fn dead_letters(capacity: usize) -> DeadLetterSource {
    let (inner, handle) = crate::io::channel::side_output_bounded(capacity);
    DeadLetterSource {
        inner,
        route: Some(DeadLetterRoute(handle)),
    }
}

impl Source for DeadLetterSource {
    type Item = DeadLetter;

    fn poll<E: Emit<DeadLetter>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        self.inner.poll(cx, out)
    }

    fn wait(&mut self, bound: Duration) {
        self.inner.wait(bound);
    }

    fn stop(&mut self) -> bool {
        // Polled to its end, which comes when every reading source has ended: they may still
        // reject records while they stop, and those must not be lost.
        true
    }

    fn is_side_output(&self) -> bool {
        true
    }

    fn dead_letter_route(&mut self) -> Option<DeadLetterRoute> {
        self.route.take()
    }
}
