//! Windows: which events an aggregate sees, and when it reports.
//!
//! | window | kind | emits |
//! |---|---|---|
//! | [`length(n)`](length()) | sliding, last `n` events | one row per arrival, for the arrival's group |
//! | [`length_batch(n)`](length_batch()) | tumbling, every `n` events | one row per group when `n` events have arrived |
//! | [`time(d)`](time()) | sliding, processing time | one row per arrival, for the arrival's group |
//! | [`time_batch(d)`](time_batch()) | tumbling, processing time | one row per group when the clock passes the window's end |
//! | [`tumbling(size, ts)`](tumbling()) | tumbling, event time | one row per group when the watermark passes the window's end |
//! | [`sliding(size, slide, ts)`](sliding()) | hopping, event time | likewise, for each of the overlapping windows |
//! | [`session(gap, ts)`](session()) | per-key sessions, event time | one row per session when the watermark passes its end |
//! | [`sort(n, by)`](sort()) | the `n` smallest events | the arriving event if it enters (plus what it evicts, on request) |
//! | [`unique(key)`](unique()) | the latest event per key | every arrival (plus the one it replaces, on request) |
//!
//! # Contract
//! - **Sliding windows** (`length`, `time`): every arrival yields exactly one output row, for its
//!   own group, computed after every expiry the arrival caused (expired events are retracted
//!   first, oldest first). Expiry alone (no arrival) emits nothing.
//! - **Batch, tumbling, sliding event-time and session windows**: when a window closes, one row
//!   per group present in it, carrying the window's [`Bounds`]. Empty windows emit nothing.
//!   Windows closing together are emitted in order of their start. At end of stream every open
//!   window is flushed (closed and emitted).
//! - **Row order within a window** (batch, tumbling, sliding event-time): by index with
//!   `group_by_index`, like a loop over an array of accumulators. With `group_by`, *table
//!   order*: for aggregates that have an empty state (`count`, `sum`, `avg`, `variance`,
//!   `min`/`max` of numbers, user aggregates implementing
//!   [`Aggregate::empty`]), the order of the groups' slots
//!   in the window's table — the order in which the table first saw each key, which a key
//!   keeps while it stays in the table, whichever later window it comes back in (a key evicted
//!   after being idle may get another key's old place); for other aggregates, the order of each
//!   group's first appearance in the window. Table order is deterministic — the same input
//!   gives the same rows in the same order, whether or not the run was restored from a
//!   checkpoint — but it is not a sort order: sort the rows if you need one. (Recording each
//!   group's first appearance in the window cost the hashed hot path 8 of its 57 instructions
//!   per event.)
//! - **Without `.aggregate(..)`** (`length`, `length_batch`, `time`, `time_batch`, `sort`,
//!   `unique`) a window passes events instead of rows: sliding windows pass each arrival; batch
//!   windows pass a closed window's events in arrival order. `.with_expired()` (`length`,
//!   `sort`, `unique`) also passes the events that leave, as [`WindowEvent::Expired`] — never by
//!   default. Event-time windows are used with an aggregate.
//! - Output order is deterministic: no hash-map iteration order reaches a user.
//! - State is bounded: a closed window's groups are released (their allocations are reused).
//!
//! # Event time
//! Event-time windows take a timestamp extractor. A watermark `W` means, as in Flink, that no
//! event with timestamp `≤ W` is expected any more. Which watermark a window uses:
//! - **When its input carries watermarks** — some upstream source or stage emits them, such as
//!   a [`watermarks`](crate::stage::watermarks) stage, on this thread or across `=>` queues —
//!   the window follows those only: the minimum over the producers at a fan-in (and over the
//!   workers after a keyed edge). Its own [`out_of_orderness`](Tumbling::out_of_orderness) is
//!   then unused: the upstream generator already allowed for disorder, and a lagging input
//!   holds the window back instead of making the other inputs' events late.
//! - **Otherwise** it derives its own: `max_ts − out_of_orderness − 1` over the timestamps it
//!   has seen.
//!
//! Which case applies is decided once, when the pipeline is built, from the graph.
//!
//! **The firing rule** (the one rule, for tumbling, sliding and session windows): a window
//! `[start, end)` fires when `W ≥ end − 1 + allowed_lateness` — that is, once its last
//! timestamp, `end − 1`, is complete, plus the allowed lateness. A session's `end` is its last
//! event's timestamp plus the gap. An event whose windows have all fired is **late**: it is sent
//! to the late output ([`late_to`](Tumbling::late_to); connect the matching [`late_output`]
//! source in `pipeline!`), counted in [`late_count`](Tumbling::late_count) and in the window
//! node's metrics as dropped with reason `late` — never silently lost.

/// The lateness options shared by the event-time builders (`tumbling`/`sliding`, `session`),
/// which hold `out_of_orderness`, `allowed_lateness` and `late: Late<T>` fields.
macro_rules! event_time_options {
    () => {
        /// Timestamps may arrive this much out of order without being late (the bounded
        /// out-of-orderness watermark).
        pub fn out_of_orderness(mut self, by: u64) -> Self {
            self.out_of_orderness = by;
            self
        }

        /// Keeps windows open this much longer after the watermark passes their end.
        pub fn allowed_lateness(mut self, by: u64) -> Self {
            self.allowed_lateness = by;
            self
        }

        /// Sends late events to `late` (see [`late_output`](crate::window::late_output)).
        pub fn late_to(mut self, late: $crate::io::ChannelHandle<T>) -> Self {
            self.late.connect(late);
            self
        }

        /// A counter of late events, readable while the pipeline runs.
        pub fn late_count(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
            self.late.counter()
        }
    };
}

/// `having` and `select` for a window type that emits `Row<$key, $values, $bounds>`.
macro_rules! row_adapters {
    (closed, $key:ty, $values:ty) => {
        /// Emits only rows for which `predicate` holds (a `filter` fused after the window).
        pub fn having<P>(self, predicate: P) -> $crate::stage::Chain<Self, $crate::stage::Filter<P>>
        where
            P: FnMut(&$crate::window::Row<$key, $values>) -> bool,
        {
            $crate::stage::StageExt::then(self, $crate::stage::filter(predicate))
        }

        /// Turns each row into the caller's own type: `f(key, bounds, values)`, with the
        /// aggregates' results destructured in the order given. Fused: costs nothing beyond
        /// `f`.
        ///
        /// ```
        /// use eventflux_runtime::prelude::*;
        /// use eventflux_runtime::aggregate::*;
        /// use eventflux_runtime::window::tumbling;
        /// #[derive(Debug, PartialEq)]
        /// struct Stats { symbol: char, start: u64, trades: u64, high: f64 }
        /// let mut w = tumbling(10, |t: &(u64, char, f64)| t.0)
        ///     .group_by(|t: &(u64, char, f64)| t.1)
        ///     .aggregate((count(), max(|t: &(u64, char, f64)| t.2)))
        ///     .select(|symbol, bounds, (trades, high)| Stats { symbol, start: bounds.start, trades, high });
        /// let mut out = Vec::new();
        /// for t in [(1, 'a', 2.0), (3, 'a', 5.0), (12, 'a', 1.0)] { w.process(t, &mut out); }
        /// assert_eq!(out, [Stats { symbol: 'a', start: 0, trades: 2, high: 5.0 }]);
        /// ```
        pub fn select<R, F>(self, f: F) -> $crate::stage::Chain<Self, $crate::window::Select<F>>
        where
            F: FnMut($key, $crate::window::Bounds, $values) -> R,
        {
            $crate::stage::StageExt::then(self, $crate::window::Select(f))
        }
    };
    (current, $key:ty, $values:ty) => {
        /// Emits only rows for which `predicate` holds (a `filter` fused after the window).
        pub fn having<P>(self, predicate: P) -> $crate::stage::Chain<Self, $crate::stage::Filter<P>>
        where
            P: FnMut(&$crate::window::Row<$key, $values, ()>) -> bool,
        {
            $crate::stage::StageExt::then(self, $crate::stage::filter(predicate))
        }

        /// Turns each row into the caller's own type: `f(key, values)`, with the aggregates'
        /// results destructured in the order given. Fused: costs nothing beyond `f`.
        ///
        /// ```
        /// use eventflux_runtime::prelude::*;
        /// use eventflux_runtime::aggregate::*;
        /// use eventflux_runtime::window::length;
        /// let mut w = length(2)
        ///     .aggregate((min(|x: &i32| *x), max(|x: &i32| *x)))
        ///     .select(|(), (lo, hi)| hi - lo);
        /// let mut out = Vec::new();
        /// for x in [4, 9, 1] { w.process(x, &mut out); }
        /// assert_eq!(out, [0, 5, 8]);
        /// ```
        pub fn select<R, F>(
            self,
            f: F,
        ) -> $crate::stage::Chain<Self, $crate::window::SelectCurrent<F>>
        where
            F: FnMut($key, $values) -> R,
        {
            $crate::stage::StageExt::then(self, $crate::window::SelectCurrent(f))
        }
    };
}

/// An event entering or leaving a window (with `.with_expired()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowEvent<T> {
    /// The event is in the window.
    Current(T),
    /// The event left the window.
    Expired(T),
}

/// The late side output of event-time windows: the sender goes to the window
/// (`.late_to(sender)`), the source into `pipeline!` (`source late = late_source;`).
///
/// ```
/// use eventflux_runtime::window::late_output;
/// let (to_window, late_source) = late_output::<u64>();
/// # drop((to_window, late_source));
/// ```
///
/// The source ends when every window given the sender (or a clone of it, as each worker of a
/// keyed edge needs) has ended — not when the handles are dropped — so the handle the user
/// keeps never holds `run()` open. A window that fails never ends it. Its events were counted
/// where they entered the pipeline, so the source is a [side output](crate::metrics::NodeKind)
/// that does not add to the report's `events_in`.
pub fn late_output<T: Send>() -> (ChannelHandle<T>, ChannelSource<T>) {
    let (source, handle) = crate::io::channel::side_output(IdleStrategy::balanced());
    (handle, source)
}

mod clock;
mod event_time;
mod group;
mod length;
mod length_batch;
mod session;
mod sort;
mod time;
mod time_batch;
mod unique;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event_time::{Tumbling, TumblingAgg, sliding, tumbling};
pub use group::{
    ByIndex, ByKey, DenseFolder, DenseTable, Folder, FxHasher, Global, GlobalTable, Grouping,
    KeyedFolder, KeyedTable, SlotOrder, Table,
};
pub use length::{Length, LengthAgg, LengthEvents, length};
pub use length_batch::{LengthBatch, LengthBatchAgg, length_batch};
pub use session::{Session, SessionAgg, session};
pub use sort::{Sort, SortExpired, sort};
pub use time::{Time, TimeAgg, time};
pub use time_batch::{TimeBatch, TimeBatchAgg, time_batch};
pub use unique::{Unique, UniqueExpired, unique};

use crate::aggregate::Aggregate;
use crate::idle::IdleStrategy;
use crate::io::{ChannelHandle, ChannelSource};
use crate::stage::Emit;

/// The span of a window: `[start, end)` in event time, clock time or event counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Bounds {
    /// Inclusive start.
    pub start: u64,
    /// Exclusive end.
    pub end: u64,
}

/// One aggregated output: a group's key, the window's bounds and the aggregate values.
///
/// Windows that close (batch, tumbling, sliding event-time, session) emit `Row<K, V>`, whose
/// `window` is the closed window's [`Bounds`]; sliding `length`/`time` windows, which report on
/// every arrival and have no bounds, emit `Row<K, V, ()>`. Most pipelines turn rows into their
/// own type right away with `.select(..)` on the window (see
/// [`TumblingAgg::select`](crate::window::TumblingAgg::select)).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row<K, V, B = Bounds> {
    /// The group key (`()` without `group_by`).
    pub key: K,
    /// The window's bounds (`()` for sliding `length`/`time` windows).
    pub window: B,
    /// The aggregate results, in the order given.
    pub values: V,
}

/// `.select(f)` on a window that closes: passes `f(key, bounds, values)` for each row, so the
/// output is the user's own type. A fused map: no cost beyond `f`.
pub struct Select<F>(F);

impl<K, V, R, F: FnMut(K, Bounds, V) -> R> crate::stage::Stage<Row<K, V>> for Select<F> {
    type Out = R;
    #[inline(always)]
    fn process<E: Emit<R>>(&mut self, row: Row<K, V>, out: &mut E) {
        out.emit((self.0)(row.key, row.window, row.values));
    }
}

/// `.select(f)` on a sliding `length`/`time` window: passes `f(key, values)` for each row.
pub struct SelectCurrent<F>(F);

impl<K, V, R, F: FnMut(K, V) -> R> crate::stage::Stage<Row<K, V, ()>> for SelectCurrent<F> {
    type Out = R;
    #[inline(always)]
    fn process<E: Emit<R>>(&mut self, row: Row<K, V, ()>, out: &mut E) {
        out.emit((self.0)(row.key, row.values));
    }
}

/// Sliding windows: per-group `(aggregate state, events in window)`.
pub(crate) type Counted<S> = (S, u64);

/// Retracts `old` (the oldest event of the window, in group `slot`), releasing the group
/// instead when `old` is its last event.
#[inline]
pub(crate) fn expire<T, K, A, Tab>(table: &mut Tab, agg: &A, slot: usize, old: &T)
where
    A: Aggregate<T>,
    Tab: Table<K, Counted<A::State>>,
{
    if let Some((state, count)) = table.state(slot) {
        if *count <= 1 {
            table.release(slot);
        } else {
            agg.retract(state, old);
            *count -= 1;
        }
    }
}

/// Adds an arrival to its group and emits that group's row; returns the group's slot.
#[inline]
pub(crate) fn arrive<T, G, A, E>(
    grouping: &G,
    table: &mut G::Table<Counted<A::State>>,
    agg: &A,
    item: &T,
    out: &mut E,
) -> usize
where
    G: Grouping<T>,
    A: Aggregate<T>,
    E: Emit<Row<G::Key, A::Output, ()>>,
{
    let key = grouping.key(item);
    let slot = match table.active(&key) {
        Some((slot, (state, count))) => {
            agg.add(state, item);
            *count += 1;
            out.emit(Row {
                key,
                window: (),
                values: agg.result(state),
            });
            return slot;
        }
        None => table.activate(
            &key,
            |(s, n)| {
                agg.reset(s, item);
                *n = 1;
            },
            || (agg.init(item), 1),
        ),
    };
    // A new group: its row is its first event's.
    if let Some((state, _)) = table.state(slot) {
        out.emit(Row {
            key,
            window: (),
            values: agg.result(state),
        });
    }
    slot
}

/// Where an event-time window's late events go: counted, and sent to the late output if one is
/// connected.
pub(crate) struct Late<T> {
    pub(crate) to: Option<ChannelHandle<T>>,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<T> Late<T> {
    pub(crate) fn new() -> Self {
        Self {
            to: None,
            count: std::sync::Arc::default(),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn counter(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        std::sync::Arc::clone(&self.count)
    }

    /// Sends late events to `to` from now on. A previously connected output is ended (not
    /// dropped, which would mark it failed and keep it open forever).
    pub(crate) fn connect(&mut self, to: ChannelHandle<T>) {
        if let Some(old) = self.to.replace(to.attach()) {
            old.end();
        }
    }

    /// The window's stream is complete: the late output may end once every window has.
    pub(crate) fn end(&mut self) {
        if let Some(to) = self.to.take() {
            to.end();
        }
    }

    pub(crate) fn send(&self, item: T) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(to) = &self.to {
            // An unbounded channel: it only fails when the late source is gone, and the event
            // has been counted either way.
            let _ = to.send(item);
        }
    }
}

/// The groups of one window: their table, and their order of first appearance (unless the
/// table lists its groups itself, in its own order: [`Table::lists_active`]).
#[derive(crate::state::Checkpoint)]
#[checkpoint(crate = crate)]
pub(crate) struct Pane<Tab> {
    pub(crate) table: Tab,
    order: Vec<usize>,
}

impl<Tab> Pane<Tab> {
    pub(crate) fn new(table: Tab) -> Self {
        Self {
            table,
            order: Vec::new(),
        }
    }

    #[inline(always)]
    pub(crate) fn add<T, G, A>(&mut self, grouping: &G, agg: &A, item: &T)
    where
        G: Grouping<T, Table<A::State> = Tab>,
        A: Aggregate<T>,
        Tab: Table<G::Key, A::State>,
    {
        let key = grouping.key(item);
        if !self.fold(&key, agg, item) {
            self.start::<T, G, A>(&key, agg, item);
        }
    }

    /// Folds `item` into its group if the group's state is there (active, or ready: see
    /// [`Table::make_ready`]); false: the caller starts the group with [`start`](Self::start).
    #[inline(always)]
    pub(crate) fn fold<T, K, A>(&mut self, key: &K, agg: &A, item: &T) -> bool
    where
        A: Aggregate<T>,
        Tab: Table<K, A::State>,
    {
        if self.table.is_ready() {
            self.table
                .fold(key, |state| agg.insert_counted(state, item))
        } else {
            self.table.fold(key, |state| agg.insert(state, item))
        }
    }

    /// A group's first event in this window, when [`fold`](Self::fold) could not take it.
    #[inline(never)]
    pub(crate) fn start<T, G, A>(&mut self, key: &G::Key, agg: &A, item: &T)
    where
        G: Grouping<T, Table<A::State> = Tab>,
        A: Aggregate<T>,
        Tab: Table<G::Key, A::State>,
    {
        if self.table.make_ready(key, || agg.empty()) && self.fold(key, agg, item) {
            return;
        }
        let slot = self
            .table
            .activate(key, |s| agg.reset(s, item), || agg.init(item));
        if !self.table.lists_active() {
            self.order.push(slot);
        }
    }

    /// Emits one row per group (in the table's order, or of first appearance) and releases the
    /// groups; a ready state is made empty again.
    pub(crate) fn close<T, K, A, E>(&mut self, agg: &A, bounds: Bounds, out: &mut E)
    where
        A: Aggregate<T>,
        Tab: Table<K, A::State>,
        E: Emit<Row<K, A::Output>>,
    {
        if self.table.lists_active() {
            // Each state is made empty again for the next window as its result is taken.
            let counted = self.table.is_ready();
            self.table.drain_active(|key, state, events| {
                let values = if counted {
                    agg.finish_counted(state, events)
                } else {
                    agg.finish(state)
                };
                out.emit(Row {
                    key,
                    window: bounds,
                    values,
                });
            });
            return;
        }
        for slot in self.order.drain(..) {
            if let Some((key, state)) = self.table.release(slot) {
                out.emit(Row {
                    key,
                    window: bounds,
                    values: agg.result(state),
                });
            }
        }
    }

    pub(crate) fn is_empty<K, S>(&self) -> bool
    where
        Tab: Table<K, S>,
    {
        if self.table.lists_active() {
            self.table.is_empty()
        } else {
            self.order.is_empty()
        }
    }
}
