//! `Metered`: counts a stage's events in and out under a name.
//!
//! Counting is into plain fields on the stage's own thread; the totals are published to the
//! shared [`NodeMetrics`] once per batch (in `on_batch_end`) and at end of stream, so metering
//! costs at most two increments per event and no atomic. In a fused chain (`a -> b`) one count
//! serves both ends of an edge: `a` counts what it emits, and `b` publishes that as its input
//! instead of counting it again (`COUNT_IN = false`).

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::StageError;
use crate::metrics::NodeMetrics;
use crate::stage::{CheckpointId, Emit, Stage, Watermark};

/// A stage whose event counts are published to `metrics`.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
/// let reg = MetricsRegistry::new();
/// let mut s = Metered::new(filter(|x: &u8| *x > 1), reg.node("big", NodeKind::Stage));
/// let mut out = Vec::new();
/// for x in [1, 2, 3] { s.process(x, &mut out); }
/// s.on_batch_end(&mut out);
/// let snap = reg.snapshot();
/// assert_eq!((snap.nodes[0].events_in, snap.nodes[0].events_out), (3, 2));
/// ```
///
/// `COUNT_IN = false`: the stage's input is everything the stage before it in a fused chain
/// emits (see [`Metered::after`]), so this one counts only what it emits.
#[derive(Debug)]
pub struct Metered<S, const COUNT_IN: bool = true> {
    stage: S,
    metrics: Arc<NodeMetrics>,
    /// With `COUNT_IN = false`: the metrics of the stage that feeds this one, and nothing else,
    /// in a fused chain; its output count is this stage's input count.
    upstream: Option<Arc<NodeMetrics>>,
    events_in: u64,
    events_out: u64,
    errors: u64,
    late_published: u64,
}

impl<S> Metered<S> {
    /// Wraps `stage`.
    pub fn new(stage: S, metrics: Arc<NodeMetrics>) -> Self {
        Self::with(stage, metrics, None)
    }
}

impl<S> Metered<S, false> {
    /// Wraps `stage`, whose only input is what the stage metered by `upstream` emits (the two
    /// are fused, `upstream -> stage`): this one publishes that count as its input and counts
    /// only its output, so the edge between them is counted once.
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    /// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
    /// let reg = MetricsRegistry::new();
    /// let (a, b) = (reg.node("a", NodeKind::Stage), reg.node("b", NodeKind::Stage));
    /// let first = Metered::new(filter(|x: &u8| *x > 1), a.clone());
    /// let second = Metered::after(map(|x: u8| x * 2), b, a);
    /// let mut s = first.then(second);
    /// let mut out = Vec::new();
    /// for x in [1, 2, 3] { s.process(x, &mut out); }
    /// s.on_batch_end(&mut out);
    /// let snap = reg.snapshot();
    /// let counts: Vec<_> = snap.nodes.iter().map(|n| (n.events_in, n.events_out)).collect();
    /// assert_eq!(counts, [(3, 2), (2, 2)]);
    /// ```
    pub fn after(stage: S, metrics: Arc<NodeMetrics>, upstream: Arc<NodeMetrics>) -> Self {
        Self::with(stage, metrics, Some(upstream))
    }
}

impl<S, const COUNT_IN: bool> Metered<S, COUNT_IN> {
    fn with(stage: S, metrics: Arc<NodeMetrics>, upstream: Option<Arc<NodeMetrics>>) -> Self {
        Self {
            stage,
            metrics,
            upstream,
            events_in: 0,
            events_out: 0,
            errors: 0,
            late_published: 0,
        }
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// The wrapped stage.
    pub fn inner(&self) -> &S {
        &self.stage
    }

    fn publish<In>(&mut self)
    where
        S: Stage<In>,
    {
        // The stage upstream published first: it is earlier in the same chain.
        let events_in = match &self.upstream {
            Some(up) if !COUNT_IN => up.events_out(),
            _ => self.events_in,
        };
        let events_out = if S::ONE_TO_ONE {
            events_in
        } else {
            self.events_out
        };
        self.metrics.publish(events_in, events_out, self.errors);
        let late = self.stage.late_events();
        if late > self.late_published {
            self.metrics
                .add_dropped(crate::metrics::DropReason::Late, late - self.late_published);
            self.late_published = late;
        }
    }
}

/// An iterator counting the items it yields into a local count (kept in a register by a fused
/// loop), added to `total` when it is dropped.
struct CountedIter<'a, I> {
    items: I,
    n: u64,
    total: &'a mut u64,
    /// Whether to count at all (a constant per use).
    on: bool,
}

impl<'a, I> CountedIter<'a, I> {
    #[inline(always)]
    fn new(items: I, total: &'a mut u64, on: bool) -> Self {
        Self {
            items,
            n: 0,
            total,
            on,
        }
    }
}

impl<I: Iterator> Iterator for CountedIter<'_, I> {
    type Item = I::Item;

    #[inline(always)]
    fn next(&mut self) -> Option<I::Item> {
        let item = self.items.next();
        if self.on && item.is_some() {
            self.n += 1;
        }
        item
    }
}

impl<I> Drop for CountedIter<'_, I> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.on {
            *self.total += self.n;
        }
    }
}

/// The emitter a metered stage `S` (taking `In`) sees: counts what it emits, unless `S` is
/// one-to-one (whose output count is its input count: a constant of the type, so the test
/// compiles away).
struct Counting<'a, E, S, In> {
    out: &'a mut E,
    /// Where the watermarks the stage passes on are recorded (once per batch at most).
    metrics: &'a NodeMetrics,
    emitted: &'a mut u64,
    errors: &'a mut u64,
    _stage: PhantomData<fn(In) -> S>,
}

impl<T, E: Emit<T>, S: Stage<In>, In> Emit<T> for Counting<'_, E, S, In> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        if !S::ONE_TO_ONE {
            *self.emitted += 1;
        }
        self.out.emit(item);
    }

    #[inline(always)]
    fn emit_all<I: Iterator<Item = T>>(&mut self, items: I) {
        let mut n = 0u64;
        self.out
            .emit_all(items.inspect(|_| n += u64::from(!S::ONE_TO_ONE)));
        *self.emitted += n;
    }

    fn fail(&mut self, error: StageError) {
        *self.errors += 1;
        self.out.fail(error);
    }

    fn emit_watermark(&mut self, watermark: Watermark) {
        self.metrics.set_watermark(watermark.0);
        self.out.emit_watermark(watermark);
    }
}

macro_rules! counting {
    ($self:ident, $out:ident) => {
        &mut Counting {
            out: $out,
            metrics: &$self.metrics,
            emitted: &mut $self.events_out,
            errors: &mut $self.errors,
            _stage: PhantomData::<fn(In) -> S>,
        }
    };
}

impl<In, S: Stage<In>, const COUNT_IN: bool> Stage<In> for Metered<S, COUNT_IN> {
    type Out = S::Out;

    #[inline(always)]
    fn process<E: Emit<S::Out>>(&mut self, item: In, out: &mut E) {
        if COUNT_IN {
            self.events_in += 1;
        }
        self.stage.process(item, counting!(self, out));
    }

    /// Counts the run in local variables (registers, in a fused loop) and adds the totals to
    /// the stage's counts when the run ends.
    #[inline(always)]
    fn process_all<I: Iterator<Item = In>, E: Emit<S::Out>>(&mut self, items: I, out: &mut E) {
        let (mut seen, mut emitted) = (0u64, 0u64);
        let items = items.inspect(|_| seen += u64::from(COUNT_IN));
        let out = &mut Counting {
            out,
            metrics: &self.metrics,
            emitted: &mut emitted,
            errors: &mut self.errors,
            _stage: PhantomData::<fn(In) -> S>,
        };
        self.stage.process_all(items, out);
        self.events_in += seen;
        self.events_out += emitted;
    }

    #[inline(always)]
    fn pull<I: Iterator<Item = In>>(&mut self, items: I) -> impl Iterator<Item = S::Out> {
        let items = CountedIter::new(items, &mut self.events_in, COUNT_IN);
        CountedIter::new(
            self.stage.pull(items),
            &mut self.events_out,
            !<S as Stage<In>>::ONE_TO_ONE,
        )
    }

    fn on_batch_end<E: Emit<S::Out>>(&mut self, out: &mut E) {
        self.stage.on_batch_end(counting!(self, out));
        self.publish::<In>();
    }

    fn on_watermark<E: Emit<S::Out>>(&mut self, watermark: Watermark, out: &mut E) {
        self.stage.on_watermark(watermark, counting!(self, out));
        // The watermark reached this node (a stage that generates its own records those in
        // `emit_watermark`).
        self.metrics.set_watermark(watermark.0);
    }

    fn on_barrier<E: Emit<S::Out>>(&mut self, checkpoint: CheckpointId, out: &mut E) {
        self.stage.on_barrier(checkpoint, counting!(self, out));
    }

    fn on_end<E: Emit<S::Out>>(&mut self, out: &mut E) {
        self.stage.on_end(counting!(self, out));
        self.publish::<In>();
    }

    crate::stage::forward_stage_queries!();

    fn on_timer<E: Emit<S::Out>>(&mut self, out: &mut E) {
        self.stage.on_timer(counting!(self, out));
        self.publish::<In>();
    }

    fn snapshot(
        &self,
        snapshot: &mut crate::state::Snapshot,
    ) -> Result<(), crate::state::StateError> {
        self.stage.snapshot(snapshot)
    }

    fn restore(
        &mut self,
        restore: &mut crate::state::Restore,
    ) -> Result<(), crate::state::StateError> {
        self.stage.restore(restore)
    }
}
