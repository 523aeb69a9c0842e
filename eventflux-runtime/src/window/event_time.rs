//! Event-time windows: `tumbling(size, ts)` and `sliding(size, slide, ts)`.
//!
//! Windows are `[k·slide, k·slide + size)` in event time (`slide == size` for tumbling); an
//! event belongs to every window containing its timestamp. The watermark and firing rule are
//! stated once, in [the window module](crate::window#event-time): one [`Row`] per group, in
//! order of first appearance, with the window's [`Bounds`]; windows firing together are emitted
//! in order of start. An event none of whose windows is still open is late: it goes to the late
//! output and is counted. At end of stream all open windows fire.
//!
//! Event-time windows are used with `.aggregate(..)`.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::aggregate::Aggregate;
use crate::stage::{Chain, Emit, Filter, Stage, StageExt, Watermark, filter};
use crate::window::{Bounds, ByIndex, ByKey, Global, Grouping, Late, Pane, Row, Table};

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
/// let rows: Vec<_> = out.iter().map(|r| (r.key, r.values, r.window.unwrap().start)).collect();
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
/// let rows: Vec<_> = out.iter().map(|r| (r.window.unwrap().start, r.values)).collect();
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

    /// Groups by a small integer used as an array index (fastest).
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
            open: VecDeque::new(),
            spare: Vec::new(),
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
    max_ts: Option<u64>,
    upstream: Option<u64>,
    /// The input carries watermarks: follow them only, derive none.
    follow_upstream: bool,
}

impl EventClock {
    pub(crate) fn new(out_of_orderness: u64, allowed_lateness: u64) -> Self {
        Self {
            out_of_orderness,
            allowed_lateness,
            max_ts: None,
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
            .and_then(|m| m.checked_sub(self.out_of_orderness.saturating_add(1)));
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

    /// Records a timestamp; returns whether the largest one seen advanced (and with it, maybe,
    /// the watermark).
    #[inline]
    pub(crate) fn saw(&mut self, ts: u64) -> bool {
        match self.max_ts {
            Some(m) if m >= ts => false,
            _ => {
                self.max_ts = Some(ts);
                true
            }
        }
    }

    pub(crate) fn upstream(&mut self, w: Watermark) {
        self.upstream = Some(self.upstream.map_or(w.0, |u| u.max(w.0)));
    }
}

/// The pane type of an event-time window.
type PaneOf<T, G, A> = Pane<<G as Grouping<T>>::Table<<A as Aggregate<T>>::State>>;

struct OpenWindow<P> {
    start: u64,
    pane: P,
}

/// `tumbling(..)/sliding(..)` with `.aggregate(spec)`.
pub struct TumblingAgg<T, TS, G: Grouping<T>, A: Aggregate<T>> {
    size: u64,
    slide: u64,
    clock: EventClock,
    open: VecDeque<OpenWindow<PaneOf<T, G, A>>>,
    spare: Vec<PaneOf<T, G, A>>,
    grouping: G,
    ts: TS,
    agg: A,
    late: Late<T>,
    _t: PhantomData<fn(T)>,
}

impl<T, TS, G: Grouping<T>, A: Aggregate<T>> TumblingAgg<T, TS, G, A> {
    /// Emits only rows for which `predicate` holds (a `filter` fused after the window).
    pub fn having<P>(self, predicate: P) -> Chain<Self, Filter<P>>
    where
        P: FnMut(&Row<G::Key, A::Output>) -> bool,
    {
        self.then(filter(predicate))
    }

    /// A counter of late events, readable while the pipeline runs.
    pub fn late_counter(&self) -> Arc<AtomicU64> {
        self.late.counter()
    }

    /// Windows currently open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Groups held across all open windows (0 once every window has fired).
    pub fn groups(&self) -> usize {
        self.open.iter().map(|w| w.pane.table.len()).sum()
    }

    /// Adds `item` (timestamp `ts`) to every open window containing it, creating windows as
    /// needed, newest first: starts `last_start`, `last_start − slide`, …
    fn place(&mut self, ts: u64, last_start: u64, wm: Option<u64>, item: &T)
    where
        G: Grouping<T>,
        A: Aggregate<T>,
    {
        let (size, slide) = (self.size, self.slide);
        let mut start = last_start;
        loop {
            if start + size <= ts {
                break;
            }
            if !self.clock.fired(start + size, wm) {
                let pos = self.open.iter().rposition(|w| w.start <= start);
                let idx = match pos {
                    Some(i) if self.open[i].start == start => i,
                    _ => {
                        let at = pos.map_or(0, |i| i + 1);
                        let grouping = &self.grouping;
                        let pane = self
                            .spare
                            .pop()
                            .unwrap_or_else(|| Pane::new(grouping.table()));
                        self.open.insert(at, OpenWindow { start, pane });
                        at
                    }
                };
                self.open[idx].pane.add(&self.grouping, &self.agg, item);
            }
            if start < slide {
                break;
            }
            start -= slide;
        }
    }

    fn fire<E>(&mut self, wm: Option<u64>, out: &mut E)
    where
        E: Emit<Row<G::Key, A::Output>>,
    {
        while let Some(front) = self.open.front() {
            let end = front.start + self.size;
            if wm.is_some() && !self.clock.fired(end, wm) {
                break;
            }
            let Some(mut w) = self.open.pop_front() else {
                break;
            };
            let bounds = Bounds {
                start: w.start,
                end,
            };
            w.pane.close(&self.agg, Some(bounds), out);
            self.spare.push(w.pane);
        }
    }
}

impl<T, TS, G, A> Stage<T> for TumblingAgg<T, TS, G, A>
where
    TS: Fn(&T) -> u64,
    G: Grouping<T>,
    A: Aggregate<T>,
{
    type Out = Row<G::Key, A::Output>;

    #[inline]
    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        let ts = (self.ts)(&item);
        let (size, slide) = (self.size, self.slide);
        // Fast path (tumbling): the event falls in the newest open window, which is therefore
        // not closed — no division, no lateness check needed.
        if slide == size
            && let Some(back) = self.open.back_mut()
            && ts >= back.start
            && ts - back.start < size
        {
            back.pane.add(&self.grouping, &self.agg, &item);
        } else {
            let wm = self.clock.watermark();
            let last_start = ts / slide * slide;
            if self.clock.fired(last_start + size, wm) {
                self.late.send(item);
                return;
            }
            self.place(ts, last_start, wm, &item);
        }
        if self.clock.saw(ts) {
            let wm = self.clock.watermark();
            if self
                .open
                .front()
                .is_some_and(|w| self.clock.fired(w.start + size, wm))
            {
                self.fire(wm, out);
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
        input_watermarked
    }
}
