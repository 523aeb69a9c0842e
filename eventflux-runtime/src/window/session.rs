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
use std::sync::atomic::AtomicU64;

use crate::aggregate::Aggregate;
use crate::stage::{Emit, Stage, Watermark};
use crate::state::{Checkpoint, Restore, Snapshot, StateError};
use crate::window::event_time::EventClock;
use crate::window::{Bounds, FxHasher, Late, Row};

/// A session window builder. See [`session`].
pub struct Session<T, TS, K> {
    gap: u64,
    ts: TS,
    key: K,
    out_of_orderness: u64,
    allowed_lateness: u64,
    late: Late<T>,
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
/// let rows: Vec<_> = out.iter().map(|r| (r.key, r.values, r.window)).collect();
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
        late: Late::new(),
    }
}

impl<T, TS, KF> Session<T, TS, KF> {
    event_time_options!();

    /// Aggregates each session.
    pub fn aggregate<K, A>(self, spec: A) -> SessionAgg<T, TS, KF, K, A>
    where
        KF: Fn(&T) -> K,
        A: Aggregate<T>,
    {
        SessionAgg {
            gap: self.gap,
            clock: EventClock::new(self.out_of_orderness, self.allowed_lateness),
            ts: self.ts,
            key: self.key,
            agg: spec,
            groups: HashMap::default(),
            next_seq: 0,
            open: 0,
            earliest_end: u64::MAX,
            late: self.late,
            _t: PhantomData,
        }
    }
}

/// A group's open sessions and when the group first appeared (for deterministic output order).
#[derive(Checkpoint)]
#[checkpoint(crate = crate)]
struct Group<S> {
    seq: u64,
    /// Sorted by start, never overlapping.
    open: Vec<Open<S>>,
}

#[derive(Checkpoint)]
#[checkpoint(crate = crate)]
struct Open<S> {
    start: u64,
    last: u64,
    state: S,
}

/// `session(..).aggregate(spec)`.
pub struct SessionAgg<T, TS, KF, K, A: Aggregate<T>> {
    gap: u64,
    clock: EventClock,
    ts: TS,
    key: KF,
    agg: A,
    /// Groups with open sessions: one lookup per event.
    groups: HashMap<K, Group<A::State>, BuildHasherDefault<FxHasher>>,
    next_seq: u64,
    open: usize,
    /// A lower bound on the earliest session end: no scan is needed before the watermark
    /// reaches it (sessions only grow, so a stale bound costs a scan, never a missed firing).
    earliest_end: u64,
    late: Late<T>,
    _t: PhantomData<fn(T)>,
}

impl<T, TS, KF, K, A: Aggregate<T>> SessionAgg<T, TS, KF, K, A> {
    row_adapters!(closed, K, A::Output);

    /// A counter of late events, readable while the pipeline runs.
    pub fn late_counter(&self) -> Arc<AtomicU64> {
        self.late.counter()
    }

    /// Sessions currently open (0 once all have fired).
    pub fn open_sessions(&self) -> usize {
        self.open
    }
}

impl<T, TS, KF, K, A> SessionAgg<T, TS, KF, K, A>
where
    K: Hash + Eq + Clone,
    A: Aggregate<T>,
{
    fn fire<E: Emit<Row<K, A::Output>>>(&mut self, wm: Option<u64>, out: &mut E) {
        if wm.is_some() && (self.open == 0 || !self.clock.fired(self.earliest_end, wm)) {
            return;
        }
        let mut due: Vec<(u64, u64, K, Open<A::State>)> = Vec::new();
        for (k, group) in self.groups.iter_mut() {
            let list = &mut group.open;
            let mut i = 0;
            while i < list.len() {
                let end = list[i].last + self.gap;
                if wm.is_none() || self.clock.fired(end, wm) {
                    due.push((list[i].start, group.seq, k.clone(), list.remove(i)));
                } else {
                    i += 1;
                }
            }
        }
        self.earliest_end = self
            .groups
            .values()
            .flat_map(|g| &g.open)
            .map(|s| s.last + self.gap)
            .min()
            .unwrap_or(u64::MAX);
        if due.is_empty() {
            return;
        }
        self.open -= due.len();
        self.groups.retain(|_, g| !g.open.is_empty());
        due.sort_by_key(|(start, seq, _, _)| (*start, *seq));
        for (_, _, key, s) in due {
            let row = Row {
                key,
                window: Bounds {
                    start: s.start,
                    end: s.last + self.gap,
                },
                values: self.agg.result(&s.state),
            };
            out.emit(row);
        }
    }
}

impl<T, TS, KF, K, A> Stage<T> for SessionAgg<T, TS, KF, K, A>
where
    TS: Fn(&T) -> u64,
    KF: Fn(&T) -> K,
    K: Hash + Eq + Clone + Checkpoint,
    A: Aggregate<T>,
{
    type Out = Row<K, A::Output>;

    /// The open sessions of every group and where event time stands.
    fn snapshot(&self, snapshot: &mut Snapshot) -> Result<(), StateError> {
        snapshot.write(|w| {
            self.clock.save(w)?;
            self.groups.save(w)?;
            self.next_seq.save(w)?;
            self.open.save(w)?;
            self.earliest_end.save(w)
        })
    }

    fn restore(&mut self, restore: &mut Restore) -> Result<(), StateError> {
        let clock = &mut self.clock;
        if let Some((groups, next_seq, open, earliest_end)) = restore.read(|r| {
            clock.load(r)?;
            Ok((
                Checkpoint::load(r)?,
                u64::load(r)?,
                usize::load(r)?,
                u64::load(r)?,
            ))
        })? {
            self.groups = groups;
            self.next_seq = next_seq;
            self.open = open;
            self.earliest_end = earliest_end;
        }
        Ok(())
    }

    fn process<E: Emit<Self::Out>>(&mut self, item: T, out: &mut E) {
        let ts = (self.ts)(&item);
        let wm = self.clock.watermark();
        // Even a new session [ts, ts + gap) would already have fired: late.
        if self.clock.fired(ts + self.gap, wm) {
            self.late.send(item);
            return;
        }
        let key = (self.key)(&item);
        let next_seq = &mut self.next_seq;
        let list = &mut self
            .groups
            .entry(key)
            .or_insert_with(|| {
                *next_seq += 1;
                Group {
                    seq: *next_seq,
                    open: Vec::new(),
                }
            })
            .open;
        // Sessions this event touches (within `gap` on either side). A group's sessions are
        // sorted and disjoint, so they form one contiguous run, found by two binary searches.
        let gap = self.gap;
        let lo = list.partition_point(|s| s.last + gap <= ts);
        let hi = list.partition_point(|s| s.start < ts + gap);
        let agg = &self.agg;
        if lo >= hi {
            let state = agg.init(&item);
            list.insert(
                lo,
                Open {
                    start: ts,
                    last: ts,
                    state,
                },
            );
            self.open += 1;
            self.earliest_end = self.earliest_end.min(ts + gap);
        } else {
            // The event bridges every touched session: merge them, in start order, into the first.
            for _ in lo + 1..hi {
                let other = list.remove(lo + 1);
                let target = &mut list[lo];
                agg.merge(&mut target.state, &other.state);
                target.last = target.last.max(other.last);
                self.open -= 1;
            }
            let target = &mut list[lo];
            agg.insert(&mut target.state, &item);
            target.start = target.start.min(ts);
            target.last = target.last.max(ts);
        }
        self.clock.saw(ts);
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
        self.late.end();
    }

    fn event_time(&mut self, input_watermarked: bool) -> bool {
        self.clock.follow_upstream(input_watermarked);
        input_watermarked
    }

    fn late_events(&self) -> u64 {
        self.late.count()
    }
}
