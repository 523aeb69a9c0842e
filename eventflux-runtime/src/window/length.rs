//! `length(n)`: a sliding window over the last `n` events.
//!
//! With `.aggregate(spec)`: each arrival first retracts the event it pushes out (when the window
//! is full), then adds itself, then emits exactly one [`Row`] for its own group (`window:
//! None`). Groups hold state only while they have events in the window. Without an aggregate,
//! each arrival is passed on; `.with_expired()` also passes the event it pushed out.

use std::collections::VecDeque;
use std::marker::PhantomData;

use crate::aggregate::Aggregate;
use crate::stage::{Emit, Stage};
use crate::state::{Checkpoint, checkpoint_fields};
use crate::window::{ByIndex, ByKey, Global, Grouping, Row, Table, WindowEvent, arrive, expire};

/// A sliding count window. See [`length`].
pub struct Length<T, G = Global> {
    n: usize,
    grouping: G,
    _t: PhantomData<fn(T)>,
}

/// The last `n` events (`n` ≥ 1; 0 is treated as 1).
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::aggregate::*;
/// use eventflux_runtime::window::length;
/// let mut w = length(2).aggregate((sum(|x: &u32| *x), max(|x: &u32| *x)));
/// let mut out = Vec::new();
/// for x in [5, 1, 3] { w.process(x, &mut out); }
/// let values: Vec<_> = out.iter().map(|r| r.values).collect();
/// assert_eq!(values, [(5, 5), (6, 5), (4, 3)]);
/// ```
pub fn length<T>(n: usize) -> Length<T, Global> {
    Length {
        n: n.max(1),
        grouping: Global,
        _t: PhantomData,
    }
}

impl<T, G> Length<T, G> {
    /// Groups events by a hashed key: one row per arrival, for the arrival's group.
    pub fn group_by<K, F: Fn(&T) -> K>(self, key: F) -> Length<T, ByKey<F>> {
        Length {
            n: self.n,
            grouping: ByKey(key),
            _t: PhantomData,
        }
    }

    /// Groups events by a small integer used as an array index (fastest).
    pub fn group_by_index<F: Fn(&T) -> usize>(self, index: F) -> Length<T, ByIndex<F>> {
        Length {
            n: self.n,
            grouping: ByIndex(index),
            _t: PhantomData,
        }
    }

    /// Without an aggregate: also pass each event that leaves the window, as
    /// [`WindowEvent::Expired`], right before the arrival that pushed it out.
    pub fn with_expired(self) -> LengthEvents<T> {
        LengthEvents {
            n: self.n,
            buffer: VecDeque::new(),
        }
    }

    /// Aggregates the window per group.
    pub fn aggregate<A>(self, spec: A) -> LengthAgg<T, G, A>
    where
        G: Grouping<T>,
        A: Aggregate<T>,
    {
        LengthAgg {
            n: self.n,
            table: self.grouping.table(),
            grouping: self.grouping,
            agg: spec,
            // Grows to `n` as events arrive (no allocation once the window is full). Not
            // reserved up front: keyed workers build one instance per key group, most of which
            // may never see an event.
            buffer: VecDeque::new(),
            _t: PhantomData,
        }
    }
}

impl<T, G> Stage<T> for Length<T, G> {
    type Out = T;

    /// Passes each arrival (the window's current event).
    #[inline]
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        out.emit(item);
    }
}

/// `length(n).with_expired()`: passes arrivals and the events they push out.
pub struct LengthEvents<T> {
    n: usize,
    buffer: VecDeque<T>,
}

impl<T: Clone + Checkpoint> Stage<T> for LengthEvents<T> {
    type Out = WindowEvent<T>;

    checkpoint_fields!(buffer);

    fn process<E: Emit<WindowEvent<T>>>(&mut self, item: T, out: &mut E) {
        if self.buffer.len() == self.n
            && let Some(old) = self.buffer.pop_front()
        {
            out.emit(WindowEvent::Expired(old));
        }
        self.buffer.push_back(item.clone());
        out.emit(WindowEvent::Current(item));
    }
}

/// `length(n).aggregate(spec)`. See [`length`].
pub struct LengthAgg<T, G: Grouping<T>, A: Aggregate<T>> {
    n: usize,
    grouping: G,
    agg: A,
    table: G::Table<(A::State, u64)>,
    buffer: VecDeque<(usize, T)>,
    _t: PhantomData<fn(T)>,
}

impl<T, G: Grouping<T>, A: Aggregate<T>> LengthAgg<T, G, A> {
    row_adapters!(current, G::Key, A::Output);

    /// Groups with events in the window.
    pub fn groups(&self) -> usize {
        self.table.len()
    }
}

impl<T: Checkpoint, G, A> Stage<T> for LengthAgg<T, G, A>
where
    G: Grouping<T>,
    A: Aggregate<T>,
{
    type Out = Row<G::Key, A::Output, ()>;

    checkpoint_fields!(table, buffer);

    #[inline]
    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        if self.buffer.len() == self.n
            && let Some((slot, old)) = self.buffer.pop_front()
        {
            expire(&mut self.table, &self.agg, slot, &old);
        }
        let slot = arrive(&self.grouping, &mut self.table, &self.agg, &item, out);
        self.buffer.push_back((slot, item));
    }
}
