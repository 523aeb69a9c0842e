//! The [`Source`] trait: where events enter a pipeline.
//!
//! A source is *polled* by its segment's thread: each call pushes up to
//! [`SourceContext::max_items`] events into the emitter and says whether more are ready
//! ([`SourcePoll::Ready`]), none are ready right now ([`SourcePoll::Pending`]) or the input is
//! exhausted ([`SourcePoll::Done`]). On `Pending`, the segment first sends its partial batches
//! downstream (so a quiet source never delays events already read), then calls
//! [`Source::wait`], which must return within the given bound so a stop request is noticed.
//!
//! Malformed input is not an error: the source hands it to [`SourceContext::dead_letter`], which
//! routes it to the pipeline's dead-letter output and counts it, and carries on.
//!
//! A source that knows event-time progress can report it in band with
//! [`Emit::emit_watermark`] on the emitter it polls into: the
//! watermark passes through the segment's stages and across its queues. Otherwise place a
//! [`watermarks`](crate::stage::watermarks) stage right after the source.

mod partitions;
pub use partitions::PartitionWatermarks;

use std::time::Duration;

use crate::error::SourceError;
use crate::io::{DeadLetter, DeadLetters};
use crate::stage::Emit;

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// Events were emitted and more may be ready.
    Ready,
    /// Nothing is ready now; the segment will flush and call [`Source::wait`].
    Pending,
    /// The input is exhausted; the segment ends the stream.
    Done,
}

/// Per-poll services for a source.
pub struct SourceContext<'a> {
    pub(crate) max_items: usize,
    pub(crate) node: &'a str,
    pub(crate) dead_letters: &'a DeadLetters,
    pub(crate) dead_lettered: u64,
    pub(crate) failure: Option<SourceError>,
}

impl<'a> SourceContext<'a> {
    /// A context for polling a source outside a pipeline (tests, custom drivers).
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    /// use eventflux_runtime::io::DeadLetters;
    /// let letters = DeadLetters::collect();
    /// let mut cx = SourceContext::new(2, &letters);
    /// let mut src = IterSource::new(1..=3);
    /// let mut out = Vec::new();
    /// assert_eq!(src.poll(&mut cx, &mut out).unwrap(), SourcePoll::Ready);
    /// assert_eq!(out, [1, 2]);
    /// ```
    pub fn new(max_items: usize, dead_letters: &'a DeadLetters) -> Self {
        Self {
            max_items: max_items.max(1),
            node: "",
            dead_letters,
            dead_lettered: 0,
            failure: None,
        }
    }

    /// The context of the source node `node` (dead letters name it).
    pub(crate) fn for_node(mut self, node: &'a str) -> Self {
        self.node = node;
        self
    }

    /// The most events this poll should emit (the pipeline's batch size).
    #[inline]
    pub fn max_items(&self) -> usize {
        self.max_items
    }

    /// Routes a malformed record to the dead-letter output and counts it. Nothing is lost: if the
    /// dead-letter output itself fails, the pipeline stops with that error.
    pub fn dead_letter(&mut self, mut letter: DeadLetter) {
        self.dead_lettered += 1;
        if letter.node.is_empty() {
            letter.node = self.node.to_string();
        }
        if letter.time_ms == 0 {
            letter.time_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        if let Err(e) = self.dead_letters.send(letter)
            && self.failure.is_none()
        {
            self.failure = Some(SourceError::Other(format!(
                "the dead-letter output failed: {e}"
            )));
        }
    }

    /// Records lost so far in this context.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered
    }
}

/// Where events come from. See the [module docs](self).
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// /// Counts from 0 to `end`.
/// struct Counter { next: u64, end: u64 }
/// impl Source for Counter {
///     type Item = u64;
///     fn poll<E: Emit<u64>>(&mut self, cx: &mut SourceContext<'_>, out: &mut E)
///         -> Result<SourcePoll, SourceError> {
///         for _ in 0..cx.max_items() {
///             if self.next == self.end { return Ok(SourcePoll::Done); }
///             out.emit(self.next);
///             self.next += 1;
///         }
///         Ok(SourcePoll::Ready)
///     }
/// }
/// # let _ = Counter { next: 0, end: 1 };
/// ```
pub trait Source: Send {
    /// The events it produces.
    type Item;

    /// Called once on the source's thread before the first poll, after every sink is open.
    fn open(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Emits up to `cx.max_items()` events.
    fn poll<E: Emit<Self::Item>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError>;

    /// The pipeline was asked to stop. Return `false` (the default) to end the stream at once,
    /// or `true` to be polled until `Done` — for input the source has already *accepted* from
    /// others (a channel's buffer), which a graceful stop must deliver, not drop. A source that
    /// returns `true` must stop accepting new input and reach `Done` soon.
    fn stop(&mut self) -> bool {
        false
    }

    /// Whether this source is a side output of the pipeline itself (the late output of
    /// event-time windows): its events are not counted as pipeline input. The default is
    /// `false`.
    fn is_side_output(&self) -> bool {
        false
    }

    /// Whether this source reports watermarks itself (with [`Emit::emit_watermark`]); event-time
    /// windows downstream then follow them. The default is `false`.
    fn emits_watermarks(&self) -> bool {
        false
    }

    /// For the pipeline's own dead-letter node ([`dead_letters`](crate::io::dead_letters)): the
    /// route by which the pipeline sends it every dead letter. Other sources return `None` (the
    /// default).
    fn dead_letter_route(&mut self) -> Option<crate::io::DeadLetterRoute> {
        None
    }

    /// Where the source stands — everything emitted so far — as a value [`seek`](Self::seek)
    /// accepts; checkpoints store it in their manifest, and recovery seeks there and replays
    /// what followed. `None` (the default): the source cannot replay, so after a crash the
    /// events it had emitted since the last checkpoint are not seen again (at most once for
    /// them). The built-in file and iterator sources replay.
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    /// use eventflux_runtime::io::DeadLetters;
    /// let letters = DeadLetters::collect();
    /// let mut cx = SourceContext::new(2, &letters);
    /// let mut src = IterSource::new(1..=5);
    /// src.poll(&mut cx, &mut Vec::new())?;
    /// let at = src.position().expect("an iterator source replays");
    ///
    /// let mut again = IterSource::new(1..=5);
    /// again.seek(&at)?;
    /// let mut out = Vec::new();
    /// again.poll(&mut cx, &mut out)?;
    /// assert_eq!(out, [3, 4]);
    /// # Ok::<(), SourceError>(())
    /// ```
    fn position(&self) -> Option<serde_json::Value> {
        None
    }

    /// Moves to `position` (one [`position`](Self::position) gave, possibly in an earlier
    /// process), before the first poll: the next events are those that followed it.
    fn seek(&mut self, position: &serde_json::Value) -> Result<(), SourceError> {
        Err(SourceError::seek(position, "this source cannot replay"))
    }

    /// Waits, at most `bound`, for more input after a `Pending` poll. The default parks the thread
    /// for `bound`; sources that can be woken (a channel) return as soon as input arrives.
    fn wait(&mut self, bound: Duration) {
        std::thread::park_timeout(bound);
    }
}
