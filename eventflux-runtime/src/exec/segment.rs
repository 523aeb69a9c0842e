//! Segment drivers: the loop that runs one fused chain on one thread.
//!
//! A [`SourceSegment`] polls a source; a [`QueueSegment`] receives batches from an
//! [`EventQueue`](crate::queue::EventQueue). Both push every event through their chain into their
//! output, call the batch hooks, flush partial batches when their input has nothing ready,
//! forward control messages in order, and end the stream through the chain (so windows can
//! flush) and the output.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{PipelineError, StageError};
use crate::exec::checkpoint::Coordinator;
use crate::exec::output::{Output, Tally, push};
use crate::exec::site::{self, in_node};
use crate::exec::{Runtime, Segment, panicked};
use crate::metrics::{DropReason, NodeMetrics};
use crate::queue::{Message, QueueReceiver, RecvError};
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::{CheckpointId, Emit, Link, Stage, earlier};
use crate::state::{Restore, Snapshot};

/// Counts events a source emits on their way into the chain.
struct Counted<'a, C, O> {
    chain: &'a mut C,
    out: &'a mut O,
    n: u64,
}

impl<T, C: Stage<T>, O: Emit<C::Out>> Emit<T> for Counted<'_, C, O> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        self.n += 1;
        push(self.chain, self.out, item);
    }

    /// A run of known length (a slice's, a `Vec`'s, a drain's: its `size_hint` is exact) is
    /// counted once, up front, keeping the fused loop free of a counter; other runs are
    /// counted as they go.
    #[inline(always)]
    fn emit_all<I: Iterator<Item = T>>(&mut self, items: I) {
        match items.size_hint() {
            (low, Some(high)) if low == high => {
                self.n += low as u64;
                self.chain.process_all(items, self.out);
            }
            _ => {
                let mut n = 0u64;
                self.chain.process_all(items.inspect(|_| n += 1), self.out);
                self.n += n;
            }
        }
    }

    fn fail(&mut self, error: StageError) {
        self.out.fail(error);
    }

    fn emit_watermark(&mut self, watermark: crate::stage::Watermark) {
        Link::new(self.chain, self.out).emit_watermark(watermark);
    }
}

/// Runs `f` with a counting view of `out`, then reports the count to `out`.
#[inline(always)]
fn tallied<O: Output<T>, T, R>(out: &mut O, f: impl FnOnce(&mut Tally<'_, O>) -> R) -> R {
    let mut tally = Tally::new(out);
    let r = f(&mut tally);
    let n = tally.count();
    out.delivered(n);
    r
}

/// The shortest wait for a timer: a stage that keeps answering "due now" is called at most
/// this often instead of spinning a core.
const MIN_TIMER_WAIT: Duration = Duration::from_millis(1);

/// How long a source segment keeps a partial batch open while its source has nothing ready,
/// before it flushes the batch downstream anyway. Without it, a source that trickles events
/// (a few per poll, each poll `Pending`) would push a batch of a few events per poll: the
/// consumer then pays its per-batch cost for every few events, falls behind, and the queue
/// fills with tiny batches (measured: p99 source-to-sink latency of 0.3–2.7 ms at half load).
/// With it, events wait at most this long for their batch to fill.
const FLUSH_LINGER: Duration = Duration::from_micros(100);

/// Calls the chain's due timers and sends what they emitted on at once (the input is idle).
fn fire_timers<T, C: Stage<T>, O: Output<C::Out>>(
    chain: &mut C,
    output: &mut O,
) -> Result<(), PipelineError> {
    tallied(output, |out| chain.on_timer(out));
    output.on_timer();
    output.flush()
}

/// Fires the timers that are due now, if any.
#[inline(always)]
fn fire_due_timers<T, C: Stage<T>, O: Output<C::Out>>(
    chain: &mut C,
    output: &mut O,
) -> Result<(), PipelineError> {
    if next_timer(chain, output).is_some_and(|d| d.is_zero()) {
        fire_timers(chain, output)?;
    }
    Ok(())
}

/// The segment's next processing-time timer: its chain's or a fused branch's.
#[inline(always)]
fn next_timer<T, C: Stage<T>, O: Output<C::Out>>(chain: &C, output: &O) -> Option<Duration> {
    earlier(chain.next_timer(), output.next_timer())
}

/// Takes checkpoint `id` in a segment: the barrier passes the chain and goes on to the output
/// (queues carry it downstream, sinks pre-commit), then the states of the chain and of any
/// stages fused into the output are saved and acknowledged with the source's position.
#[inline(never)]
fn take_checkpoint<T, C: Stage<T>, O: Output<C::Out>>(
    cp: &Coordinator,
    segment: &str,
    id: u64,
    chain: &mut C,
    output: &mut O,
    position: Option<serde_json::Value>,
) -> Result<(), PipelineError> {
    let c = CheckpointId(id);
    tallied(output, |out| chain.on_barrier(c, out));
    output.barrier(c)?;
    let (base, full) = cp.increments(id);
    let mut snap = Snapshot::for_checkpoint(id, base, full);
    chain
        .snapshot(&mut snap)
        .and_then(|()| output.snapshot(&mut snap))
        .map_err(|source| PipelineError::State {
            segment: segment.to_string(),
            source,
        })?;
    let deltas = snap.deltas().clone();
    cp.ack(
        id,
        segment,
        snap.into_parts(),
        (&deltas, base.unwrap_or(0)),
        position,
    );
    Ok(())
}

/// Barrier `c` could not be aligned here (see [`QueueReceiver::unaligned`]): the checkpoint
/// is declined (it fails; a later one may succeed), and the barrier goes on downstream.
#[cold]
#[inline(never)]
fn decline<T, C: Stage<T>, O: Output<C::Out>>(
    cp: &Coordinator,
    segment: &str,
    c: CheckpointId,
    chain: &mut C,
    output: &mut O,
) -> Result<(), PipelineError> {
    cp.decline(
        c.0,
        segment,
        "its input's barriers did not align within the queue's capacity (one producer ran far \
         ahead of another)",
    );
    tallied(output, |out| chain.on_barrier(c, out));
    output.barrier(c)
}

/// Sinks recover to the checkpoint the run resumed from (out of line: it runs once).
#[inline(never)]
fn recover<T, O: Output<T>>(rt: &Runtime, output: &mut O) -> Result<(), PipelineError> {
    output.recover(CheckpointId(rt.recovered))
}

/// A source segment's checkpoints so far: the newest it started, the newest its sinks
/// committed.
#[derive(Default)]
struct Progress {
    started: u64,
    committed: u64,
}

impl Progress {
    fn new(cp: &Coordinator) -> Self {
        Progress {
            started: cp.completed(),
            committed: cp.completed(),
        }
    }
}

/// Between two polls: starts a due checkpoint, and commits a completed one. Kept out of line
/// (and its counters in memory), so the fused loop around it keeps its registers.
#[inline(never)]
fn source_checkpoints<S: Source, C: Stage<S::Item>, O: Output<C::Out>>(
    cp: &Coordinator,
    name: &str,
    progress: &mut Progress,
    source: &S,
    chain: &mut C,
    output: &mut O,
) -> Result<(), PipelineError> {
    if let Some(id) = cp.due(progress.started) {
        progress.started = id;
        take_checkpoint(cp, name, id, chain, output, source.position())?;
    }
    commit_completed(cp, &mut progress.committed, output)
}

/// Sinks commit what a completed checkpoint newer than `committed` covers (one atomic load
/// when there is nothing to commit; the commit itself out of line).
#[inline]
fn commit_completed<T, O: Output<T>>(
    cp: &Coordinator,
    committed: &mut u64,
    output: &mut O,
) -> Result<(), PipelineError> {
    let done = cp.completed();
    if done > *committed {
        *committed = done;
        return commit(output, done);
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn commit<T, O: Output<T>>(output: &mut O, checkpoint: u64) -> Result<(), PipelineError> {
    output.commit(CheckpointId(checkpoint))
}

/// Restores a segment's chain and output from a checkpoint.
fn restore_segment<T, C: Stage<T>, O: Output<C::Out>>(
    segment: &str,
    chain: &mut C,
    output: &mut O,
    states: &mut Restore,
) -> Result<(), PipelineError> {
    chain
        .restore(states)
        .and_then(|()| output.restore(states))
        .map_err(|source| PipelineError::State {
            segment: segment.to_string(),
            source,
        })
}

/// A source, its fused chain and its output, run on one thread.
pub struct SourceSegment<S, C, O> {
    pub(crate) name: String,
    pub(crate) source: S,
    pub(crate) chain: C,
    pub(crate) output: O,
    pub(crate) metrics: Option<Arc<NodeMetrics>>,
    /// The count of what the source emits, for the stage fused after it (see
    /// `PipelineBuilder::source_edge`): published after each poll, before the chain's
    /// `on_batch_end` publishes that stage's counts.
    pub(crate) edge: Option<Arc<NodeMetrics>>,
}

impl<S, C, O> Segment for SourceSegment<S, C, O>
where
    S: Source,
    C: Stage<S::Item> + Send,
    O: Output<C::Out>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn is_source(&self) -> bool {
        true
    }

    fn is_side_output(&self) -> bool {
        self.source.is_side_output()
    }

    fn open(&mut self) -> Result<(), PipelineError> {
        self.output.open()?;
        self.source.open().map_err(|source| PipelineError::Source {
            segment: self.name.clone(),
            source,
        })
    }

    fn run(self: Box<Self>, rt: &Runtime) -> Result<(), PipelineError> {
        // The segment's parts become locals of this frame: the optimiser can then keep a
        // stage's counters and small state in registers across the whole batch loop.
        let SourceSegment {
            name,
            mut source,
            mut chain,
            mut output,
            metrics,
            edge,
        } = *self;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let counters = Counters {
                node: metrics.as_deref(),
                edge: edge.as_deref(),
            };
            drive_source(rt, &name, &mut source, &mut chain, &mut output, counters)
        }));
        let result = settle(rt, result, &name, &mut output);
        if result.is_ok() && !source.is_side_output() {
            // Its stream is complete: it sends no more dead letters.
            rt.dead_letters.writer_done();
        }
        if result.is_ok()
            && let Some(cp) = &rt.checkpoints
        {
            cp.finished(&name, source.position());
        }
        result
    }

    fn abort(&mut self) {
        abort_output(&mut self.output);
    }

    fn plan_event_time(&mut self) {
        let w = self.chain.event_time(self.source.emits_watermarks());
        self.output.event_time(w);
    }

    fn at_most_once(&self) -> bool {
        self.source.position().is_none()
    }

    fn restore(
        &mut self,
        states: &mut Restore,
        position: Option<&serde_json::Value>,
    ) -> Result<(), PipelineError> {
        restore_segment(&self.name, &mut self.chain, &mut self.output, states)?;
        match position {
            Some(p) => self.source.seek(p).map_err(|source| PipelineError::Source {
                segment: self.name.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

/// Turns a segment's result into the run's: on any failure (an error, a panic) the output is
/// aborted — sinks get `abort`, queues are abandoned — and never finished.
fn settle<T, O: Output<T>>(
    rt: &Runtime,
    result: std::thread::Result<Result<(), PipelineError>>,
    segment: &str,
    output: &mut O,
) -> Result<(), PipelineError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            abort_output(output);
            Err(e)
        }
        Err(payload) => {
            // Read the panic's node before aborting: a sink's `abort` may run guarded code.
            let error = panicked(rt, segment, &*payload);
            abort_output(output);
            Err(error)
        }
    }
}

/// Aborts an output; a panic in a sink's `abort` is swallowed (the run has failed already, and
/// the first failure is the one reported).
fn abort_output<T, O: Output<T>>(output: &mut O) {
    let _ = catch_unwind(AssertUnwindSafe(|| output.abort()));
    let _ = site::take();
}

/// Where a source segment publishes its counts.
#[derive(Clone, Copy)]
struct Counters<'m> {
    node: Option<&'m NodeMetrics>,
    edge: Option<&'m NodeMetrics>,
}

fn drive_source<S, C, O>(
    rt: &Runtime,
    name: &str,
    source: &mut S,
    chain: &mut C,
    output: &mut O,
    counters: Counters<'_>,
) -> Result<(), PipelineError>
where
    S: Source,
    C: Stage<S::Item>,
    O: Output<C::Out>,
{
    let batch = rt.config.batch_size();
    let park = rt.config.idle().park;
    // When the open batch's first `Pending` came, if it has not been flushed since.
    let mut lingering: Option<Instant> = None;
    let timing = rt.config.metrics();
    let mut produced = 0u64;
    let mut malformed = 0u64;
    let mut stopping = false;
    // Sinks first settle what an earlier run left (see `Sink::recover`).
    recover(rt, output)?;
    let mut progress = rt
        .checkpoints
        .as_deref()
        .map_or(Progress::default(), Progress::new);
    loop {
        if rt.lifecycle.aborted() {
            return Err(PipelineError::Aborted);
        }
        if let Some(cp) = rt.checkpoints.as_deref() {
            source_checkpoints(cp, name, &mut progress, source, chain, output)?;
        }
        if !stopping && rt.lifecycle.stop_requested() {
            stopping = true;
            if !in_node(name, || source.stop()) {
                break;
            }
        }
        if timing {
            output.begin_batch(Instant::now());
        }
        let mut cx = SourceContext::new(batch, &rt.dead_letters).for_node(name);
        let (polled, n) = tallied(output, |out| {
            let mut counted = Counted {
                chain: &mut *chain,
                out,
                n: 0,
            };
            // No guard around the poll (its landing pad would cover the whole fused loop and
            // cost registers): a panic here that no stage or sink guard claims came from the
            // source, and a source segment is named after its source.
            let polled = source.poll(&mut cx, &mut counted);
            if let Some(edge) = counters.edge {
                let emitted = produced + counted.n;
                edge.publish(emitted, emitted, 0);
            }
            counted.chain.on_batch_end(counted.out);
            (polled, counted.n)
        });
        produced += n;
        if cx.dead_lettered > 0 {
            malformed += cx.dead_lettered;
            if let Some(m) = counters.node {
                m.add_dropped(DropReason::Malformed, cx.dead_lettered);
            }
        }
        if let Some(m) = counters.node {
            m.publish(produced, produced, malformed);
        }
        let failure = cx.failure.take();
        let polled = polled.map_err(|source| PipelineError::Source {
            segment: name.to_string(),
            source,
        })?;
        if let Some(source) = failure {
            return Err(PipelineError::Source {
                segment: name.to_string(),
                source,
            });
        }
        output.end_batch()?;
        match polled {
            SourcePoll::Ready => {
                fire_due_timers(chain, output)?;
            }
            SourcePoll::Pending => {
                // Flush once the batch has lingered long enough; until then wait no longer than
                // the rest of the linger, so a quiet source still flushes within it.
                let now = Instant::now();
                let since = *lingering.get_or_insert(now);
                let left = FLUSH_LINGER.saturating_sub(now.duration_since(since));
                let bound = if left.is_zero() {
                    output.flush()?;
                    lingering = None;
                    park
                } else {
                    left.min(park)
                };
                // A stage's processing-time timer bounds the wait, then fires.
                match next_timer(chain, output) {
                    None => in_node(name, || source.wait(bound)),
                    Some(due) => {
                        in_node(name, || source.wait(due.max(MIN_TIMER_WAIT).min(bound)));
                        fire_due_timers(chain, output)?;
                    }
                }
            }
            SourcePoll::Done => break,
        }
    }
    if rt.lifecycle.aborted() {
        return Err(PipelineError::Aborted);
    }
    tallied(output, |out| chain.on_end(out));
    output.finish()
}

/// A queue's consumer, its fused chain and its output, run on one thread.
pub struct QueueSegment<T, C, O> {
    pub(crate) name: String,
    pub(crate) input: QueueReceiver<T>,
    pub(crate) chain: C,
    pub(crate) output: O,
}

impl<T, C, O> Segment for QueueSegment<T, C, O>
where
    T: Send,
    C: Stage<T> + Send,
    O: Output<C::Out>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn is_source(&self) -> bool {
        false
    }

    fn open(&mut self) -> Result<(), PipelineError> {
        self.output.open()
    }

    fn run(self: Box<Self>, rt: &Runtime) -> Result<(), PipelineError> {
        let QueueSegment {
            name,
            mut input,
            mut chain,
            mut output,
        } = *self;
        let result = catch_unwind(AssertUnwindSafe(|| {
            drive_queue(rt, &name, &mut input, &mut chain, &mut output)
        }));
        // Whatever happened, this consumer stops here: closing the queue (dropping `input`)
        // unblocks its producers.
        drop(input);
        let result = settle(rt, result, &name, &mut output);
        if result.is_ok()
            && let Some(cp) = &rt.checkpoints
        {
            cp.finished(&name, None);
        }
        result
    }

    fn abort(&mut self) {
        abort_output(&mut self.output);
    }

    fn plan_event_time(&mut self) {
        let w = self.chain.event_time(self.input.watermarked());
        self.output.event_time(w);
    }

    fn restore(
        &mut self,
        states: &mut Restore,
        _: Option<&serde_json::Value>,
    ) -> Result<(), PipelineError> {
        restore_segment(&self.name, &mut self.chain, &mut self.output, states)
    }
}

/// How long an idle queue consumer waits before looking for a completed checkpoint to commit
/// (only when checkpoints are on).
const COMMIT_POLL: Duration = Duration::from_millis(50);

fn drive_queue<T, C, O>(
    rt: &Runtime,
    name: &str,
    input: &mut QueueReceiver<T>,
    chain: &mut C,
    output: &mut O,
) -> Result<(), PipelineError>
where
    C: Stage<T>,
    O: Output<C::Out>,
{
    recover(rt, output)?;
    let checkpoints = rt.checkpoints.as_deref();
    let mut committed = checkpoints.map_or(0, |c| c.completed());
    loop {
        if rt.lifecycle.aborted() {
            return Err(PipelineError::Aborted);
        }
        if let Some(cp) = checkpoints {
            commit_completed(cp, &mut committed, output)?;
        }
        let upstream = |e| match e {
            RecvError::Aborted | RecvError::UpstreamFailed => PipelineError::Aborted,
        };
        let msg = match input.try_recv().map_err(upstream)? {
            Some(msg) => msg,
            None => {
                // The input has nothing ready: whatever the messages so far produced reaches
                // sinks and downstream queues now — a live stream never waits for the next
                // batch to see a window's row. (Checked here, not after each message: a
                // control message may be absorbed, say a fan-in watermark that does not move
                // the minimum, and leave nothing to receive.)
                output.flush()?;
                // A stage with a processing-time timer bounds the wait, and so does a
                // checkpoint that may complete (its commit is made on this thread).
                let wake = match checkpoints {
                    Some(cp) if cp.in_flight(committed) => {
                        Some(next_timer(chain, output).map_or(COMMIT_POLL, |d| d.min(COMMIT_POLL)))
                    }
                    _ => next_timer(chain, output),
                };
                match wake {
                    None => input.recv().map_err(upstream)?,
                    Some(due) => match input
                        .recv_timeout(due.max(MIN_TIMER_WAIT))
                        .map_err(upstream)?
                    {
                        Some(msg) => msg,
                        None => {
                            if next_timer(chain, output).is_some_and(|d| d.is_zero()) {
                                fire_timers(chain, output)?;
                            }
                            continue;
                        }
                    },
                }
            }
        };
        match msg {
            Message::Batch(b) => {
                output.begin_batch(b.origin());
                let mut items = b.into_items();
                tallied(output, |out| {
                    chain.process_all(items.drain(..), out);
                    chain.on_batch_end(out);
                });
                input.recycle_buffer(items);
                output.end_batch()?;
                fire_due_timers(chain, output)?;
            }
            Message::Watermark(w) => {
                tallied(output, |out| chain.on_watermark(w, out));
                output.watermark(w)?;
            }
            Message::Barrier(c) => match checkpoints {
                Some(cp) if input.unaligned(c) => decline(cp, name, c, chain, output)?,
                Some(cp) => {
                    cp.aligned(c.0, input.last_alignment());
                    take_checkpoint(cp, name, c.0, chain, output, None)?;
                }
                None => {
                    tallied(output, |out| chain.on_barrier(c, out));
                    output.barrier(c)?;
                }
            },
            Message::End => break,
        }
    }
    // The end was sent before any abort could be seen by its producer; a failure elsewhere
    // that raced with it still wins, so a failed run never commits.
    if rt.lifecycle.aborted() {
        return Err(PipelineError::Aborted);
    }
    tallied(output, |out| chain.on_end(out));
    output.finish()
}
