//! `length_batch(n)`: a tumbling window of `n` events.
//!
//! With `.aggregate(spec)`: when the `n`-th event of a window arrives, one [`Row`] per group in
//! the window, in table order (index order with `group_by_index`; see [the module's
//! contract](crate::window#contract)), with bounds
//! `[k·n, (k+1)·n)` counted in events (the `k`-th window). At end of stream a partial window is
//! flushed with its actual end.
//! Without an aggregate, a closed window's events are passed in arrival order.

use std::marker::PhantomData;

use crate::aggregate::Aggregate;
use crate::stage::{Emit, Stage};
use crate::state::{Checkpoint, checkpoint_fields};
use crate::window::{Bounds, ByIndex, ByKey, Global, Grouping, Pane, Row};

/// A tumbling count window. See [`length_batch`].
pub struct LengthBatch<T, G = Global> {
    n: usize,
    grouping: G,
    held: Vec<T>,
}

/// Windows of `n` consecutive events (`n` ≥ 1).
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::aggregate::*;
/// use eventflux_runtime::window::length_batch;
/// let mut w = length_batch(3).group_by(|x: &u32| x % 2).aggregate(count());
/// let mut out = Vec::new();
/// for x in [1, 2, 3, 4] { w.process(x, &mut out); }
/// w.on_end(&mut out);
/// let rows: Vec<_> = out.iter().map(|r| (r.key, r.values, r.window.start)).collect();
/// assert_eq!(rows, [(1, 2, 0), (0, 1, 0), (0, 1, 3)]);
/// ```
pub fn length_batch<T>(n: usize) -> LengthBatch<T, Global> {
    LengthBatch {
        n: n.max(1),
        grouping: Global,
        held: Vec::new(),
    }
}

impl<T, G> LengthBatch<T, G> {
    /// Groups by a hashed key.
    pub fn group_by<K, F: Fn(&T) -> K>(self, key: F) -> LengthBatch<T, ByKey<F>> {
        LengthBatch {
            n: self.n,
            grouping: ByKey(key),
            held: self.held,
        }
    }

    /// Groups by a small integer used as an array index: a state per index, rows in index
    /// order.
    pub fn group_by_index<F: Fn(&T) -> usize>(self, index: F) -> LengthBatch<T, ByIndex<F>> {
        LengthBatch {
            n: self.n,
            grouping: ByIndex(index),
            held: self.held,
        }
    }

    /// Aggregates each window per group.
    pub fn aggregate<A>(self, spec: A) -> LengthBatchAgg<T, G, A>
    where
        G: Grouping<T>,
        A: Aggregate<T>,
    {
        LengthBatchAgg {
            n: self.n,
            pane: Pane::new(self.grouping.table()),
            grouping: self.grouping,
            agg: spec,
            seen: 0,
            _t: PhantomData,
        }
    }
}

impl<T: Checkpoint, G> Stage<T> for LengthBatch<T, G> {
    type Out = T;

    checkpoint_fields!(held);

    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        self.held.push(item);
        if self.held.len() == self.n {
            for x in self.held.drain(..) {
                out.emit(x);
            }
        }
    }

    fn on_end<E: Emit<T>>(&mut self, out: &mut E) {
        for x in self.held.drain(..) {
            out.emit(x);
        }
    }
}

/// `length_batch(n).aggregate(spec)`. See [`length_batch`].
pub struct LengthBatchAgg<T, G: Grouping<T>, A: Aggregate<T>> {
    n: usize,
    grouping: G,
    agg: A,
    pane: Pane<G::Table<A::State>>,
    seen: u64,
    _t: PhantomData<fn(T)>,
}

impl<T, G: Grouping<T>, A: Aggregate<T>> LengthBatchAgg<T, G, A> {
    row_adapters!(closed, G::Key, A::Output);

    fn close<E>(&mut self, out: &mut E)
    where
        E: Emit<Row<G::Key, A::Output>>,
    {
        let n = self.n as u64;
        let start = (self.seen.saturating_sub(1) / n) * n;
        let bounds = Bounds {
            start,
            end: self.seen,
        };
        self.pane.close(&self.agg, bounds, out);
    }
}

impl<T, G, A> Stage<T> for LengthBatchAgg<T, G, A>
where
    G: Grouping<T>,
    A: Aggregate<T>,
{
    type Out = Row<G::Key, A::Output>;

    checkpoint_fields!(pane, seen);

    #[inline]
    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        self.pane.add(&self.grouping, &self.agg, &item);
        self.seen += 1;
        if self.seen.is_multiple_of(self.n as u64) {
            self.close(out);
        }
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        if !self.pane.is_empty() {
            self.close(out);
        }
    }
}
