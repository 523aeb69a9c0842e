//! `EventQueue`: the bounded, lock-free hand-off between two threads of a pipeline.
//!
//! A queue carries **batches** of events (pooled `Vec`s, see [`EventPool`]) plus in-band
//! **control messages**: watermarks, checkpoint barriers and end of stream. One batch costs a few
//! atomic operations whatever its length, which is what makes a thread hop cheap.
//!
//! # Guarantees
//! - **Order.** Per producer, the consumer sees batches and control messages in the order the
//!   producer sent them (minus batches a drop policy discarded). Between producers there is no
//!   order.
//! - **Control is never dropped.** Control messages travel on a separate lane that always blocks
//!   when full; each batch carries a sequence number and each control message the sequence
//!   number it follows, so the consumer re-interleaves them exactly. Drop policies therefore apply
//!   to batches only.
//! - **Conservation.** Every event offered is either delivered or counted as dropped (evicted or
//!   rejected) in the queue's [`QueueMetrics`]: after the queue is drained,
//!   `delivered + dropped == pushed`.
//! - **Fan-in.** A sender can be cloned; each clone is a producer. The consumer forwards the
//!   *minimum* watermark over producers that have not ended, a barrier once every live producer
//!   has sent it, and end of stream once every producer has ended and the queue is empty.
//! - **A failure is never an end of stream.** Only [`QueueSender::end`] ends a producer's
//!   stream. A sender dropped without it (its thread failed or panicked) *abandons* the queue:
//!   the consumer's [`recv`](QueueReceiver::recv) returns [`RecvError::UpstreamFailed`] and no
//!   [`Message::End`] ever follows, so nothing downstream flushes or commits a partial stream.
//! - **Drop policies act on whole batches**, the unit of transfer. With `batch_size = 1` they are
//!   per event.
//!
//! ```
//! use eventflux_runtime::queue::{EventQueue, Message, QueueOptions};
//! let (mut tx, mut rx) = EventQueue::<u32>::channel(QueueOptions::default());
//! let mut batch = tx.acquire_buffer();
//! batch.extend([1, 2, 3]);
//! tx.send_items(batch).unwrap();
//! tx.end().unwrap();
//! match rx.recv().unwrap() {
//!     Message::Batch(b) => { assert_eq!(b.items(), &[1, 2, 3]); rx.recycle(b); }
//!     other => panic!("{other:?}"),
//! }
//! assert!(matches!(rx.recv().unwrap(), Message::End));
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::backpressure::{Backpressure, Lane, SendError, SendFailure, SendOutcome};
use crate::idle::IdleStrategy;
use crate::metrics::QueueMetrics;
use crate::pool::EventPool;
use crate::stage::{CheckpointId, Watermark};

/// Capacity of the control lane (control messages are rare; a full lane blocks its producer).
const CONTROL_CAPACITY: usize = 1024;

/// Buffers a producer can hold at once: the batch being sent and the next one being filled.
const BUFFERS_PER_PRODUCER: usize = 2;

/// A batch of events in flight.
pub struct Batch<T> {
    seq: u64,
    /// The producer that sent it (for barrier alignment).
    producer: usize,
    origin: Instant,
    enqueued: Instant,
    items: Vec<T>,
}

impl<T> fmt::Debug for Batch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("seq", &self.seq)
            .field("len", &self.items.len())
            .finish()
    }
}

impl<T> Batch<T> {
    /// The events.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the first event of this batch (or of the batch it was derived from) entered the
    /// pipeline.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The buffer, to drain and hand back with [`QueueReceiver::recycle`].
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// What a consumer receives.
#[derive(Debug)]
pub enum Message<T> {
    /// Events.
    Batch(Batch<T>),
    /// Event time advanced (the minimum over producers).
    Watermark(Watermark),
    /// Every live producer passed this checkpoint barrier.
    Barrier(CheckpointId),
    /// Every producer ended and everything was delivered. Repeats on further calls.
    End,
}

/// Why [`QueueReceiver::recv`] returned without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The pipeline is aborting.
    #[error("the pipeline is aborting")]
    Aborted,
    /// A producer was dropped without ending its stream: it failed.
    #[error("a producer failed before ending its stream")]
    UpstreamFailed,
}

/// How a queue is built.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// A name for metrics.
    pub name: String,
    /// Batches the queue holds (≥ 1; ignored for `Unbounded`).
    pub slots: usize,
    /// Events per batch, and the capacity of pooled buffers.
    pub batch_size: usize,
    /// What a producer does when the queue is full.
    pub backpressure: Backpressure,
    /// How waiting threads idle.
    pub idle: IdleStrategy,
    /// Whether to time batches in the queue (one clock read per batch on each side).
    pub timing: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            name: "queue".into(),
            slots: 64,
            batch_size: 1024,
            backpressure: Backpressure::Block,
            idle: IdleStrategy::balanced(),
            timing: true,
        }
    }
}

#[derive(Debug)]
enum ControlKind {
    Watermark(Watermark),
    Barrier(CheckpointId),
    End,
    /// The producer was dropped without ending: it failed.
    Abandoned,
}

#[derive(Debug)]
struct Control {
    /// Delivered after every batch with `seq < after` from the same producer.
    after: u64,
    producer: usize,
    kind: ControlKind,
}

struct Shared<T> {
    data: Lane<Batch<T>>,
    control: Lane<Control>,
    next_seq: AtomicU64,
    producers: AtomicUsize,
    pool: EventPool<T>,
    metrics: Arc<QueueMetrics>,
    idle: IdleStrategy,
    abort: Arc<AtomicBool>,
    timing: bool,
    /// Some producer's events come with watermarks (set while the pipeline is built).
    watermarked: AtomicBool,
}

/// Constructor namespace for queues.
pub struct EventQueue<T>(std::marker::PhantomData<T>);

impl<T> EventQueue<T> {
    /// A standalone queue with its own metrics and abort flag.
    pub fn channel(options: QueueOptions) -> (QueueSender<T>, QueueReceiver<T>) {
        let capacity = if options.backpressure == Backpressure::Unbounded {
            0
        } else {
            (options.slots.max(1) * options.batch_size.max(1)) as u64
        };
        let metrics = Arc::new(QueueMetrics::new(options.name.clone(), capacity));
        Self::with_parts(options, metrics, Arc::new(AtomicBool::new(false)))
    }

    /// A queue reporting into `metrics` and giving up its waits when `abort` is set.
    pub fn with_parts(
        options: QueueOptions,
        metrics: Arc<QueueMetrics>,
        abort: Arc<AtomicBool>,
    ) -> (QueueSender<T>, QueueReceiver<T>) {
        let slots = options.slots.max(1);
        let pool = EventPool::new(slots + 64, options.batch_size);
        // Enough buffers for a full queue, the one being drained, and per producer the one being
        // sent plus the one being filled: a bounded queue never allocates after construction,
        // however the load varies.
        if options.backpressure != Backpressure::Unbounded {
            pool.prefill(slots + 1 + BUFFERS_PER_PRODUCER);
        }
        let shared = Arc::new(Shared {
            data: Lane::new(slots, options.backpressure),
            control: Lane::new(CONTROL_CAPACITY, Backpressure::Block),
            next_seq: AtomicU64::new(0),
            producers: AtomicUsize::new(1),
            pool,
            metrics,
            idle: options.idle,
            abort,
            timing: options.timing,
            watermarked: AtomicBool::new(false),
        });
        let tx = QueueSender {
            shared: Arc::clone(&shared),
            producer: 0,
            ended: false,
        };
        let rx = QueueReceiver {
            shared,
            held: None,
            pending: None,
            aligning: VecDeque::new(),
            release: false,
            aligning_since: None,
            held_events: 0,
            hold_limit: slots * options.batch_size.max(1),
            unaligned: None,
            last_alignment: Duration::ZERO,
            producers: Vec::new(),
            ended: 0,
            watermark: None,
            barrier: None,
            finished: false,
            failed: false,
        };
        (tx, rx)
    }
}

/// The producing end of an [`EventQueue`]. Clone it for fan-in: each clone is a producer.
pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
    producer: usize,
    ended: bool,
}

impl<T> fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueSender")
            .field("producer", &self.producer)
            .field("ended", &self.ended)
            .finish()
    }
}

impl<T> Clone for QueueSender<T> {
    /// A new producer (registered before this one can end, so end of stream waits for it).
    fn clone(&self) -> Self {
        let producer = self.shared.producers.fetch_add(1, Ordering::SeqCst);
        if self.shared.data.strategy() != Backpressure::Unbounded {
            self.shared.pool.prefill(BUFFERS_PER_PRODUCER);
        }
        Self {
            shared: Arc::clone(&self.shared),
            producer,
            ended: false,
        }
    }
}

impl<T> QueueSender<T> {
    /// An empty buffer from the queue's pool, with room for a whole batch.
    #[inline]
    pub fn acquire_buffer(&self) -> Vec<T> {
        self.shared.pool.acquire()
    }

    /// Returns a buffer to the queue's pool.
    #[inline]
    pub fn release_buffer(&self, buffer: Vec<T>) {
        self.shared.pool.release(buffer);
    }

    /// The batch size the pool's buffers are made for.
    pub fn batch_size(&self) -> usize {
        self.shared.pool.batch_size()
    }

    /// The queue's backpressure strategy.
    pub fn backpressure(&self) -> Backpressure {
        self.shared.data.strategy()
    }

    /// The queue's metrics.
    pub fn metrics(&self) -> &Arc<QueueMetrics> {
        &self.shared.metrics
    }

    /// Sends `items` as one batch originating now. Dropped batches are counted and their buffers
    /// recycled; see [`send_batch`](Self::send_batch) to get them back instead.
    pub fn send_items(&mut self, items: Vec<T>) -> Result<(), SendError<Vec<T>>> {
        self.send_items_from(items, Instant::now())
    }

    /// Sends `items` as one batch whose events entered the pipeline at `origin`.
    /// Empty buffers are recycled without sending.
    pub fn send_items_from(
        &mut self,
        items: Vec<T>,
        origin: Instant,
    ) -> Result<(), SendError<Vec<T>>> {
        if items.is_empty() {
            self.release_buffer(items);
            return Ok(());
        }
        match self.send_batch(items, origin) {
            Ok(outcome) => {
                if let Some(dropped) = outcome.into_dropped() {
                    self.release_buffer(dropped.into_items());
                }
                Ok(())
            }
            Err(e) => Err(SendError {
                item: e.item.into_items(),
                reason: e.reason,
            }),
        }
    }

    /// Sends one batch under the queue's strategy, handing back whatever was dropped (the
    /// rejected batch for `DropNewest`, the evicted one for `DropOldest`). Drops are counted.
    pub fn send_batch(
        &mut self,
        items: Vec<T>,
        origin: Instant,
    ) -> Result<SendOutcome<Batch<T>>, SendError<Batch<T>>> {
        let s = &*self.shared;
        let n = items.len() as u64;
        let batch = Batch {
            seq: s.next_seq.fetch_add(1, Ordering::SeqCst),
            producer: self.producer,
            origin,
            enqueued: if s.timing { Instant::now() } else { origin },
            items,
        };
        s.metrics.pushed.fetch_add(n, Ordering::Relaxed);
        match s
            .data
            .send(batch, &s.idle, &s.abort, Some(&s.metrics.blocked_ns))
        {
            Ok(SendOutcome::Sent) => {
                s.metrics.on_enqueued(n);
                Ok(SendOutcome::Sent)
            }
            Ok(SendOutcome::Evicted(old)) => {
                let m = old.len() as u64;
                s.metrics.on_enqueued(n);
                s.metrics.on_dequeued(m);
                s.metrics.evicted.fetch_add(m, Ordering::Relaxed);
                Ok(SendOutcome::Evicted(old))
            }
            Ok(SendOutcome::Rejected(b)) => {
                s.metrics.rejected.fetch_add(n, Ordering::Relaxed);
                Ok(SendOutcome::Rejected(b))
            }
            Err(e) => {
                // Not offered after all: keep `pushed` exact.
                s.metrics.pushed.fetch_sub(n, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn control(&mut self, kind: ControlKind) -> Result<(), SendFailure> {
        let s = &*self.shared;
        let msg = Control {
            after: s.next_seq.load(Ordering::SeqCst),
            producer: self.producer,
            kind,
        };
        match s.control.send(msg, &s.idle, &s.abort, None) {
            Ok(_) => {
                s.data.not_empty.notify();
                Ok(())
            }
            Err(e) => Err(e.reason),
        }
    }

    /// Sends a watermark after everything sent so far.
    pub fn watermark(&mut self, watermark: Watermark) -> Result<(), SendFailure> {
        self.control(ControlKind::Watermark(watermark))
    }

    /// Sends a checkpoint barrier after everything sent so far.
    pub fn barrier(&mut self, checkpoint: CheckpointId) -> Result<(), SendFailure> {
        self.control(ControlKind::Barrier(checkpoint))
    }

    /// Ends this producer's stream. Further calls do nothing.
    ///
    /// This is the only way a stream ends: a sender dropped without `end` abandons the queue
    /// (see the [module docs](self)).
    pub fn end(&mut self) -> Result<(), SendFailure> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        self.control(ControlKind::End)
    }

    /// Declares that this producer's events come with watermarks (see
    /// [`Stage::event_time`](crate::Stage::event_time)); the consumer reads it with
    /// [`QueueReceiver::watermarked`].
    pub fn mark_watermarked(&self) {
        self.shared.watermarked.store(true, Ordering::SeqCst);
    }

    /// Tells the consumer that this producer failed: it receives
    /// [`RecvError::UpstreamFailed`] instead of an end of stream. Dropping a sender that has not
    /// ended does the same.
    pub fn abandon(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        // Fails only when the consumer is gone or the pipeline aborts: nobody is listening then.
        let _ = self.control(ControlKind::Abandoned);
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// A message held back by barrier alignment.
enum Held<T> {
    Data(Batch<T>),
    Control(Control),
}

impl<T> Held<T> {
    fn producer(&self) -> usize {
        match self {
            Held::Data(b) => b.producer,
            Held::Control(c) => c.producer,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ProducerState {
    ended: bool,
    watermark: Option<Watermark>,
    barrier: Option<CheckpointId>,
}

/// The consuming end of an [`EventQueue`]. Dropping it closes the queue: blocked and later
/// sends fail with [`SendFailure::Closed`].
pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
    held: Option<Batch<T>>,
    pending: Option<Control>,
    /// Barrier alignment: what producers that already passed a barrier the others have not
    /// sent after it, in order, held back until the barrier is aligned.
    aligning: VecDeque<Held<T>>,
    /// The aligned barrier advanced: held-back items may be released.
    release: bool,
    /// When the first producer passed a barrier the others have not (alignment started).
    aligning_since: Option<Instant>,
    /// Events in `aligning`, and the most it may hold (the queue's capacity in events): past
    /// that, alignment gives up rather than buffer without bound.
    held_events: usize,
    hold_limit: usize,
    /// Barriers up to this one gave up alignment: their checkpoints must not be taken here.
    unaligned: Option<CheckpointId>,
    /// How long the last barrier took to align.
    last_alignment: Duration,
    producers: Vec<ProducerState>,
    ended: usize,
    watermark: Option<Watermark>,
    barrier: Option<CheckpointId>,
    finished: bool,
    failed: bool,
}

impl<T> fmt::Debug for QueueReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueReceiver")
            .field("ended_producers", &self.ended)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<T> QueueReceiver<T> {
    /// Receives the next message, waiting (spin → yield → park) while there is none.
    pub fn recv(&mut self) -> Result<Message<T>, RecvError> {
        // Without a deadline the wait returns only with a message (or an error).
        self.recv_until(None)?.ok_or(RecvError::Aborted)
    }

    /// Receives the next message, waiting at most `timeout` (`Ok(None)` if none came): how a
    /// consumer with processing-time timers waits.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message<T>>, RecvError> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Receives the next message, waiting (spin → yield → park) until one is ready or
    /// `deadline` passes.
    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Option<Message<T>>, RecvError> {
        loop {
            if let Some(m) = self.poll()? {
                return Ok(Some(m));
            }
            let shared = Arc::clone(&self.shared);
            let ready = shared
                .data
                .not_empty
                .wait_until(&shared.idle, &shared.abort, deadline, || {
                    (!shared.data.is_empty() || !shared.control.is_empty()).then_some(())
                })
                .map_err(|_| RecvError::Aborted)?;
            if ready.is_none() {
                return self.poll();
            }
        }
    }

    /// How long the last barrier delivered took to align: from the first producer's barrier to
    /// the last one's (zero with one producer).
    pub fn last_alignment(&self) -> Duration {
        self.last_alignment
    }

    /// Whether some producer declared that its events come with watermarks.
    pub fn watermarked(&self) -> bool {
        self.shared.watermarked.load(Ordering::SeqCst)
    }

    /// Receives the next message if one is ready now (`Ok(None)` if none is).
    pub fn try_recv(&mut self) -> Result<Option<Message<T>>, RecvError> {
        self.poll()
    }

    /// Whether nothing is ready to receive right now.
    pub fn is_empty(&self) -> bool {
        self.held.is_none()
            && self.pending.is_none()
            && self.shared.data.is_empty()
            && self.shared.control.is_empty()
    }

    /// Returns a drained batch's buffer to the pool (no allocation in steady state).
    #[inline]
    pub fn recycle(&self, batch: Batch<T>) {
        self.shared.pool.release(batch.items);
    }

    /// Returns a buffer to the pool.
    #[inline]
    pub fn recycle_buffer(&self, buffer: Vec<T>) {
        self.shared.pool.release(buffer);
    }

    /// The queue's metrics.
    pub fn metrics(&self) -> &Arc<QueueMetrics> {
        &self.shared.metrics
    }

    /// The pool's counters.
    pub fn pool_stats(&self) -> crate::pool::PoolStats {
        self.shared.pool.stats()
    }

    /// Whether barrier `checkpoint` was delivered without alignment: while it aligned, the
    /// producers already past it sent more than the queue's capacity in events, so rather than
    /// buffer without bound the queue let them through. A checkpoint must not be taken at such
    /// a barrier (the state would include events from after it): the segment declines it, and
    /// a later checkpoint, whose barriers align in time, succeeds.
    pub fn unaligned(&self, checkpoint: CheckpointId) -> bool {
        self.unaligned.is_some_and(|u| checkpoint <= u)
    }

    /// Whether `producer` passed a barrier that is not aligned yet: what it sends next waits.
    fn blocked(&self, producer: usize) -> bool {
        self.producers
            .get(producer)
            .and_then(|p| p.barrier)
            .is_some_and(|b| {
                self.barrier.is_none_or(|aligned| b > aligned)
                    && self.unaligned.is_none_or(|u| b > u)
            })
    }

    /// Holds back batch `b` of a blocked producer; past the limit, gives up aligning the
    /// barriers passed so far (see [`unaligned`](Self::unaligned)).
    fn hold(&mut self, b: Batch<T>) {
        self.held_events += b.len();
        self.aligning.push_back(Held::Data(b));
        if self.held_events > self.hold_limit {
            self.unaligned = self.producers.iter().filter_map(|p| p.barrier).max();
            self.release = true;
        }
    }

    /// The first held-back item whose producer is no longer blocked (its order kept).
    fn released(&mut self) -> Option<Held<T>> {
        if !self.release {
            return None;
        }
        let i = self
            .aligning
            .iter()
            .position(|h| !self.blocked(h.producer()));
        match i {
            Some(i) => {
                let h = self.aligning.remove(i);
                if let Some(Held::Data(b)) = &h {
                    self.held_events = self.held_events.saturating_sub(b.len());
                }
                h
            }
            None => {
                self.release = false;
                None
            }
        }
    }

    fn take_batch(&mut self) -> Option<Message<T>> {
        let b = self.held.take()?;
        if self.blocked(b.producer) {
            self.hold(b);
            return None;
        }
        Some(self.deliver(b))
    }

    fn deliver(&self, b: Batch<T>) -> Message<T> {
        let m = &self.shared.metrics;
        let n = b.len() as u64;
        m.delivered.fetch_add(n, Ordering::Relaxed);
        m.on_dequeued(n);
        if self.shared.timing {
            m.wait.record_n(b.enqueued.elapsed().as_nanos() as u64, n);
        }
        Message::Batch(b)
    }

    /// Applies a control message, or holds it back if its producer is blocked.
    fn control(&mut self, c: Control) -> Option<Message<T>> {
        if self.blocked(c.producer) {
            self.aligning.push_back(Held::Control(c));
            return None;
        }
        self.apply(c)
    }

    fn poll(&mut self) -> Result<Option<Message<T>>, RecvError> {
        if self.failed {
            return Err(RecvError::UpstreamFailed);
        }
        if self.finished {
            return Ok(Some(Message::End));
        }
        loop {
            // What waited for a barrier to align goes first, in its producers' order.
            match self.released() {
                Some(Held::Data(b)) => return Ok(Some(self.deliver(b))),
                Some(Held::Control(c)) => {
                    if let Some(m) = self.control(c) {
                        return Ok(Some(m));
                    }
                    continue;
                }
                None => {}
            }
            // Data first, then control: a control message that must precede the batch we hold
            // was pushed before it, so it is visible once we hold the batch.
            if self.held.is_none() {
                self.held = self.shared.data.pop();
            }
            if self.pending.is_none() {
                self.pending = self.shared.control.pop();
            }
            if self
                .pending
                .as_ref()
                .is_some_and(|c| matches!(c.kind, ControlKind::Abandoned))
            {
                // A failure overtakes whatever its producer sent before: nothing downstream
                // may act on a stream that will never end.
                self.failed = true;
                return Err(RecvError::UpstreamFailed);
            }
            match (&self.pending, &self.held) {
                (Some(c), Some(b)) if b.seq < c.after => {
                    if let Some(m) = self.take_batch() {
                        return Ok(Some(m));
                    }
                }
                (Some(_), _) => {
                    if let Some(c) = self.pending.take()
                        && let Some(m) = self.control(c)
                    {
                        return Ok(Some(m));
                    }
                }
                (None, Some(_)) => {
                    if let Some(m) = self.take_batch() {
                        return Ok(Some(m));
                    }
                }
                (None, None) => {
                    let registered = self.shared.producers.load(Ordering::SeqCst);
                    if self.ended >= registered && self.aligning.is_empty() {
                        self.finished = true;
                        return Ok(Some(Message::End));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn apply(&mut self, c: Control) -> Option<Message<T>> {
        if self.producers.len() <= c.producer {
            self.producers
                .resize(c.producer + 1, ProducerState::default());
        }
        match c.kind {
            ControlKind::Watermark(w) => {
                let p = &mut self.producers[c.producer];
                p.watermark = Some(p.watermark.map_or(w, |old| old.max(w)));
                self.advance_watermark()
            }
            ControlKind::Barrier(id) => {
                self.producers[c.producer].barrier = Some(id);
                if self.aligning_since.is_none() && self.barrier.is_none_or(|b| id > b) {
                    self.aligning_since = Some(Instant::now());
                }
                self.advance_barrier()
            }
            ControlKind::Abandoned => None,
            ControlKind::End => {
                if !self.producers[c.producer].ended {
                    self.producers[c.producer].ended = true;
                    self.ended += 1;
                }
                self.advance_watermark().or_else(|| self.advance_barrier())
            }
        }
    }

    /// The minimum over live producers, if every live producer has sent one.
    fn live_min<K: Ord + Copy>(&self, f: impl Fn(&ProducerState) -> Option<K>) -> Option<K> {
        let registered = self.shared.producers.load(Ordering::SeqCst);
        let mut min: Option<K> = None;
        let mut any_live = false;
        for i in 0..registered {
            let p = self.producers.get(i).copied().unwrap_or_default();
            if p.ended {
                continue;
            }
            any_live = true;
            let v = f(&p)?;
            min = Some(min.map_or(v, |m: K| m.min(v)));
        }
        if any_live { min } else { None }
    }

    fn advance_watermark(&mut self) -> Option<Message<T>> {
        let w = self.live_min(|p| p.watermark)?;
        if self.watermark.is_none_or(|old| w > old) {
            self.watermark = Some(w);
            return Some(Message::Watermark(w));
        }
        None
    }

    fn advance_barrier(&mut self) -> Option<Message<T>> {
        let b = self.live_min(|p| p.barrier)?;
        if self.barrier.is_none_or(|old| b > old) {
            self.barrier = Some(b);
            self.release = !self.aligning.is_empty();
            self.last_alignment = self
                .aligning_since
                .take()
                .map_or(Duration::ZERO, |t| t.elapsed());
            // A producer already past the next barrier starts the next alignment now.
            if self
                .producers
                .iter()
                .any(|p| p.barrier.is_some_and(|x| x > b))
            {
                self.aligning_since = Some(Instant::now());
            }
            return Some(Message::Barrier(b));
        }
        None
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        self.shared.data.close();
        self.shared.control.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(slots: usize, bp: Backpressure) -> QueueOptions {
        QueueOptions {
            slots,
            batch_size: 4,
            backpressure: bp,
            ..QueueOptions::default()
        }
    }

    fn drain(rx: &mut QueueReceiver<u32>) -> Vec<String> {
        let mut log = Vec::new();
        loop {
            match rx.recv().unwrap() {
                Message::Batch(b) => {
                    log.push(format!("{:?}", b.items()));
                    rx.recycle(b);
                }
                Message::Watermark(w) => log.push(format!("wm{}", w.0)),
                Message::Barrier(c) => log.push(format!("cp{}", c.0)),
                Message::End => {
                    log.push("end".into());
                    return log;
                }
            }
        }
    }

    #[test]
    fn control_is_interleaved_in_order_and_survives_drops() {
        let (mut tx, mut rx) = EventQueue::<u32>::channel(opts(2, Backpressure::DropOldest));
        tx.send_items(vec![1]).unwrap();
        tx.watermark(Watermark(5)).unwrap();
        tx.send_items(vec![2]).unwrap();
        tx.send_items(vec![3]).unwrap(); // evicts [1]
        tx.barrier(CheckpointId(1)).unwrap();
        tx.send_items(vec![4]).unwrap(); // evicts [2]
        tx.end().unwrap();
        assert_eq!(drain(&mut rx), ["wm5", "[3]", "cp1", "[4]", "end"]);
        let m = rx.metrics();
        assert_eq!((m.pushed(), m.delivered(), m.dropped()), (4, 2, 2));
    }

    /// Barrier alignment: once a producer passes barrier n, what it sends next (events and
    /// control alike) waits until every live producer has passed n, so the barrier divides the
    /// merged stream exactly as it divides each producer's.
    #[test]
    fn barriers_are_aligned_across_producers() {
        let (mut a, mut rx) = EventQueue::<u32>::channel(opts(16, Backpressure::Block));
        let mut b = a.clone();
        a.send_items(vec![1]).unwrap();
        a.barrier(CheckpointId(1)).unwrap();
        a.send_items(vec![2]).unwrap();
        a.watermark(Watermark(50)).unwrap();
        a.barrier(CheckpointId(2)).unwrap();
        a.send_items(vec![3]).unwrap();
        b.watermark(Watermark(40)).unwrap();
        b.send_items(vec![10]).unwrap();
        b.barrier(CheckpointId(1)).unwrap();
        b.send_items(vec![11]).unwrap();
        b.barrier(CheckpointId(2)).unwrap();
        b.end().unwrap();
        a.end().unwrap();
        // (`wm50`: once `b` has ended, `a`'s watermark is the minimum.)
        assert_eq!(
            drain(&mut rx),
            [
                "[1]", "[10]", "cp1", "[2]", "wm40", "[11]", "cp2", "[3]", "wm50", "end"
            ]
        );
    }

    /// Alignment holds back at most the queue's capacity in events (here 2 slots of 4): past
    /// that, the held events go on without waiting, and the barrier is marked unaligned (no
    /// checkpoint may be taken at it). Below the limit it aligns as usual.
    #[test]
    fn alignment_gives_up_rather_than_buffer_without_bound() {
        let run = |late: &[&[u32]]| {
            let (mut a, mut rx) = EventQueue::<u32>::channel(opts(2, Backpressure::Unbounded));
            let mut b = a.clone();
            a.send_items(vec![1]).unwrap();
            a.barrier(CheckpointId(1)).unwrap();
            for items in late {
                a.send_items(items.to_vec()).unwrap();
            }
            b.send_items(vec![20]).unwrap();
            b.barrier(CheckpointId(1)).unwrap();
            b.send_items(vec![21]).unwrap();
            a.end().unwrap();
            b.end().unwrap();
            let log = drain(&mut rx);
            (
                log,
                rx.unaligned(CheckpointId(1)),
                rx.unaligned(CheckpointId(2)),
            )
        };
        assert_eq!(
            run(&[&[2, 3, 4, 5], &[6, 7, 8, 9]]),
            (
                vec![
                    "[1]",
                    "[20]",
                    "cp1",
                    "[2, 3, 4, 5]",
                    "[6, 7, 8, 9]",
                    "[21]",
                    "end"
                ]
                .into_iter()
                .map(String::from)
                .collect(),
                false,
                false
            ),
            "8 events held: aligned"
        );
        assert_eq!(
            run(&[&[2, 3, 4, 5], &[6, 7, 8, 9], &[10]]),
            (
                vec![
                    "[1]",
                    "[2, 3, 4, 5]",
                    "[6, 7, 8, 9]",
                    "[10]",
                    "[20]",
                    "cp1",
                    "[21]",
                    "end"
                ]
                .into_iter()
                .map(String::from)
                .collect(),
                true,
                false
            ),
            "9 events would be held: alignment given up"
        );
    }

    #[test]
    fn fan_in_forwards_min_watermark_and_waits_for_every_end() {
        let (mut a, mut rx) = EventQueue::<u32>::channel(opts(8, Backpressure::Block));
        let mut b = a.clone();
        a.watermark(Watermark(10)).unwrap();
        assert!(rx.try_recv().unwrap().is_none(), "b has no watermark yet");
        b.watermark(Watermark(7)).unwrap();
        assert!(matches!(
            rx.try_recv(),
            Ok(Some(Message::Watermark(Watermark(7))))
        ));
        b.barrier(CheckpointId(1)).unwrap();
        a.send_items(vec![1]).unwrap();
        a.end().unwrap();
        b.send_items(vec![2]).unwrap();
        b.end().unwrap();
        assert_eq!(drain(&mut rx), ["[1]", "cp1", "[2]", "end"]);
    }

    #[test]
    fn a_dropped_producer_is_a_failure_not_an_end() {
        let (mut a, mut rx) = EventQueue::<u32>::channel(opts(8, Backpressure::Block));
        let mut b = a.clone();
        a.send_items(vec![1]).unwrap();
        a.end().unwrap();
        b.send_items(vec![2]).unwrap();
        drop(b); // b's thread failed
        let mut seen = Vec::new();
        let err = loop {
            match rx.recv() {
                Ok(Message::Batch(batch)) => seen.extend_from_slice(batch.items()),
                Ok(Message::End) => panic!("a failed producer must not end the stream"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err, RecvError::UpstreamFailed);
        assert!(seen.len() <= 2);
        assert_eq!(
            rx.recv().unwrap_err(),
            RecvError::UpstreamFailed,
            "it stays failed"
        );
    }

    #[test]
    fn drop_newest_counts_rejections() {
        let (mut tx, mut rx) = EventQueue::<u32>::channel(opts(1, Backpressure::DropNewest));
        tx.send_items(vec![1, 2]).unwrap();
        tx.send_items(vec![3]).unwrap();
        tx.end().unwrap();
        assert_eq!(drain(&mut rx), ["[1, 2]", "end"]);
        let m = rx.metrics();
        assert_eq!(
            (m.pushed(), m.delivered(), m.dropped(), m.high_water()),
            (3, 2, 1, 2)
        );
    }

    #[test]
    fn closed_receiver_fails_sends_and_hands_items_back() {
        let (mut tx, rx) = EventQueue::<u32>::channel(opts(1, Backpressure::Block));
        drop(rx);
        let err = tx.send_items(vec![9]).unwrap_err();
        assert_eq!((err.item, err.reason), (vec![9], SendFailure::Closed));
    }
}
