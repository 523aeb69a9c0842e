//! `time_batch(d)`: tumbling windows of `d` processing time, `[k·d, (k+1)·d)` on the clock.
//!
//! With `.aggregate(spec)`: a window closes at the first arrival (or batch end) at which the
//! clock has reached its end, emitting one [`Row`] per group in table order (index order with
//! `group_by_index`; see [the module's contract](crate::window#contract)) with the window's
//! clock-time bounds; the arriving event then
//! opens the window containing `now`.
//! Windows in which nothing arrived emit nothing. At end of stream the open window is flushed.
//! Without an aggregate, a closed window's events are passed in arrival order.

use std::marker::PhantomData;
use std::time::Duration;

use crate::aggregate::Aggregate;
use crate::stage::{Emit, Stage};
use crate::state::{Checkpoint, checkpoint_fields};
use crate::window::{Bounds, ByIndex, ByKey, Clock, Global, Grouping, Pane, Row, SystemClock};

/// A tumbling processing-time window. See [`time_batch`].
pub struct TimeBatch<T, G = Global, C = SystemClock> {
    span: u64,
    grouping: G,
    clock: C,
    open: Option<u64>,
    held: Vec<T>,
}

/// Tumbling windows of `span` processing time.
///
/// ```
/// use std::time::Duration;
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::aggregate::*;
/// use eventflux_runtime::window::{time_batch, ManualClock, Bounds};
/// let clock = ManualClock::new(0);
/// let mut w = time_batch(Duration::from_nanos(10)).clock(clock.clone()).aggregate(count());
/// let mut out = Vec::new();
/// w.process(1, &mut out);
/// w.process(2, &mut out);
/// clock.set(25);               // windows [0,10) closes; [10,20) was empty
/// w.process(3, &mut out);
/// w.on_end(&mut out);
/// let rows: Vec<_> = out.iter().map(|r| (r.window, r.values)).collect();
/// assert_eq!(rows, [(Bounds { start: 0, end: 10 }, 2), (Bounds { start: 20, end: 30 }, 1)]);
/// ```
pub fn time_batch<T>(span: Duration) -> TimeBatch<T, Global, SystemClock> {
    TimeBatch {
        span: span.as_nanos().clamp(1, u128::from(u64::MAX)) as u64,
        grouping: Global,
        clock: SystemClock::default(),
        open: None,
        held: Vec::new(),
    }
}

impl<T, G, C> TimeBatch<T, G, C> {
    /// Uses `clock` instead of the system clock.
    pub fn clock<C2: Clock>(self, clock: C2) -> TimeBatch<T, G, C2> {
        TimeBatch {
            span: self.span,
            grouping: self.grouping,
            clock,
            open: self.open,
            held: self.held,
        }
    }

    /// Groups by a hashed key.
    pub fn group_by<K, F: Fn(&T) -> K>(self, key: F) -> TimeBatch<T, ByKey<F>, C> {
        TimeBatch {
            span: self.span,
            grouping: ByKey(key),
            clock: self.clock,
            open: self.open,
            held: self.held,
        }
    }

    /// Groups by a small integer used as an array index: a state per index, rows in index
    /// order.
    pub fn group_by_index<F: Fn(&T) -> usize>(self, index: F) -> TimeBatch<T, ByIndex<F>, C> {
        TimeBatch {
            span: self.span,
            grouping: ByIndex(index),
            clock: self.clock,
            open: self.open,
            held: self.held,
        }
    }

    /// Aggregates each window per group.
    pub fn aggregate<A>(self, spec: A) -> TimeBatchAgg<T, G, A, C>
    where
        G: Grouping<T>,
        A: Aggregate<T>,
    {
        TimeBatchAgg {
            span: self.span,
            pane: Pane::new(self.grouping.table()),
            grouping: self.grouping,
            clock: self.clock,
            agg: spec,
            open: None,
            _t: PhantomData,
        }
    }
}

impl<T, G, C: Clock> TimeBatch<T, G, C> {
    fn roll<E: Emit<T>>(&mut self, now: u64, out: &mut E) {
        if self
            .open
            .is_some_and(|start| now >= start.saturating_add(self.span))
        {
            for x in self.held.drain(..) {
                out.emit(x);
            }
            self.open = None;
        }
    }
}

impl<T: Checkpoint, G: Send, C: Clock> Stage<T> for TimeBatch<T, G, C> {
    type Out = T;

    checkpoint_fields!(open, held);

    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        let now = self.clock.now();
        self.roll(now, out);
        if self.open.is_none() {
            self.open = Some(now / self.span * self.span);
        }
        self.held.push(item);
    }

    fn on_batch_end<E: Emit<T>>(&mut self, out: &mut E) {
        let now = self.clock.now();
        self.roll(now, out);
    }

    fn on_end<E: Emit<T>>(&mut self, out: &mut E) {
        for x in self.held.drain(..) {
            out.emit(x);
        }
    }
}

/// `time_batch(d).aggregate(spec)`. See [`time_batch`].
pub struct TimeBatchAgg<T, G: Grouping<T>, A: Aggregate<T>, C> {
    span: u64,
    grouping: G,
    clock: C,
    agg: A,
    pane: Pane<G::Table<A::State>>,
    open: Option<u64>,
    _t: PhantomData<fn(T)>,
}

impl<T, G: Grouping<T>, A: Aggregate<T>, C> TimeBatchAgg<T, G, A, C> {
    row_adapters!(closed, G::Key, A::Output);

    fn close_if_due<E>(&mut self, now: Option<u64>, out: &mut E)
    where
        E: Emit<Row<G::Key, A::Output>>,
    {
        let Some(start) = self.open else { return };
        let end = start.saturating_add(self.span);
        if now.is_none_or(|now| now >= end) {
            self.pane.close(&self.agg, Bounds { start, end }, out);
            self.open = None;
        }
    }
}

impl<T, G, A, C> Stage<T> for TimeBatchAgg<T, G, A, C>
where
    G: Grouping<T>,
    A: Aggregate<T>,
    C: Clock,
{
    type Out = Row<G::Key, A::Output>;

    checkpoint_fields!(pane, open);

    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        let now = self.clock.now();
        self.close_if_due(Some(now), out);
        if self.open.is_none() {
            self.open = Some(now / self.span * self.span);
        }
        self.pane.add(&self.grouping, &self.agg, &item);
    }

    fn on_batch_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        let now = self.clock.now();
        self.close_if_due(Some(now), out);
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.close_if_due(None, out);
    }
}
