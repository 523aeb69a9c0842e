//! The [`Sink`] trait: where events leave a pipeline.
//!
//! Sinks are called on their segment's thread. `open` runs before any source starts; `send`
//! takes each event by value; `flush` is called when the upstream has nothing more to give for
//! now (and before checkpoints), `close` once at end of stream. An `Err` from any of them stops
//! the pipeline and is returned from `run()`/`join()`.
//!
//! # When the pipeline fails
//! A failure is never an end of stream. If anything fails — a source's or stage's error, a panic
//! anywhere, this or another sink's error, an abort or a `stop()` that timed out — every sink
//! that was opened gets [`abort`](Sink::abort) instead of `close`, exactly once, whichever thread
//! the failure happened on. After a `send` returns `Err`, that sink receives no further event.
//!
//! Events a sink accepted before the failure are **not flushed** by the runtime on abort: what
//! the sink already wrote out (at a `flush`, or because its buffer filled) stays, and what it
//! still buffers is the sink's to discard. The built-in JSON-lines and stdout sinks discard it,
//! so a failed run leaves only the output written while the stream was live; in-memory sinks
//! ([`CollectSink`](crate::io::CollectSink), [`CallbackSink`](crate::io::CallbackSink)) have
//! nothing to withdraw.

use crate::error::SinkError;
use crate::stage::CheckpointId;

/// A destination for events. See the [module docs](self).
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// struct Sum(u64);
/// impl Sink<u64> for Sum {
///     fn send(&mut self, item: u64) -> Result<(), SinkError> {
///         self.0 = self.0.checked_add(item).ok_or_else(|| SinkError::Other("overflow".into()))?;
///         Ok(())
///     }
/// }
/// let mut s = Sum(0);
/// s.send(2).unwrap();
/// assert!(s.send(u64::MAX).is_err());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot receive events of type `{T}`",
    label = "this sink does not accept `{T}`",
    note = "a sink's event type must equal the output type of the stage that feeds it"
)]
pub trait Sink<T>: Send {
    /// Prepares the sink (create files, connect). Called before any source starts.
    fn open(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Accepts one event.
    fn send(&mut self, item: T) -> Result<(), SinkError>;

    /// Makes every accepted event durable or visible.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once at end of stream; flushes by default.
    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }

    /// Called once instead of `close` when the pipeline fails (see the [module docs](self)):
    /// release resources, discard what is buffered, commit nothing. The default does nothing.
    fn abort(&mut self) {}

    /// Whether `send` can wait on the outside world (I/O, a full channel, a lock others hold,
    /// arbitrary user code). Such a sink is marked around each `send` — two relaxed stores —
    /// so a `stop()` that times out can say the segment is blocked in it. The default, `false`,
    /// costs nothing per event; the built-in file, stdout and callback sinks return `true`.
    /// (`open`, `flush` and `close` are always marked.)
    fn may_block(&self) -> bool {
        false
    }

    /// Checkpoint `checkpoint`'s barrier reached the sink: every event before it has been
    /// sent. Phase one of a two-phase commit: make them durable but not yet visible (stage a
    /// part file, say). The default flushes — for a sink that does not take part, whose output
    /// is visible at once (after a crash, what it wrote since the last checkpoint is written
    /// again: at least once, or exactly once if it is idempotent).
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let _ = checkpoint;
        self.flush()
    }

    /// Checkpoint `checkpoint` is complete (every state durable): phase two, make what was
    /// pre-committed for it (and any earlier one) visible. Must be idempotent: after a crash it
    /// may be called again, from [`recover`](Self::recover). The default does nothing.
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let _ = checkpoint;
        Ok(())
    }

    /// Called after `open`, before any event, when the pipeline resumes from checkpoint
    /// `checkpoint`: commit what was pre-committed up to it if that is not done yet, and
    /// discard anything staged after it (it will be produced again). The default does
    /// nothing.
    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let _ = checkpoint;
        Ok(())
    }
}

impl<T, S: Sink<T> + ?Sized> Sink<T> for Box<S> {
    fn open(&mut self) -> Result<(), SinkError> {
        (**self).open()
    }
    fn send(&mut self, item: T) -> Result<(), SinkError> {
        (**self).send(item)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush()
    }
    fn close(&mut self) -> Result<(), SinkError> {
        (**self).close()
    }
    fn abort(&mut self) {
        (**self).abort()
    }
    fn may_block(&self) -> bool {
        (**self).may_block()
    }
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        (**self).pre_commit(checkpoint)
    }
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        (**self).commit(checkpoint)
    }
    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        (**self).recover(checkpoint)
    }
}

/// A local `Vec` as a sink, for `run()` (which runs segments on scoped threads, so nodes may
/// borrow the caller's locals; in `pipeline!`: `sink out = &mut results;`): every event is
/// pushed.
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// let data = vec![1u32, 2, 3, 4];
/// let mut doubled = Vec::new();
/// let mut p = PipelineBuilder::new(PipelineConfig::default());
/// let out = p.sink("out", &mut doubled);
/// p.add_source("nums", IterSource::new(data.iter().map(|x| x * 2)), Identity, out);
/// p.build()?.run()?;
/// assert_eq!(doubled, [2, 4, 6, 8]);
/// # Ok::<(), PipelineError>(())
/// ```
impl<T: Send> Sink<T> for &mut Vec<T> {
    fn send(&mut self, item: T) -> Result<(), SinkError> {
        self.push(item);
        Ok(())
    }
}

/// One sink per worker of a keyed parallel segment, made by `factory(worker)` (workers are
/// numbered from 0; the factory returns `Result<sink, SinkError>`, and an `Err` fails the
/// pipeline's construction naming the sink and worker).
///
/// A sink fused after a `=>[workers = N, key = ..]` edge would run once per worker, so
/// `pipeline!` rejects it there — N copies of a file sink would each truncate the same file.
/// Either put a plain `=>` before the sink (the workers merge into one sink) or opt in to one
/// sink per worker with `per_worker`, giving each its own destination:
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// // In `pipeline!`:
/// //   sink out = per_worker(|w| JsonLinesSink::create(format!("out-{w}.jsonl")));
/// //   feed =>[workers = 4, key = |t: &Trade| t.symbol] stats -> out;
/// let mut made = Vec::new();
/// let mut sinks = per_worker(|w| {
///     made.push(w);
///     Ok(CollectSink::<u64>::new())
/// });
/// let _first = sinks.for_worker(0)?;
/// let _second = sinks.for_worker(1)?;
/// drop(sinks);
/// assert_eq!(made, [0, 1]);
/// # Ok::<(), SinkError>(())
/// ```
pub struct PerWorker<F> {
    factory: F,
}

impl<F> std::fmt::Debug for PerWorker<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PerWorker")
    }
}

/// Declares one sink per worker of a keyed parallel segment: see [`PerWorker`].
pub fn per_worker<F, K>(factory: F) -> PerWorker<F>
where
    F: FnMut(usize) -> Result<K, SinkError>,
{
    PerWorker { factory }
}

impl<F> PerWorker<F> {
    /// The sink of worker `worker`.
    pub fn for_worker<K>(&mut self, worker: usize) -> Result<K, SinkError>
    where
        F: FnMut(usize) -> Result<K, SinkError>,
    {
        (self.factory)(worker)
    }
}
