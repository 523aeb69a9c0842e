//! Event-time windows: `tumbling(size, ts)` and `sliding(size, slide, ts)`.
//!
//! Windows are `[k·slide, k·slide + size)` in event time (`slide == size` for tumbling); an
//! event belongs to every window containing its timestamp. The watermark and firing rule are
//! stated once, in [the window module](crate::window#event-time): one [`Row`] per group, in
//! table order (index order with `group_by_index`; see [the module's
//! contract](crate::window#contract)), with the window's [`Bounds`];
//! windows firing together are emitted in order of start. An event none of whose windows is still open is late: it goes to the late
//! output and is counted. At end of stream all open windows fire.
//!
//! Event-time windows are used with `.aggregate(..)`.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::aggregate::Aggregate;
use crate::stage::{Emit, Stage, Watermark};
use crate::state::{Checkpoint, Restore, Snapshot, StateError, StateReader, StateWriter};
use crate::window::{
    Bounds, ByIndex, ByKey, Folder, Global, Grouping, Late, Pane, Row, SlotOrder, Table,
};

/// An event-time window (tumbling or sliding). See [`tumbling`] and [`sliding`].
pub struct Tumbling<T, TS, G = Global> {
    size: u64,
    slide: u64,
    ts: TS,
    grouping: G,
    out_of_orderness: u64,
    allowed_lateness: u64,
    late: Late<T>,
}

/// Tumbling event-time windows of `size` (≥ 1) by the timestamp `ts(event)`.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::aggregate::*;
/// use eventflux_runtime::window::{tumbling, Bounds};
/// let mut w = tumbling(10, |e: &(u64, char)| e.0).group_by(|e: &(u64, char)| e.1).aggregate(count());
/// let mut out = Vec::new();
/// for e in [(1, 'a'), (4, 'b'), (3, 'a')] { w.process(e, &mut out); }
/// assert!(out.is_empty(), "watermark 3 (max 4, minus 1): [0, 10) is still open");
/// w.process((12, 'a'), &mut out); // watermark 11 ≥ 9: [0, 10) fires
/// assert_eq!(out.len(), 2);
/// w.process((30, 'b'), &mut out); // watermark 29: [10, 20) fires
/// let rows: Vec<_> = out.iter().map(|r| (r.key, r.values, r.window.start)).collect();
/// assert_eq!(rows, [('a', 2, 0), ('b', 1, 0), ('a', 1, 10)]);
/// ```
pub fn tumbling<T, TS: Fn(&T) -> u64>(size: u64, ts: TS) -> Tumbling<T, TS, Global> {
    sliding(size, size, ts)
}

/// Sliding (hopping) event-time windows of `size`, starting every `slide` (1 ≤ slide ≤ size).
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::aggregate::*;
/// use eventflux_runtime::window::sliding;
/// let mut w = sliding(10, 5, |t: &u64| *t).aggregate(count());
/// let mut out = Vec::new();
/// for t in [1, 6, 11] { w.process(t, &mut out); }
/// w.on_end(&mut out);
/// let rows: Vec<_> = out.iter().map(|r| (r.window.start, r.values)).collect();
/// assert_eq!(rows, [(0, 2), (5, 2), (10, 1)]);
/// ```
pub fn sliding<T, TS: Fn(&T) -> u64>(size: u64, slide: u64, ts: TS) -> Tumbling<T, TS, Global> {
    let size = size.max(1);
    Tumbling {
        size,
        slide: slide.clamp(1, size),
        ts,
        grouping: Global,
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: Late::new(),
    }
}

impl<T, TS, G> Tumbling<T, TS, G> {
    fn regroup<G2>(self, grouping: G2) -> Tumbling<T, TS, G2> {
        Tumbling {
            size: self.size,
            slide: self.slide,
            ts: self.ts,
            grouping,
            out_of_orderness: self.out_of_orderness,
            allowed_lateness: self.allowed_lateness,
            late: self.late,
        }
    }

    /// Groups by a hashed key.
    pub fn group_by<K, F: Fn(&T) -> K>(self, key: F) -> Tumbling<T, TS, ByKey<F>> {
        self.regroup(ByKey(key))
    }

    /// Groups by a small integer used as an array index (fastest): a state per index, rows
    /// in index order.
    pub fn group_by_index<F: Fn(&T) -> usize>(self, index: F) -> Tumbling<T, TS, ByIndex<F>> {
        self.regroup(ByIndex(index))
    }

    event_time_options!();

    /// Aggregates each window per group.
    pub fn aggregate<A>(self, spec: A) -> TumblingAgg<T, TS, G, A>
    where
        G: Grouping<T>,
        A: Aggregate<T>,
    {
        TumblingAgg {
            size: self.size,
            slide: self.slide,
            clock: EventClock::new(self.out_of_orderness, self.allowed_lateness),
            hot_limit: 0,
            fire_at: u64::MAX,
            windows: Windows {
                newest: OpenWindow {
                    start: 0,
                    pane: Pane::new(self.grouping.table()),
                },
                has_newest: false,
                older: Vec::new(),
                spare: Spares(Vec::new()),
            },
            ready: Vec::new(),
            parked: None,
            grouping: self.grouping,
            ts: self.ts,
            agg: spec,
            late: self.late,
            _t: PhantomData,
        }
    }
}

/// Watermark bookkeeping shared by the event-time stages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventClock {
    out_of_orderness: u64,
    allowed_lateness: u64,
    /// The largest timestamp seen (0 before any: the derived watermark needs at least
    /// `out_of_orderness + 1`, so "none seen" and "0 seen" derive the same nothing).
    max_ts: u64,
    upstream: Option<u64>,
    /// The input carries watermarks: follow them only, derive none.
    follow_upstream: bool,
}

impl EventClock {
    pub(crate) fn new(out_of_orderness: u64, allowed_lateness: u64) -> Self {
        Self {
            out_of_orderness,
            allowed_lateness,
            max_ts: 0,
            upstream: None,
            follow_upstream: false,
        }
    }

    /// Whether the input carries watermarks (from [`Stage::event_time`]).
    pub(crate) fn follow_upstream(&mut self, yes: bool) {
        self.follow_upstream = yes;
    }

    /// The current watermark, if any: the upstream one when the input carries watermarks,
    /// else the window's own (`max_ts − out_of_orderness − 1`, or an in-band one fed by hand
    /// if larger).
    #[inline]
    pub(crate) fn watermark(&self) -> Option<u64> {
        if self.follow_upstream {
            return self.upstream;
        }
        let own = self
            .max_ts
            .checked_sub(self.out_of_orderness.saturating_add(1));
        match (own, self.upstream) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a window ending at `end` has fired at watermark `wm`.
    #[inline]
    pub(crate) fn fired(&self, end: u64, wm: Option<u64>) -> bool {
        wm.is_some_and(|w| w >= (end - 1).saturating_add(self.allowed_lateness))
    }

    /// The smallest timestamp whose arrival makes the window's own watermark fire a window
    /// ending at `end` (`u64::MAX`: never, when the window follows upstream watermarks).
    /// Windows compare arrivals against it instead of recomputing the watermark per event.
    #[inline]
    pub(crate) fn fires_at(&self, end: u64) -> u64 {
        if self.follow_upstream {
            return u64::MAX;
        }
        end.saturating_add(self.allowed_lateness)
            .saturating_add(self.out_of_orderness)
    }

    /// Records a timestamp (branch-free: a data-dependent branch here mispredicts).
    #[inline]
    pub(crate) fn saw(&mut self, ts: u64) {
        self.max_ts = self.max_ts.max(ts);
    }

    /// The largest timestamp seen (0 before any).
    #[inline(always)]
    pub(crate) fn max_ts(&self) -> u64 {
        self.max_ts
    }

    /// Records `ts`, known to be at least [`max_ts`](Self::max_ts): a plain store, so that a
    /// run of in-order arrivals carries no dependency from one event to the next.
    #[inline(always)]
    pub(crate) fn advance(&mut self, ts: u64) {
        self.max_ts = ts;
    }

    pub(crate) fn upstream(&mut self, w: Watermark) {
        self.upstream = Some(self.upstream.map_or(w.0, |u| u.max(w.0)));
    }

    /// Saves where event time stands (the settings are the stage's, not state: a restored
    /// stage keeps the ones it was built with).
    pub(crate) fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        self.max_ts.save(w)?;
        self.upstream.save(w)
    }

    /// Reads what [`save`](Self::save) wrote.
    pub(crate) fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.max_ts = u64::load(r)?;
        self.upstream = Option::load(r)?;
        Ok(())
    }
}

/// The pane type of an event-time window.
type PaneOf<T, G, A> = Pane<<G as Grouping<T>>::Table<<A as Aggregate<T>>::State>>;

#[derive(Checkpoint)]
#[checkpoint(crate = crate)]
struct OpenWindow<P> {
    start: u64,
    pane: P,
}

/// The open windows of an event-time window stage.
///
/// Version 2 also saves spare panes whose table lists its groups in an order of its own
/// making (see [`SlotOrder`]): a window that reuses such a pane inherits that order, so a
/// restored stage needs them to emit its rows in the order the uninterrupted run would.
#[derive(Checkpoint)]
#[checkpoint(crate = crate, version = 2, from = WindowsV1<P>)]
struct Windows<P> {
    /// The open window with the latest start, while `has_newest` (kept apart so that in-order
    /// arrivals reach it without a search or an indirection).
    newest: OpenWindow<P>,
    has_newest: bool,
    /// The other open windows, by start.
    older: Vec<OpenWindow<P>>,
    /// Panes of fired windows, for reuse.
    spare: Spares<P>,
}

/// [`Windows`] as version 1 saved it (no spare panes).
#[derive(Checkpoint)]
#[checkpoint(crate = crate)]
struct WindowsV1<P> {
    newest: OpenWindow<P>,
    has_newest: bool,
    older: Vec<OpenWindow<P>>,
}

impl<P> From<WindowsV1<P>> for Windows<P> {
    fn from(v1: WindowsV1<P>) -> Self {
        Windows {
            newest: v1.newest,
            has_newest: v1.has_newest,
            older: v1.older,
            spare: Spares(Vec::new()),
        }
    }
}

/// Panes of fired windows, kept for reuse (the last one is reused first). A checkpoint saves
/// only those whose table's order comes from its history ([`SlotOrder`]); the others are made
/// afresh after a restore, at no cost to the order of any row. In a stage, either every used
/// pane's table keeps such an order or none does, so which pane is reused next is unchanged.
struct Spares<P>(Vec<P>);

impl<Tab: Checkpoint + SlotOrder> Checkpoint for Spares<Pane<Tab>> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        let kept = |p: &&Pane<Tab>| p.table.order_from_history();
        w.len_prefix(self.0.iter().filter(kept).count())?;
        self.0.iter().filter(kept).try_for_each(|p| p.save(w))
    }

    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        Vec::load(r).map(Spares)
    }
}

impl<P> Windows<P> {
    fn len(&self) -> usize {
        self.older.len() + usize::from(self.has_newest)
    }

    fn oldest_start(&self) -> Option<u64> {
        match self.older.first() {
            Some(w) => Some(w.start),
            None => self.has_newest.then_some(self.newest.start),
        }
    }

    /// The pane of the window starting at `start`, opened (with a spare pane or `new_pane()`)
    /// if needed.
    fn get(&mut self, start: u64, new_pane: impl FnOnce() -> P) -> &mut P {
        if !self.has_newest {
            // The newest slot's pane is empty (it fired, or never held a window): reuse it.
            self.has_newest = true;
            self.newest.start = start;
            return &mut self.newest.pane;
        }
        if start == self.newest.start {
            return &mut self.newest.pane;
        }
        if start > self.newest.start {
            let pane = self.spare.0.pop().unwrap_or_else(new_pane);
            let previous = std::mem::replace(&mut self.newest, OpenWindow { start, pane });
            self.older.push(previous);
            return &mut self.newest.pane;
        }
        let at = self.older.partition_point(|w| w.start < start);
        if self.older.get(at).is_none_or(|w| w.start != start) {
            let pane = self.spare.0.pop().unwrap_or_else(new_pane);
            self.older.insert(at, OpenWindow { start, pane });
        }
        &mut self.older[at].pane
    }
}

/// `tumbling(..)/sliding(..)` with `.aggregate(spec)`.
///
/// Every open window is unfired at the current watermark (a window fires as soon as the
/// watermark passes it), which is what lets an arrival decide with one comparison whether it
/// fires anything: the window's own watermark moves only when an arrival's timestamp reaches
/// `fire_at`.
///
/// The fast path (tumbling) takes an in-order arrival (`ts ≥ max_ts`) below `hot_limit`: the
/// newest window's end, or `fire_at` if sooner. Such an arrival belongs to the newest window
/// (which starts at or below `max_ts`), fires nothing, and becomes the largest timestamp with
/// a plain store. Because the test is a predicted branch rather than a `max`, consecutive
/// arrivals do not wait on each other's bookkeeping.
pub struct TumblingAgg<T, TS, G: Grouping<T>, A: Aggregate<T>> {
    size: u64,
    slide: u64,
    clock: EventClock,
    /// Tumbling windows: in-order arrivals below it take the fast path (0 when there is no
    /// open window, or for sliding windows).
    hot_limit: u64,
    /// An arrival with `ts ≥ fire_at` fires the oldest open window (see [`EventClock::fires_at`]).
    fire_at: u64,
    windows: Windows<PaneOf<T, G, A>>,
    /// Rows of fired windows, emitted by the caller of `fire`: the out-of-line paths never see
    /// the output, so the fast path does not have to keep it addressable.
    ready: Vec<Row<G::Key, A::Output>>,
    /// The arrival an out-of-line path is working on. Handing it over here, rather than as an
    /// argument, keeps the fast path from storing every event in memory just in case: a value
    /// whose address is passed anywhere lives in memory from the moment it is made.
    parked: Option<T>,
    grouping: G,
    ts: TS,
    agg: A,
    late: Late<T>,
    _t: PhantomData<fn(T)>,
}

impl<T, TS, G: Grouping<T>, A: Aggregate<T>> TumblingAgg<T, TS, G, A> {
    row_adapters!(closed, G::Key, A::Output);

    /// A counter of late events, readable while the pipeline runs.
    pub fn late_counter(&self) -> Arc<AtomicU64> {
        self.late.counter()
    }

    /// Windows currently open.
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }

    /// Groups held across all open windows (0 once every window has fired).
    pub fn groups(&self) -> usize {
        let older: usize = self.windows.older.iter().map(|w| w.pane.table.len()).sum();
        older + self.windows.newest.pane.table.len()
    }

    /// After the open windows changed: the tumbling fast path's window and the firing
    /// threshold.
    fn retarget(&mut self) {
        self.fire_at = match self.windows.oldest_start() {
            Some(start) => self.clock.fires_at(start + self.size),
            None => u64::MAX,
        };
        self.hot_limit = if self.windows.has_newest && self.slide == self.size {
            (self.windows.newest.start + self.size).min(self.fire_at)
        } else {
            0
        };
    }

    /// Whether `ts` falls in the newest open window of a tumbling window.
    #[inline]
    fn in_newest(&self, ts: u64) -> bool {
        self.slide == self.size
            && self.windows.has_newest
            && ts.wrapping_sub(self.windows.newest.start) < self.size
    }

    /// Every arrival but the fast path's, from [`Stage::process`]: rows of the windows it
    /// fires wait in `ready`.
    #[inline(never)]
    fn arrive_parked(&mut self, ts: u64) {
        let mut ready = std::mem::take(&mut self.ready);
        self.arrive(ts, &mut ready);
        self.ready = ready;
    }

    /// Every arrival but the fast path's, from [`Stage::process_all`]: rows of the windows it
    /// fires go straight to `out`.
    #[inline(never)]
    fn arrive_emitting<E: Emit<Row<G::Key, A::Output>>>(&mut self, ts: u64, out: &mut E) {
        self.arrive(ts, out);
    }

    /// The parked arrival goes into the newest window, or is placed (or late); then windows
    /// fire as due, into `out`.
    #[inline(always)]
    fn arrive<E: Emit<Row<G::Key, A::Output>>>(&mut self, ts: u64, out: &mut E) {
        let Some(item) = self.parked.take() else {
            return;
        };
        if self.in_newest(ts) {
            self.windows
                .newest
                .pane
                .add(&self.grouping, &self.agg, &item);
        } else {
            self.place(ts, item);
        }
        self.clock.saw(ts);
        if ts >= self.fire_at {
            let wm = self.clock.watermark();
            self.fire(wm, out);
        }
    }

    /// The parked arrival is its group's first in the newest window.
    #[inline(never)]
    fn start_parked(&mut self, key: G::Key) {
        if let Some(item) = self.parked.take() {
            self.windows
                .newest
                .pane
                .start::<T, G, A>(&key, &self.agg, &item);
        }
    }

    /// Emits the rows of fired windows.
    #[inline]
    fn emit_ready<E: Emit<Row<G::Key, A::Output>>>(&mut self, out: &mut E) {
        for row in self.ready.drain(..) {
            out.emit(row);
        }
    }

    /// An arrival outside the newest window: late, or added to every open window containing
    /// it (creating windows as needed), newest first: starts `last_start`, `last_start − slide`,
    /// …
    fn place(&mut self, ts: u64, item: T) {
        let (size, slide) = (self.size, self.slide);
        let wm = self.clock.watermark();
        let last_start = ts / slide * slide;
        if self.clock.fired(last_start + size, wm) {
            self.late.send(item);
            return;
        }
        let mut start = last_start;
        loop {
            if start + size <= ts {
                break;
            }
            if !self.clock.fired(start + size, wm) {
                let grouping = &self.grouping;
                let pane = self.windows.get(start, || Pane::new(grouping.table()));
                pane.add(grouping, &self.agg, &item);
            }
            if start < slide {
                break;
            }
            start -= slide;
        }
        self.retarget();
    }

    /// Closes every window the watermark `wm` has fired (all of them for `None`: end of
    /// stream), oldest first, into `out`.
    fn fire<E: Emit<Row<G::Key, A::Output>>>(&mut self, wm: Option<u64>, out: &mut E) {
        let size = self.size;
        let clock = self.clock;
        let due = |start: u64| wm.is_none() || clock.fired(start + size, wm);
        let windows = &mut self.windows;
        let fired = windows.older.iter().take_while(|w| due(w.start)).count();
        for mut w in windows.older.drain(..fired) {
            let bounds = Bounds {
                start: w.start,
                end: w.start + size,
            };
            w.pane.close(&self.agg, bounds, out);
            windows.spare.0.push(w.pane);
        }
        if windows.older.is_empty() && windows.has_newest && due(windows.newest.start) {
            let start = windows.newest.start;
            let bounds = Bounds {
                start,
                end: start + size,
            };
            windows.newest.pane.close(&self.agg, bounds, out);
            windows.has_newest = false;
        }
        self.retarget();
    }
}

impl<T, TS, G, A> Stage<T> for TumblingAgg<T, TS, G, A>
where
    TS: Fn(&T) -> u64,
    G: Grouping<T>,
    A: Aggregate<T>,
{
    type Out = Row<G::Key, A::Output>;

    /// The open windows with their groups' states, and where event time stands. (Between
    /// calls nothing is parked and no row waits to be emitted.)
    fn snapshot(&self, snapshot: &mut Snapshot) -> Result<(), StateError> {
        snapshot.write(|w| {
            self.clock.save(w)?;
            self.windows.save(w)
        })
    }

    fn restore(&mut self, restore: &mut Restore) -> Result<(), StateError> {
        let clock = &mut self.clock;
        if let Some(windows) = restore.read(|r| {
            clock.load(r)?;
            Windows::load(r)
        })? {
            self.windows = windows;
            self.retarget();
        }
        Ok(())
    }

    #[inline]
    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        let ts = (self.ts)(&item);
        if ts >= self.clock.max_ts() && ts < self.hot_limit {
            self.clock.advance(ts);
            let key = self.grouping.key(&item);
            if !self.windows.newest.pane.fold(&key, &self.agg, &item) {
                self.parked = Some(item);
                self.start_parked(key);
            }
        } else {
            self.parked = Some(item);
            self.arrive_parked(ts);
            if !self.ready.is_empty() {
                self.emit_ready(out);
            }
        }
    }

    /// The fast path as a loop of its own, over local copies of the clock's largest timestamp
    /// and the fast path's limit (registers, as in a hand-written loop); the first arrival it
    /// cannot take leaves the loop, goes the out-of-line way, and the loop resumes with the
    /// state that way left.
    #[inline(always)]
    fn process_all<I: Iterator<Item = T>, E: Emit<Self::Out>>(&mut self, items: I, out: &mut E) {
        let mut items = items;
        loop {
            let mut max_ts = self.clock.max_ts();
            let hot_limit = self.hot_limit;
            let mut stopped = None;
            {
                let mut groups = self.windows.newest.pane.table.folder();
                // The loop, with the table's fold for ready tables or the general one: chosen
                // once per run, not tested per event.
                macro_rules! scan {
                    ($fold:ident, $insert:ident) => {
                        for item in items.by_ref() {
                            let ts = (self.ts)(&item);
                            if ts >= max_ts && ts < hot_limit {
                                max_ts = ts;
                                let key = self.grouping.key(&item);
                                if !groups.$fold(&key, |state| self.agg.$insert(state, &item)) {
                                    stopped = Some((item, ts, Some(key)));
                                    break;
                                }
                            } else {
                                stopped = Some((item, ts, None));
                                break;
                            }
                        }
                    };
                }
                // A ready table counts events: aggregates leave counting to it (see
                // `Table::is_ready`).
                if groups.is_ready() {
                    scan!(fold_ready, insert_counted);
                } else {
                    scan!(fold, insert);
                }
            }
            self.clock.advance(max_ts);
            let Some((item, ts, key)) = stopped else {
                return;
            };
            self.parked = Some(item);
            match key {
                // On the fast path, but its group's first event in the window.
                Some(key) => self.start_parked(key),
                None => self.arrive_emitting(ts, out),
            }
        }
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: Watermark, out: &mut E) {
        self.clock.upstream(watermark);
        let wm = self.clock.watermark();
        self.fire(wm, out);
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.fire(None, out);
        self.late.end();
    }

    fn late_events(&self) -> u64 {
        self.late.count()
    }

    fn event_time(&mut self, input_watermarked: bool) -> bool {
        self.clock.follow_upstream(input_watermarked);
        self.retarget();
        input_watermarked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::count;
    use crate::state::{Compression, from_bytes, to_bytes};

    /// `windows` through a checkpoint.
    fn round_trip<P>(windows: &Windows<P>) -> Windows<P>
    where
        Windows<P>: Checkpoint,
    {
        let bytes = to_bytes(windows, Compression::None).expect("save");
        from_bytes(&bytes).expect("load")
    }

    #[test]
    fn checkpoints_keep_spare_panes_only_when_their_tables_order_by_history() {
        type E = (u64, u32);
        // Windows overlap (out-of-orderness 5), so a fired pane waits as a spare for reuse
        // until the next window opens (here: [30, 40) is open, [20, 30)'s pane is spare).
        let events: Vec<E> = (0..40).map(|i| (i, (i % 3) as u32)).collect();
        let mut hashed = tumbling(10, |e: &E| e.0)
            .out_of_orderness(5)
            .group_by(|e: &E| e.1)
            .aggregate(count());
        let mut dense = tumbling(10, |e: &E| e.0)
            .out_of_orderness(5)
            .group_by_index(|e: &E| e.1 as usize)
            .aggregate(count());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        hashed.process_all(events.iter().copied(), &mut a);
        dense.process_all(events.iter().copied(), &mut b);
        assert_eq!(
            (a.len(), b.len()),
            (9, 9),
            "three windows of three groups each"
        );
        assert_eq!(hashed.windows.spare.0.len(), 1);
        assert_eq!(dense.windows.spare.0.len(), 1);
        // A ready keyed table lists its groups in slot order: its spare pane is kept.
        assert_eq!(round_trip(&hashed.windows).spare.0.len(), 1);
        // Index order needs nothing kept: the spare is made afresh after a restore.
        assert_eq!(round_trip(&dense.windows).spare.0.len(), 0);
    }
}
