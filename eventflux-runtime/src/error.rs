//! Error types of the runtime.
//!
//! Every error a user or the outside world can cause is a value of one of these enums, never a
//! panic. All enums are `#[non_exhaustive]` so new failure modes can be added without breaking
//! users' `match`es.

use std::io;
use std::path::PathBuf;

/// A configuration value is outside its allowed range.
///
/// ```
/// use eventflux_runtime::config::PipelineConfig;
/// let err = PipelineConfig::builder().batch_size(0).build().unwrap_err();
/// assert!(err.to_string().contains("batch_size"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A numeric or duration field is out of range.
    #[error("invalid `{field}`: {value} is out of range; allowed: {allowed}")]
    OutOfRange {
        /// The field's name, as written in `PipelineConfig` and in `pipeline!`'s `config` block.
        field: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// The allowed range, in words.
        allowed: String,
    },
    /// A named choice (such as a backpressure strategy) is unknown.
    #[error("invalid `{field}`: unknown value `{value}`; allowed: {allowed}")]
    UnknownValue {
        /// The field's name.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// The allowed values, comma-separated.
        allowed: &'static str,
    },
}

/// A stage failed while processing an event (reported through [`Emit::fail`](crate::Emit::fail)).
///
/// ```
/// use eventflux_runtime::StageError;
/// let e = StageError::new("price is negative");
/// assert_eq!(e.to_string(), "price is negative");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    message: String,
    node: Option<String>,
}

impl StageError {
    /// Creates a stage error with a human-readable message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            node: None,
        }
    }

    /// The message given at creation.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The node that reported it, once the pipeline has attributed it (the innermost named
    /// stage whose emitter received the failure).
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Attributes the error to `node` unless an inner stage already claimed it.
    pub(crate) fn at_node(mut self, node: &str) -> Self {
        if self.node.is_none() {
            self.node = Some(node.to_string());
        }
        self
    }
}

/// A source could not produce events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Reading a file failed (malformed records are not errors: they go to the dead-letter output).
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A user-defined source failed.
    #[error("{0}")]
    Other(String),
    /// The source cannot resume from a checkpoint's position (it cannot replay, or the position
    /// is not one it gave).
    #[error("cannot resume from position {position}: {reason}")]
    Seek {
        /// The position, as stored in the checkpoint.
        position: String,
        /// Why not.
        reason: String,
    },
}

/// A sink could not accept events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Writing failed.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// The file (or `<stdout>`).
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// An event could not be serialised.
    #[error("cannot serialise an event: {0}")]
    Serialize(String),
    /// A user-defined sink failed.
    #[error("{0}")]
    Other(String),
}

/// Why a pipeline stopped with an error.
///
/// The first error wins: when one segment fails, every other segment is told to abort, and their
/// consequent [`PipelineError::Aborted`] results are not reported in its place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The configuration was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A source failed.
    #[error("source in segment `{segment}` failed: {source}")]
    Source {
        /// The segment (thread) the source runs on.
        segment: String,
        /// What went wrong.
        #[source]
        source: SourceError,
    },
    /// A sink failed.
    #[error("sink `{sink}` failed: {source}")]
    Sink {
        /// The sink's name.
        sink: String,
        /// What went wrong.
        #[source]
        source: SinkError,
    },
    /// A stage reported an error through `Emit::fail`.
    #[error("stage `{node}` (segment `{segment}`) failed: {source}")]
    Stage {
        /// The node that failed (its name in the pipeline), or the segment's name when the stage
        /// was not named.
        node: String,
        /// The segment (thread) it runs on, for context; keyed workers are `name#worker`.
        segment: String,
        /// The stage's error.
        #[source]
        source: StageError,
    },
    /// A stage, source or sink panicked.
    #[error("node `{node}` (segment `{segment}`) panicked: {message}")]
    Panicked {
        /// The node that panicked (source, stage or sink), or the segment's name when the panic
        /// happened outside any named node.
        node: String,
        /// The segment (thread) it runs on, for context; keyed workers are `name#worker`.
        segment: String,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The pipeline was aborted because another segment failed.
    #[error("aborted because another part of the pipeline failed")]
    Aborted,
    /// `stop()` did not see every segment finish within its bound.
    #[error("pipeline did not stop within {waited_ms} ms; still running: {}", stuck.join(", "))]
    StopTimeout {
        /// How long `stop()` waited.
        waited_ms: u128,
        /// What had not finished: each segment, with the sink it is blocked in when that sink
        /// declares it may block ([`Sink::may_block`](crate::Sink::may_block); the built-in
        /// file, stdout and callback sinks do): ``"src (blocked in sink `out`)"``.
        stuck: Vec<String>,
    },
    /// A thread could not be started.
    #[error("cannot start a thread for segment `{segment}`: {source}")]
    Spawn {
        /// The segment.
        segment: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A pipeline was built in a way the executor cannot run.
    #[error("invalid pipeline: {0}")]
    Invalid(String),
    /// A segment's state could not be saved into a checkpoint or restored from one.
    #[error("state of segment `{segment}`: {source}")]
    State {
        /// The segment.
        segment: String,
        /// What went wrong.
        #[source]
        source: crate::state::StateError,
    },
    /// Checkpoint storage failed, or no checkpoint could be resumed from.
    #[error("checkpoints: {0}")]
    Checkpoint(String),
}

impl SourceError {
    /// A source cannot resume from `position`, for `reason`.
    ///
    /// ```
    /// use eventflux_runtime::SourceError;
    /// let e = SourceError::seek(&serde_json::json!({ "events": 9 }), "the input ends at 3");
    /// assert_eq!(e.to_string(), r#"cannot resume from position {"events":9}: the input ends at 3"#);
    /// ```
    pub fn seek(position: &serde_json::Value, reason: impl Into<String>) -> Self {
        SourceError::Seek {
            position: position.to_string(),
            reason: reason.into(),
        }
    }
}

impl PipelineError {
    /// Whether this error is only a consequence of another segment's failure.
    pub fn is_aborted(&self) -> bool {
        matches!(self, PipelineError::Aborted)
    }
}
