//! Segment outputs: where the last stage of a fused segment pushes its events.
//!
//! An [`Output`] is an [`Emit`] that also follows the stream's lifecycle. The leaves are
//! [`SinkOutput`] (a sink on this thread) and [`QueueOutput`] (a batching producer into an
//! [`EventQueue`](crate::queue::EventQueue)); [`FanOut`] sends every event to two outputs and
//! [`Then`] runs a further chain of stages before an output, so a fused sub-graph with fan-out is
//! a tree of these types — statically dispatched like the chain itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::{PipelineError, SinkError, StageError};
use crate::exec::site::{SinkGuard, in_node};
use crate::metrics::NodeMetrics;
use crate::queue::QueueSender;
use crate::sink::Sink;
use crate::stage::{CheckpointId, Emit, Link, Stage, Watermark, earlier};
use crate::state::{Restore, Snapshot, StateError};

/// The end of a fused segment. See the [module docs](self).
///
/// The segment calls, in stream order: `open` once; for each input batch `begin_batch`, the
/// events, `end_batch`; `flush` when its input has nothing ready; `watermark`/`barrier` in band;
/// `finish` at end of stream. Errors (a failed sink, a stage's `fail`, an aborted queue) are
/// returned from the next of these calls. When the run fails instead, the segment calls `abort`
/// (never `finish`): sinks are aborted, queues are abandoned so their consumers fail too.
///
/// Outputs do not count events one by one: the segment counts what it emits into its output in
/// a register and reports the total through [`delivered`](Output::delivered) before each of the
/// calls above. That keeps per-event metering out of memory on the hot path.
pub trait Output<T>: Emit<T> + Send {
    /// `n` events were emitted into this output since the previous report.
    fn delivered(&mut self, n: u64);

    /// Opens sinks. Called before any source starts.
    fn open(&mut self) -> Result<(), PipelineError> {
        Ok(())
    }

    /// A new input batch whose events entered the pipeline at `origin` starts.
    fn begin_batch(&mut self, origin: Instant);

    /// The input batch is done: publish metrics, report errors.
    fn end_batch(&mut self) -> Result<(), PipelineError>;

    /// The input has nothing ready: send partial batches, flush sinks.
    fn flush(&mut self) -> Result<(), PipelineError>;

    /// Forwards a watermark after every event emitted so far.
    fn watermark(&mut self, watermark: Watermark) -> Result<(), PipelineError>;

    /// Forwards a checkpoint barrier after every event emitted so far.
    fn barrier(&mut self, checkpoint: CheckpointId) -> Result<(), PipelineError>;

    /// End of stream: flush, forward the end, close sinks.
    fn finish(&mut self) -> Result<(), PipelineError>;

    /// The run failed: abort sinks that were opened and not closed, abandon queues. Must not
    /// fail; called at most once, instead of (or after a failed) `finish`.
    fn abort(&mut self);

    /// While the pipeline is built: whether the events reaching this output are accompanied by
    /// watermarks (see [`Stage::event_time`]). Queues record it for their consumers.
    fn event_time(&mut self, watermarked: bool) {
        let _ = watermarked;
    }

    /// Processing-time timers of stages inside this output (a fused branch after a fan-out):
    /// as [`Stage::next_timer`]. The default is `None`.
    #[inline]
    fn next_timer(&self) -> Option<std::time::Duration> {
        None
    }

    /// Fires the due timers of stages inside this output. The default does nothing.
    fn on_timer(&mut self) {}

    /// Saves the state of stages fused into the output (a fused branch); called when a barrier
    /// has passed, after [`barrier`](Output::barrier).
    fn snapshot(&self, snapshot: &mut Snapshot) -> Result<(), StateError> {
        let _ = snapshot;
        Ok(())
    }

    /// Restores what [`snapshot`](Output::snapshot) saved.
    fn restore(&mut self, restore: &mut Restore) -> Result<(), StateError> {
        let _ = restore;
        Ok(())
    }

    /// Checkpoint `checkpoint` is complete: sinks commit (see [`Sink::commit`]).
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), PipelineError> {
        let _ = checkpoint;
        Ok(())
    }

    /// The pipeline resumes from `checkpoint`: sinks recover (see
    /// [`Sink::recover`]).
    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), PipelineError> {
        let _ = checkpoint;
        Ok(())
    }
}

fn stage_error(failed: &mut Option<StageError>) -> Result<(), PipelineError> {
    match failed.take() {
        None => Ok(()),
        Some(source) => Err(PipelineError::Stage {
            node: source.node().unwrap_or_default().to_string(),
            segment: String::new(),
            source,
        }),
    }
}

/// A sink as a segment output, metered under the sink's name.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
/// let reg = MetricsRegistry::new();
/// let sink = CollectSink::new();
/// let got = sink.handle();
/// let mut out = SinkOutput::new("out", sink, Some(reg.node("out", NodeKind::Sink)));
/// out.begin_batch(std::time::Instant::now());
/// out.emit(1);
/// out.delivered(1);
/// out.end_batch().unwrap();
/// out.finish().unwrap();
/// assert_eq!(got.take(), [1]);
/// ```
pub struct SinkOutput<K> {
    name: String,
    sink: K,
    metrics: Option<Arc<NodeMetrics>>,
    delivered: u64,
    in_batch: u64,
    errors: u64,
    failed_in_batch: u64,
    origin: Instant,
    error: Option<SinkError>,
    failed: Option<StageError>,
    /// A send failed or a stage failed: nothing more is sent.
    stopped: bool,
    state: SinkState,
    busy: Arc<Busy>,
}

/// Set while a sink's own code runs, with the thread (and segment) it runs on: what a `stop()`
/// that timed out reports as the node a segment is blocked in, and how a panic in `send` is
/// attributed to the sink.
#[derive(Debug, Default)]
pub struct Busy {
    flag: AtomicBool,
    /// The thread that opened the sink (the one it runs on) and that thread's name (its
    /// segment), set once at `open`.
    runner: std::sync::Mutex<Option<(std::thread::ThreadId, Option<String>)>>,
}

impl Busy {
    fn runner(&self) -> std::sync::MutexGuard<'_, Option<(std::thread::ThreadId, Option<String>)>> {
        self.runner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the sink was opened on the current thread (the thread it runs on).
    pub(crate) fn opened_here(&self) -> bool {
        self.runner()
            .as_ref()
            .is_some_and(|(id, _)| *id == std::thread::current().id())
    }

    /// If the sink is inside its own code now, the segment it runs on.
    pub fn blocked_segment(&self) -> Option<String> {
        if !self.flag.load(Ordering::Relaxed) {
            return None;
        }
        self.runner()
            .as_ref()
            .and_then(|(_, segment)| segment.clone())
    }
}

/// Where a sink is in its life, so `abort` reaches exactly the sinks that are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkState {
    New,
    Open,
    Done,
}

impl<K> std::fmt::Debug for SinkOutput<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkOutput")
            .field("name", &self.name)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl<K> SinkOutput<K> {
    /// Wraps `sink`; `metrics`, when given, receives counts and end-to-end latency.
    pub fn new(name: impl Into<String>, sink: K, metrics: Option<Arc<NodeMetrics>>) -> Self {
        Self {
            name: name.into(),
            sink,
            metrics,
            delivered: 0,
            in_batch: 0,
            errors: 0,
            failed_in_batch: 0,
            origin: Instant::now(),
            error: None,
            failed: None,
            stopped: false,
            state: SinkState::New,
            busy: Arc::default(),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &K {
        &self.sink
    }

    /// Set while the sink's own code runs (`send`, `flush`, `close`, …): a `stop()` that times
    /// out reads it to say which sink a segment is blocked in.
    pub fn busy(&self) -> Arc<Busy> {
        Arc::clone(&self.busy)
    }

    /// Runs the sink's own code as node `name`, marked busy.
    #[inline(always)]
    fn call<R>(&mut self, f: impl FnOnce(&mut K) -> R) -> R {
        self.busy.flag.store(true, Ordering::Relaxed);
        let sink = &mut self.sink;
        let r = in_node(&self.name, || f(sink));
        self.busy.flag.store(false, Ordering::Relaxed);
        r
    }

    fn check(&mut self, r: Result<(), SinkError>) -> Result<(), PipelineError> {
        let r = match self.error.take() {
            Some(e) => Err(e),
            None => r,
        };
        stage_error(&mut self.failed)?;
        r.map_err(|source| PipelineError::Sink {
            sink: self.name.clone(),
            source,
        })
    }

    /// An event that arrived after the sink failed: not delivered (kept out of line, so the
    /// per-event path is a single test).
    #[cold]
    #[inline(never)]
    fn skip(&mut self) {
        self.failed_in_batch += 1;
    }

    /// Counts the batch's deliveries (counted per batch, not per event) and publishes them.
    fn publish(&mut self) {
        let batch = std::mem::take(&mut self.in_batch);
        self.delivered += batch;
        if let Some(m) = &self.metrics {
            if batch > 0 {
                let nanos = self.origin.elapsed().as_nanos() as u64;
                m.record_latency(nanos, batch);
            }
            m.publish(self.delivered, self.delivered, self.errors);
        }
    }
}

impl<T, K: Sink<T>> Emit<T> for SinkOutput<K> {
    #[inline]
    fn emit(&mut self, item: T) {
        if self.stopped {
            // After a failure nothing more reaches the sink; the event is not delivered.
            return self.skip();
        }
        // A sink that may block is marked busy around each send (two relaxed stores), so a
        // `stop()` that times out can name it; the others cost nothing here. A panic in `send`
        // is attributed by a zero-sized guard that runs no code unless it unwinds.
        let may_block = self.sink.may_block();
        if may_block {
            self.busy.flag.store(true, Ordering::Relaxed);
        }
        let guard = SinkGuard;
        let sent = self.sink.send(item);
        std::mem::forget(guard);
        if may_block {
            self.busy.flag.store(false, Ordering::Relaxed);
        }
        if let Err(e) = sent {
            self.errors += 1;
            self.failed_in_batch += 1;
            self.stopped = true;
            if self.error.is_none() {
                self.error = Some(e);
            }
        }
    }

    fn fail(&mut self, error: StageError) {
        self.stopped = true;
        if self.failed.is_none() {
            self.failed = Some(error);
        }
    }
}

impl<T, K: Sink<T>> Output<T> for SinkOutput<K> {
    #[inline]
    fn delivered(&mut self, n: u64) {
        self.in_batch += n.saturating_sub(std::mem::take(&mut self.failed_in_batch));
    }

    fn open(&mut self) -> Result<(), PipelineError> {
        // Opened on the thread it will run on: remember it (and its segment's name).
        let me = std::thread::current();
        *self.busy.runner() = Some((me.id(), me.name().map(str::to_string)));
        let r = self.call(|s| s.open());
        if r.is_ok() {
            self.state = SinkState::Open;
        }
        self.check(r)
    }

    #[inline]
    fn begin_batch(&mut self, origin: Instant) {
        self.origin = origin;
    }

    #[inline]
    fn end_batch(&mut self) -> Result<(), PipelineError> {
        self.publish();
        self.check(Ok(()))
    }

    fn flush(&mut self) -> Result<(), PipelineError> {
        self.check(Ok(()))?;
        let r = self.call(|s| s.flush());
        self.check(r)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<(), PipelineError> {
        if let Some(m) = &self.metrics {
            m.set_watermark(watermark.0);
        }
        self.check(Ok(()))
    }

    fn barrier(&mut self, checkpoint: CheckpointId) -> Result<(), PipelineError> {
        self.check(Ok(()))?;
        let r = self.call(|s| s.pre_commit(checkpoint));
        self.check(r)
    }

    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), PipelineError> {
        self.check(Ok(()))?;
        let r = self.call(|s| s.commit(checkpoint));
        self.check(r)
    }

    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), PipelineError> {
        self.check(Ok(()))?;
        let r = self.call(|s| s.recover(checkpoint));
        self.check(r)
    }

    fn finish(&mut self) -> Result<(), PipelineError> {
        self.publish();
        self.check(Ok(()))?;
        self.state = SinkState::Done;
        let r = self.call(|s| s.close());
        self.check(r)
    }

    fn abort(&mut self) {
        self.publish();
        if self.state == SinkState::Open {
            self.state = SinkState::Done;
            self.call(|s| s.abort());
        }
    }
}

/// Batches events into an [`EventQueue`](crate::queue::EventQueue) (a `=>` edge).
///
/// A batch is sent when it is full, and a partial batch as soon as the upstream has nothing
/// ready (so quiet periods never delay events) and before any control message (so order holds).
pub struct QueueOutput<T> {
    tx: QueueSender<T>,
    buf: Vec<T>,
    batch_size: usize,
    origin: Instant,
    buf_origin: Instant,
    error: Option<PipelineError>,
    failed: Option<StageError>,
}

impl<T> std::fmt::Debug for QueueOutput<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueOutput")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<T> QueueOutput<T> {
    /// Sends into `tx` in batches of the queue's batch size.
    pub fn new(tx: QueueSender<T>) -> Self {
        let buf = tx.acquire_buffer();
        let now = Instant::now();
        Self {
            batch_size: tx.batch_size(),
            tx,
            buf,
            origin: now,
            buf_origin: now,
            error: None,
            failed: None,
        }
    }

    #[cold]
    fn send_buffer(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.error.is_some() {
            // The pipeline is already failing; nothing downstream will read these.
            self.buf.clear();
            return;
        }
        let full = std::mem::replace(&mut self.buf, self.tx.acquire_buffer());
        if let Err(e) = self.tx.send_items_from(full, self.buf_origin) {
            self.tx.release_buffer(e.item);
            // A consumer only closes its queue early when it fails, and its own thread reports
            // why; from here this is a consequence, like an abort.
            let _ = e.reason;
            self.error = Some(PipelineError::Aborted);
        }
    }

    fn check(&mut self) -> Result<(), PipelineError> {
        stage_error(&mut self.failed)?;
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<T> Emit<T> for QueueOutput<T> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        if self.buf.is_empty() {
            self.buf_origin = self.origin;
        }
        self.buf.push(item);
        if self.buf.len() >= self.batch_size {
            self.send_buffer();
        }
    }

    /// Fills the batch from the run with its length in a local (the buffer is taken out of
    /// `self` meanwhile), sending each batch as it fills.
    #[inline(always)]
    fn emit_all<I: Iterator<Item = T>>(&mut self, items: I) {
        let mut items = items;
        loop {
            let mut buf = std::mem::take(&mut self.buf);
            if buf.is_empty() {
                self.buf_origin = self.origin;
            }
            let room = self.batch_size.saturating_sub(buf.len()).max(1);
            // The loop pushes with the growth path out of line: `extend` (or `push`) over an
            // iterator of unknown length keeps a growth call in the loop body, and the
            // optimiser may then keep every event in memory around it (measured: +6
            // instructions per event on the producer of a `=>`). Pooled buffers have the
            // batch's capacity, so the growth path does not run in steady state.
            let before = buf.len();
            for item in items.by_ref().take(room) {
                if buf.len() < buf.capacity() {
                    buf.push(item);
                } else {
                    buf = push_growing(std::mem::take(&mut buf), item);
                }
            }
            let added = buf.len() - before;
            self.buf = buf;
            if self.buf.len() >= self.batch_size {
                self.send_buffer();
            }
            if added < room {
                return;
            }
        }
    }

    fn fail(&mut self, error: StageError) {
        if self.failed.is_none() {
            self.failed = Some(error);
        }
    }

    fn emit_watermark(&mut self, watermark: Watermark) {
        self.send_buffer();
        if self.error.is_none() && self.tx.watermark(watermark).is_err() {
            self.error = Some(PipelineError::Aborted);
        }
    }
}

impl<T: Send> Output<T> for QueueOutput<T> {
    /// Queues count what they carry themselves.
    #[inline]
    fn delivered(&mut self, _: u64) {}

    #[inline]
    fn begin_batch(&mut self, origin: Instant) {
        self.origin = origin;
    }

    #[inline]
    fn end_batch(&mut self) -> Result<(), PipelineError> {
        self.check()
    }

    fn flush(&mut self) -> Result<(), PipelineError> {
        self.send_buffer();
        self.check()
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<(), PipelineError> {
        self.send_buffer();
        self.check()?;
        self.tx
            .watermark(watermark)
            .map_err(|_| PipelineError::Aborted)
    }

    fn barrier(&mut self, checkpoint: CheckpointId) -> Result<(), PipelineError> {
        self.send_buffer();
        self.check()?;
        self.tx
            .barrier(checkpoint)
            .map_err(|_| PipelineError::Aborted)
    }

    fn finish(&mut self) -> Result<(), PipelineError> {
        self.send_buffer();
        self.check()?;
        self.tx.end().map_err(|_| PipelineError::Aborted)
    }

    fn abort(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.tx.release_buffer(buf);
        self.tx.abandon();
    }

    fn event_time(&mut self, watermarked: bool) {
        if watermarked {
            self.tx.mark_watermarked();
        }
    }
}

/// Sends every event to both outputs (a clone to the first, the original to the second).
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let (a, b) = (CollectSink::new(), CollectSink::new());
/// let (ha, hb) = (a.handle(), b.handle());
/// let mut out = FanOut::new(SinkOutput::new("a", a, None), SinkOutput::new("b", b, None));
/// out.emit(String::from("x"));
/// out.finish().unwrap();
/// assert_eq!((ha.take(), hb.take()), (vec!["x".to_string()], vec!["x".to_string()]));
/// ```
#[derive(Debug)]
pub struct FanOut<A, B> {
    first: A,
    second: B,
}

impl<A, B> FanOut<A, B> {
    /// Fans out to `first` and `second`.
    pub fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

#[diagnostic::on_unimplemented(
    message = "fan-out needs `{T}` to implement `Clone`",
    label = "events of type `{T}` are sent to several nodes here",
    note = "derive or implement `Clone` for `{T}`, or feed only one node"
)]
/// Items a [`FanOut`] can duplicate.
pub trait FanOutItem<T>: Clone {}
impl<T: Clone> FanOutItem<T> for T {}

impl<T: FanOutItem<T>, A: Emit<T>, B: Emit<T>> Emit<T> for FanOut<A, B> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        self.first.emit(item.clone());
        self.second.emit(item);
    }

    fn fail(&mut self, error: StageError) {
        self.first.fail(error);
    }

    fn emit_watermark(&mut self, watermark: Watermark) {
        self.first.emit_watermark(watermark);
        self.second.emit_watermark(watermark);
    }
}

fn both(a: Result<(), PipelineError>, b: Result<(), PipelineError>) -> Result<(), PipelineError> {
    a.and(b)
}

impl<T, A, B> Output<T> for FanOut<A, B>
where
    T: FanOutItem<T>,
    A: Output<T>,
    B: Output<T>,
{
    /// Every event goes to both branches.
    #[inline]
    fn delivered(&mut self, n: u64) {
        self.first.delivered(n);
        self.second.delivered(n);
    }
    fn open(&mut self) -> Result<(), PipelineError> {
        both(self.first.open(), self.second.open())
    }
    #[inline]
    fn begin_batch(&mut self, origin: Instant) {
        self.first.begin_batch(origin);
        self.second.begin_batch(origin);
    }
    #[inline]
    fn end_batch(&mut self) -> Result<(), PipelineError> {
        both(self.first.end_batch(), self.second.end_batch())
    }
    fn flush(&mut self) -> Result<(), PipelineError> {
        both(self.first.flush(), self.second.flush())
    }
    fn watermark(&mut self, w: Watermark) -> Result<(), PipelineError> {
        both(self.first.watermark(w), self.second.watermark(w))
    }
    fn barrier(&mut self, c: CheckpointId) -> Result<(), PipelineError> {
        both(self.first.barrier(c), self.second.barrier(c))
    }
    fn snapshot(&self, s: &mut Snapshot) -> Result<(), StateError> {
        self.first.snapshot(s)?;
        self.second.snapshot(s)
    }
    fn restore(&mut self, r: &mut Restore) -> Result<(), StateError> {
        self.first.restore(r)?;
        self.second.restore(r)
    }
    fn commit(&mut self, c: CheckpointId) -> Result<(), PipelineError> {
        both(self.first.commit(c), self.second.commit(c))
    }
    fn recover(&mut self, c: CheckpointId) -> Result<(), PipelineError> {
        both(self.first.recover(c), self.second.recover(c))
    }
    fn finish(&mut self) -> Result<(), PipelineError> {
        both(self.first.finish(), self.second.finish())
    }
    #[inline]
    fn next_timer(&self) -> Option<std::time::Duration> {
        earlier(self.first.next_timer(), self.second.next_timer())
    }
    fn on_timer(&mut self) {
        self.first.on_timer();
        self.second.on_timer();
    }
    fn abort(&mut self) {
        self.first.abort();
        self.second.abort();
    }
    fn event_time(&mut self, watermarked: bool) {
        self.first.event_time(watermarked);
        self.second.event_time(watermarked);
    }
}

/// Runs a chain of stages before an output: one branch of a fan-out.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let sink = CollectSink::new();
/// let got = sink.handle();
/// let mut out = Then::new(map(|x: u32| x + 1), SinkOutput::new("s", sink, None));
/// out.emit(1);
/// out.finish().unwrap();
/// assert_eq!(got.take(), [2]);
/// ```
#[derive(Debug)]
pub struct Then<C, O> {
    chain: C,
    out: O,
    emitted: u64,
}

impl<C, O> Then<C, O> {
    /// `chain`'s outputs go to `out`.
    pub fn new(chain: C, out: O) -> Self {
        Self {
            chain,
            out,
            emitted: 0,
        }
    }
}

impl<T, C, O> Emit<T> for Then<C, O>
where
    C: Stage<T>,
    O: Emit<C::Out>,
{
    #[inline(always)]
    fn emit(&mut self, item: T) {
        let mut tally = Tally::new(&mut self.out);
        self.chain.process(item, &mut tally);
        self.emitted += tally.count();
    }

    #[inline(always)]
    fn emit_all<I: Iterator<Item = T>>(&mut self, items: I) {
        let mut tally = Tally::new(&mut self.out);
        self.chain.process_all(items, &mut tally);
        self.emitted += tally.count();
    }

    fn fail(&mut self, error: StageError) {
        self.out.fail(error);
    }

    fn emit_watermark(&mut self, watermark: Watermark) {
        let mut tally = Tally::new(&mut self.out);
        self.chain.on_watermark(watermark, &mut tally);
        self.emitted += tally.count();
        self.out.emit_watermark(watermark);
    }
}

impl<C, O> Then<C, O> {
    /// Runs a hook of the chain, counting what it emits, and reports the count downstream.
    fn hook<T>(&mut self, f: impl FnOnce(&mut C, &mut Tally<'_, O>))
    where
        O: Output<T>,
    {
        let mut tally = Tally::new(&mut self.out);
        f(&mut self.chain, &mut tally);
        let n = self.emitted + tally.count();
        self.emitted = 0;
        self.out.delivered(n);
    }
}

impl<T, C, O> Output<T> for Then<C, O>
where
    C: Stage<T> + Send,
    O: Output<C::Out>,
{
    /// The chain counts its own outputs; the input count does not apply downstream.
    #[inline]
    fn delivered(&mut self, _: u64) {}
    fn open(&mut self) -> Result<(), PipelineError> {
        self.out.open()
    }
    #[inline]
    fn begin_batch(&mut self, origin: Instant) {
        self.out.begin_batch(origin);
    }
    #[inline]
    fn end_batch(&mut self) -> Result<(), PipelineError> {
        self.hook(|c, out| c.on_batch_end(out));
        self.out.end_batch()
    }
    fn flush(&mut self) -> Result<(), PipelineError> {
        self.out.flush()
    }
    fn watermark(&mut self, w: Watermark) -> Result<(), PipelineError> {
        self.hook(|c, out| c.on_watermark(w, out));
        self.out.watermark(w)
    }
    fn barrier(&mut self, cp: CheckpointId) -> Result<(), PipelineError> {
        self.hook(|c, out| c.on_barrier(cp, out));
        self.out.barrier(cp)
    }
    fn snapshot(&self, s: &mut Snapshot) -> Result<(), StateError> {
        self.chain.snapshot(s)?;
        self.out.snapshot(s)
    }
    fn restore(&mut self, r: &mut Restore) -> Result<(), StateError> {
        self.chain.restore(r)?;
        self.out.restore(r)
    }
    fn commit(&mut self, c: CheckpointId) -> Result<(), PipelineError> {
        self.out.commit(c)
    }
    fn recover(&mut self, c: CheckpointId) -> Result<(), PipelineError> {
        self.out.recover(c)
    }
    fn finish(&mut self) -> Result<(), PipelineError> {
        self.hook(|c, out| c.on_end(out));
        self.out.finish()
    }
    fn abort(&mut self) {
        self.out.abort();
    }
    fn event_time(&mut self, watermarked: bool) {
        let w = self.chain.event_time(watermarked);
        self.out.event_time(w);
    }
    #[inline]
    fn next_timer(&self) -> Option<std::time::Duration> {
        earlier(self.chain.next_timer(), self.out.next_timer())
    }
    fn on_timer(&mut self) {
        self.hook(|c, out| c.on_timer(out));
        self.out.on_timer();
    }
}

/// `buf.push(item)` when `buf` is full: out of line and by value, so the loop that calls it
/// keeps the buffer and the events in registers.
#[cold]
#[inline(never)]
fn push_growing<T>(mut buf: Vec<T>, item: T) -> Vec<T> {
    buf.push(item);
    buf
}

/// Counts the events passed to an emitter. Built on the stack around a batch so the count
/// stays in a register.
pub(crate) struct Tally<'a, O> {
    out: &'a mut O,
    n: u64,
}

impl<'a, O> Tally<'a, O> {
    #[inline(always)]
    pub(crate) fn new(out: &'a mut O) -> Self {
        Self { out, n: 0 }
    }

    #[inline(always)]
    pub(crate) fn count(&self) -> u64 {
        self.n
    }
}

impl<T, O: Emit<T>> Emit<T> for Tally<'_, O> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        self.n += 1;
        self.out.emit(item);
    }

    #[inline(always)]
    fn emit_all<I: Iterator<Item = T>>(&mut self, items: I) {
        let mut n = 0u64;
        self.out.emit_all(items.inspect(|_| n += 1));
        self.n += n;
    }

    fn fail(&mut self, error: StageError) {
        self.out.fail(error);
    }

    fn emit_watermark(&mut self, watermark: Watermark) {
        self.out.emit_watermark(watermark);
    }
}

/// Feeds one event through `chain` into `out` (the segment's inner loop).
#[inline(always)]
pub(crate) fn push<T, C: Stage<T>, O: Emit<C::Out>>(chain: &mut C, out: &mut O, item: T) {
    Link::new(chain, out).emit(item);
}

/// Routes each event to one of several queues by the hash of its key (a keyed parallel `=>`
/// edge): to the worker that owns the key's [key group](super::key_groups) — so events with
/// equal keys always take the same queue, and per-key order is preserved. At most
/// [`KEY_GROUPS`](super::KEY_GROUPS) queues.
/// Control messages (watermarks, barriers, end of stream) go to every queue.
pub struct KeyedOutput<T, F> {
    outs: Vec<QueueOutput<T>>,
    key: F,
    /// Each key group's worker (one load per event: no division on the hot path).
    owners: Box<[u32]>,
}

impl<T, F> std::fmt::Debug for KeyedOutput<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedOutput")
            .field("workers", &self.outs.len())
            .finish_non_exhaustive()
    }
}

impl<T, F> KeyedOutput<T, F> {
    /// One output per worker queue; `key` extracts the routing key.
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    /// use eventflux_runtime::exec::KeyedOutput;
    /// use eventflux_runtime::queue::{EventQueue, Message, QueueOptions};
    /// let (t0, mut r0) = EventQueue::<(u8, u32)>::channel(QueueOptions::default());
    /// let (t1, mut r1) = EventQueue::<(u8, u32)>::channel(QueueOptions::default());
    /// let mut out = KeyedOutput::new(vec![QueueOutput::new(t0), QueueOutput::new(t1)], |e: &(u8, u32)| e.0);
    /// for i in 0..100u32 { out.emit(((i % 7) as u8, i)); }
    /// out.finish().unwrap();
    /// let mut keys_seen = [None; 7];
    /// for (w, rx) in [&mut r0, &mut r1].into_iter().enumerate() {
    ///     while let Ok(Message::Batch(b)) = rx.recv() {
    ///         for &(k, _) in b.items() {
    ///             assert!(keys_seen[k as usize].replace(w).is_none_or(|v| v == w));
    ///         }
    ///     }
    /// }
    /// ```
    pub fn new(outs: Vec<QueueOutput<T>>, key: F) -> Self {
        Self::with_key_groups(outs, key, super::KEY_GROUPS)
    }

    /// [`new`](Self::new) with `groups` key groups (at least one per output) instead of
    /// [`KEY_GROUPS`](super::KEY_GROUPS): the workers' [`KeyGroups`](super::KeyGroups) must
    /// use the same number.
    ///
    /// ```
    /// use eventflux_runtime::exec::{KeyedOutput, QueueOutput};
    /// use eventflux_runtime::queue::{EventQueue, QueueOptions};
    /// let (t0, _r0) = EventQueue::<u32>::channel(QueueOptions::default());
    /// let out = KeyedOutput::with_key_groups(vec![QueueOutput::new(t0)], |x: &u32| *x, 8);
    /// # let _ = out;
    /// ```
    pub fn with_key_groups(outs: Vec<QueueOutput<T>>, key: F, groups: usize) -> Self {
        let workers = outs.len();
        let owners = (0..groups.max(1))
            .map(|g| u32::try_from(super::worker_of(g, workers, groups)).unwrap_or(u32::MAX))
            .collect();
        Self { outs, key, owners }
    }
}

impl<T, K, F> Emit<T> for KeyedOutput<T, F>
where
    F: FnMut(&T) -> K,
    K: std::hash::Hash,
{
    #[inline]
    fn emit(&mut self, item: T) {
        // The owner of the key's group (see `key_group`).
        let group = super::key_group(&(self.key)(&item), self.owners.len());
        let i = self.owners.get(group).map_or(usize::MAX, |&w| w as usize);
        if let Some(out) = self.outs.get_mut(i) {
            out.emit(item);
        }
    }

    fn fail(&mut self, error: StageError) {
        if let Some(out) = self.outs.first_mut() {
            out.fail(error);
        }
    }

    fn emit_watermark(&mut self, watermark: Watermark) {
        for out in &mut self.outs {
            out.emit_watermark(watermark);
        }
    }
}

impl<T, K, F> Output<T> for KeyedOutput<T, F>
where
    T: Send,
    F: FnMut(&T) -> K + Send,
    K: std::hash::Hash,
{
    #[inline]
    fn delivered(&mut self, _: u64) {}
    #[inline]
    fn begin_batch(&mut self, origin: Instant) {
        for o in &mut self.outs {
            o.begin_batch(origin);
        }
    }
    fn end_batch(&mut self) -> Result<(), PipelineError> {
        self.outs.iter_mut().try_for_each(|o| o.end_batch())
    }
    fn flush(&mut self) -> Result<(), PipelineError> {
        self.outs.iter_mut().try_for_each(|o| o.flush())
    }
    fn watermark(&mut self, w: Watermark) -> Result<(), PipelineError> {
        self.outs.iter_mut().try_for_each(|o| o.watermark(w))
    }
    fn barrier(&mut self, c: CheckpointId) -> Result<(), PipelineError> {
        self.outs.iter_mut().try_for_each(|o| o.barrier(c))
    }
    fn finish(&mut self) -> Result<(), PipelineError> {
        self.outs.iter_mut().try_for_each(|o| o.finish())
    }
    fn abort(&mut self) {
        for o in &mut self.outs {
            o.abort();
        }
    }
    fn event_time(&mut self, watermarked: bool) {
        for o in &mut self.outs {
            o.event_time(watermarked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{EventQueue, Message, QueueOptions};

    /// Runs handed to a queue output fill and send the same batches as events one at a time:
    /// full batches as they fill (across runs), the rest at `finish`.
    #[test]
    fn runs_and_single_events_make_the_same_batches() {
        let batches = |runs: bool| -> Vec<Vec<u32>> {
            let options = QueueOptions {
                batch_size: 4,
                slots: 16,
                ..QueueOptions::default()
            };
            let (tx, mut rx) = EventQueue::<u32>::channel(options);
            let mut out = QueueOutput::new(tx);
            for run in [0..3u32, 3..3, 3..12, 12..13, 13..17] {
                if runs {
                    out.emit_all(run);
                } else {
                    run.for_each(|x| out.emit(x));
                }
            }
            Output::<u32>::finish(&mut out).expect("finishes");
            let mut got = Vec::new();
            while let Ok(Message::Batch(b)) = rx.recv() {
                got.push(b.items().to_vec());
            }
            got
        };
        let want: Vec<Vec<u32>> = vec![
            vec![0, 1, 2, 3],
            vec![4, 5, 6, 7],
            vec![8, 9, 10, 11],
            vec![12, 13, 14, 15],
            vec![16],
        ];
        assert_eq!(batches(false), want);
        assert_eq!(batches(true), want);
    }
}
