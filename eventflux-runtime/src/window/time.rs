//! `time(d)`: a sliding window over the events of the last `d` of processing time.
//!
//! Events are stamped with the [`Clock`] when they arrive. With `.aggregate(spec)`: each arrival
//! at time `now` first retracts, oldest first, every event stamped at or before `now − d`, then
//! adds itself and emits exactly one [`Row`] for its own group. Expiry without an arrival emits
//! nothing. Without an aggregate, arrivals are passed on.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::Duration;

use crate::aggregate::Aggregate;
use crate::stage::{Emit, Stage};
use crate::state::{Checkpoint, checkpoint_fields};
use crate::window::{
    ByIndex, ByKey, Clock, Global, Grouping, Row, SystemClock, Table, arrive, expire,
};

/// A sliding processing-time window. See [`time`].
pub struct Time<T, G = Global, C = SystemClock> {
    span: u64,
    grouping: G,
    clock: C,
    _t: PhantomData<fn(T)>,
}

/// The events of the last `span` of processing time, by the system clock (see
/// [`clock`](Time::clock) to inject another).
///
/// ```
/// use std::time::Duration;
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::aggregate::*;
/// use eventflux_runtime::window::{time, ManualClock};
/// let clock = ManualClock::new(0);
/// let mut w = time(Duration::from_nanos(10)).clock(clock.clone()).aggregate(count());
/// let mut out = Vec::new();
/// w.process('a', &mut out);       // t=0: [a]
/// clock.set(5);
/// w.process('b', &mut out);       // t=5: [a, b]
/// clock.set(10);
/// w.process('c', &mut out);       // t=10: a expired (stamped 0 ≤ 10 − 10): [b, c]
/// assert_eq!(out.iter().map(|r| r.values).collect::<Vec<_>>(), [1, 2, 2]);
/// ```
pub fn time<T>(span: Duration) -> Time<T, Global, SystemClock> {
    Time {
        span: span.as_nanos().clamp(1, u128::from(u64::MAX)) as u64,
        grouping: Global,
        clock: SystemClock::default(),
        _t: PhantomData,
    }
}

impl<T, G, C> Time<T, G, C> {
    /// Uses `clock` instead of the system clock (a [`ManualClock`](crate::window::ManualClock)
    /// in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> Time<T, G, C2> {
        Time {
            span: self.span,
            grouping: self.grouping,
            clock,
            _t: PhantomData,
        }
    }

    /// Groups by a hashed key.
    pub fn group_by<K, F: Fn(&T) -> K>(self, key: F) -> Time<T, ByKey<F>, C> {
        Time {
            span: self.span,
            grouping: ByKey(key),
            clock: self.clock,
            _t: PhantomData,
        }
    }

    /// Groups by a small integer used as an array index.
    pub fn group_by_index<F: Fn(&T) -> usize>(self, index: F) -> Time<T, ByIndex<F>, C> {
        Time {
            span: self.span,
            grouping: ByIndex(index),
            clock: self.clock,
            _t: PhantomData,
        }
    }

    /// Aggregates the window per group.
    pub fn aggregate<A>(self, spec: A) -> TimeAgg<T, G, A, C>
    where
        G: Grouping<T>,
        A: Aggregate<T>,
    {
        TimeAgg {
            span: self.span,
            table: self.grouping.table(),
            grouping: self.grouping,
            clock: self.clock,
            agg: spec,
            buffer: VecDeque::new(),
        }
    }
}

impl<T, G, C: Send> Stage<T> for Time<T, G, C> {
    type Out = T;

    #[inline]
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        out.emit(item);
    }
}

/// `time(d).aggregate(spec)`. See [`time`].
pub struct TimeAgg<T, G: Grouping<T>, A: Aggregate<T>, C> {
    span: u64,
    grouping: G,
    clock: C,
    agg: A,
    table: G::Table<(A::State, u64)>,
    buffer: VecDeque<(u64, usize, T)>,
}

impl<T, G: Grouping<T>, A: Aggregate<T>, C> TimeAgg<T, G, A, C> {
    row_adapters!(current, G::Key, A::Output);

    /// Groups with events in the window.
    pub fn groups(&self) -> usize {
        self.table.len()
    }
}

/// Checkpointed: the groups' states and the events in the window with their arrival times (by
/// the processing clock: after a restart, events older than the span leave at the next
/// arrival).
impl<T: Checkpoint, G, A, C> Stage<T> for TimeAgg<T, G, A, C>
where
    G: Grouping<T>,
    A: Aggregate<T>,
    C: Clock,
{
    type Out = Row<G::Key, A::Output, ()>;

    checkpoint_fields!(table, buffer);

    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        let now = self.clock.now();
        let horizon = now.saturating_sub(self.span);
        while self
            .buffer
            .front()
            .is_some_and(|(t, _, _)| *t <= horizon && now >= self.span)
        {
            let Some((_, slot, old)) = self.buffer.pop_front() else {
                break;
            };
            expire(&mut self.table, &self.agg, slot, &old);
        }
        let slot = arrive(&self.grouping, &mut self.table, &self.agg, &item, out);
        self.buffer.push_back((now, slot, item));
    }
}
