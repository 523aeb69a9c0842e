//! `session(gap, ts)`: per-key sessions in event time.
//!
//! A session of a group is a run of its events whose timestamps are less than `gap` apart; its
//! bounds are `[first_ts, last_ts + gap)`. An event within `gap` of one or more sessions of its
//! group joins them, merging sessions it bridges (aggregate states are merged). Sessions fire like
//! event-time windows (see the [module docs](crate::window)): when the watermark reaches
//! `end − 1 + allowed_lateness`, one [`Row`] per session, in order of session start, ties in
//! order of the group's first appearance. An event that could only join an already fired
//! session is late. At end of stream every open session fires.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::aggregate::Aggregate;
use crate::io::ChannelHandle;
use crate::stage::{Emit, Stage, Watermark};
use crate::window::event_time::EventClock;
use crate::window::{Bounds, FxHasher, Having, KeepAll, Row};

/// A session window builder. See [`session`].
pub struct Session<T, TS, K> {
    gap: u64,
    ts: TS,
    key: K,
    out_of_orderness: u64,
    allowed_lateness: u64,
    late: Option<ChannelHandle<T>>,
    late_count: Arc<AtomicU64>,
}

/// Sessions per `key(event)` separated by gaps of at least `gap` (≥ 1) in `ts(event)`.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::aggregate::*;
/// use eventflux_runtime::window::{session, Bounds};
/// let mut w = session(5, |e: &(u64, char)| e.0, |e: &(u64, char)| e.1).aggregate(count());
/// let mut out = Vec::new();
/// for e in [(1, 'a'), (2, 'b'), (4, 'a'), (20, 'a')] { w.process(e, &mut out); }
/// w.on_end(&mut out);
/// let rows: Vec<_> = out.iter().map(|r| (r.key, r.values, r.window.unwrap())).collect();
/// assert_eq!(rows, [
///     ('a', 2, Bounds { start: 1, end: 9 }),
///     ('b', 1, Bounds { start: 2, end: 7 }),
///     ('a', 1, Bounds { start: 20, end: 25 }),
/// ]);
/// ```
pub fn session<T, TS, K, KF>(gap: u64, ts: TS, key: KF) -> Session<T, TS, KF>
where
    TS: Fn(&T) -> u64,
    KF: Fn(&T) -> K,
{
    Session {
        gap: gap.max(1),
        ts,
        key,
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: None,
        late_count: Arc::new(AtomicU64::new(0)),
    }
}

impl<T, TS, KF> Session<T, TS, KF> {
    event_time_options!();

    /// Aggregates each session.
    pub fn aggregate<K, A>(self, spec: A) -> SessionAgg<T, TS, KF, K, A, KeepAll>
    where
        KF: Fn(&T) -> K,
        A: Aggregate<T>,
    {
        SessionAgg {
            gap: self.gap,
            clock: EventClock::with(self.out_of_orderness, self.allowed_lateness),
            ts: self.ts,
            key: self.key,
            agg: spec,
            having: KeepAll,
            sessions: HashMap::default(),
            first_seen: HashMap::default(),
            next_seq: 0,
            open: 0,
            earliest_end: u64::MAX,
            late: self.late,
            late_count: self.late_count,
            _t: PhantomData,
        }
    }
}

struct Open<S> {
    start: u64,
    last: u64,
    state: S,
}

/// `session(..).aggregate(spec)`.
pub struct SessionAgg<T, TS, KF, K, A: Aggregate<T>, H> {
    gap: u64,
    clock: EventClock,
    ts: TS,
    key: KF,
    agg: A,
    having: H,
    /// Open sessions per key, sorted by start, never overlapping.
    sessions: HashMap<K, Vec<Open<A::State>>, BuildHasherDefault<FxHasher>>,
    /// First appearance of each key with open sessions (for deterministic output order).
    first_seen: HashMap<K, u64, BuildHasherDefault<FxHasher>>,
    next_seq: u64,
    open: usize,
    /// A lower bound on the earliest session end: no scan is needed before the watermark
    /// reaches it (sessions only grow, so a stale bound costs a scan, never a missed firing).
    earliest_end: u64,
    late: Option<ChannelHandle<T>>,
    late_count: Arc<AtomicU64>,
    _t: PhantomData<fn(T)>,
}

impl<T, TS, KF, K, A: Aggregate<T>, H> SessionAgg<T, TS, KF, K, A, H> {
    /// Emits only rows for which `predicate` holds.
    pub fn having<P>(self, predicate: P) -> SessionAgg<T, TS, KF, K, A, P>
    where
        P: FnMut(&Row<K, A::Output>) -> bool,
    {
        SessionAgg {
            gap: self.gap,
            clock: self.clock,
            ts: self.ts,
            key: self.key,
            agg: self.agg,
            having: predicate,
            sessions: self.sessions,
            first_seen: self.first_seen,
            next_seq: self.next_seq,
            open: self.open,
            earliest_end: self.earliest_end,
            late: self.late,
            late_count: self.late_count,
            _t: PhantomData,
        }
    }

    /// Sessions currently open (0 once all have fired).
    pub fn open_sessions(&self) -> usize {
        self.open
    }
}

impl<T, TS, KF, K, A, H> SessionAgg<T, TS, KF, K, A, H>
where
    K: Hash + Eq + Clone,
    A: Aggregate<T>,
    H: Having<Row<K, A::Output>>,
{
    fn fire<E: Emit<Row<K, A::Output>>>(&mut self, wm: Option<u64>, out: &mut E) {
        if wm.is_some() && (self.open == 0 || !self.clock.fired(self.earliest_end, wm)) {
            return;
        }
        let mut due: Vec<(u64, u64, K, Open<A::State>)> = Vec::new();
        for (k, list) in self.sessions.iter_mut() {
            let mut i = 0;
            while i < list.len() {
                let end = list[i].last + self.gap;
                if wm.is_none() || self.clock.fired(end, wm) {
                    let seq = self.first_seen.get(k).copied().unwrap_or(u64::MAX);
                    due.push((list[i].start, seq, k.clone(), list.remove(i)));
                } else {
                    i += 1;
                }
            }
        }
        self.earliest_end = self
            .sessions
            .values()
            .flatten()
            .map(|s| s.last + self.gap)
            .min()
            .unwrap_or(u64::MAX);
        if due.is_empty() {
            return;
        }
        self.open -= due.len();
        self.sessions.retain(|_, l| !l.is_empty());
        let sessions = &self.sessions;
        self.first_seen.retain(|k, _| sessions.contains_key(k));
        due.sort_by_key(|(start, seq, _, _)| (*start, *seq));
        for (_, _, key, s) in due {
            let row = Row {
                key,
                window: Some(Bounds {
                    start: s.start,
                    end: s.last + self.gap,
                }),
                values: self.agg.result(&s.state),
            };
            if self.having.keep(&row) {
                out.emit(row);
            }
        }
    }
}

impl<T, TS, KF, K, A, H> Stage<T> for SessionAgg<T, TS, KF, K, A, H>
where
    TS: Fn(&T) -> u64,
    KF: Fn(&T) -> K,
    K: Hash + Eq + Clone,
    A: Aggregate<T>,
    H: Having<Row<K, A::Output>>,
{
    type Out = Row<K, A::Output>;

    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        let ts = (self.ts)(&item);
        let wm = self.clock.watermark();
        // Even a new session [ts, ts + gap) would already have fired: late.
        if self.clock.fired(ts + self.gap, wm) {
            self.late_count.fetch_add(1, Ordering::Relaxed);
            if let Some(late) = &self.late {
                let _ = late.send(item);
            }
            return;
        }
        let key = (self.key)(&item);
        if !self.first_seen.contains_key(&key) {
            self.first_seen.insert(key.clone(), self.next_seq);
            self.next_seq += 1;
        }
        let list = self.sessions.entry(key).or_default();
        // Sessions this event touches: within `gap` on either side.
        let touching: Vec<usize> = (0..list.len())
            .filter(|&i| ts + self.gap > list[i].start && list[i].last + self.gap > ts)
            .collect();
        let agg = &self.agg;
        match touching.first() {
            None => {
                let mut state = agg.init();
                agg.insert(&mut state, &item);
                let at = list.partition_point(|s| s.start < ts);
                list.insert(
                    at,
                    Open {
                        start: ts,
                        last: ts,
                        state,
                    },
                );
                self.open += 1;
                self.earliest_end = self.earliest_end.min(ts + self.gap);
            }
            Some(&first) => {
                // Merge every touched session into the first, in start order.
                for &i in touching.iter().skip(1).rev() {
                    let other = list.remove(i);
                    let target = &mut list[first];
                    agg.merge(&mut target.state, &other.state);
                    target.start = target.start.min(other.start);
                    target.last = target.last.max(other.last);
                    self.open -= 1;
                }
                let target = &mut list[first];
                agg.insert(&mut target.state, &item);
                target.start = target.start.min(ts);
                target.last = target.last.max(ts);
            }
        }
        let _ = self.clock.saw(ts);
        // `fire(None)` flushes everything (end of stream); before any watermark, nothing fires.
        if let Some(wm) = self.clock.watermark() {
            self.fire(Some(wm), out);
        }
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: Watermark, out: &mut E) {
        self.clock.upstream(watermark);
        let wm = self.clock.watermark();
        self.fire(wm, out);
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.fire(None, out);
    }
}
