//! Key groups: the unit in which keyed parallel (`=>[workers = N, key = ..]`) state is kept,
//! so that a checkpoint taken with one number of workers restores into another.
//!
//! Every key belongs to one of a keyed edge's key groups (by its hash; [`KEY_GROUPS`] unless
//! the edge sets `key_groups = N`); worker `w` of `n` owns a contiguous range of groups
//! ([`key_groups_of`]), and the router sends each event to the owner of its key's group.
//! Inside a worker, [`KeyGroups`] keeps **one instance of the worker's chain per key group**
//! and runs each event through its group's instance: a group's state and output depend only
//! on that group's events (and the watermarks and barriers every group sees), never on which
//! worker ran it or which other groups shared that worker. So a
//! checkpoint — which saves each group's state apart — restores into any number of workers
//! (up to the number of key groups) with the same results, as Flink's key groups (its "max
//! parallelism") do. The number of key groups is fixed for a job's life: a checkpoint restores
//! only into the same number.
//!
//! Fewer key groups cost less: a worker repeats per-window work (opening, firing) for each of
//! its groups, which shows when there are few keys per group (see the README's "Rescaling").

use std::collections::BTreeMap;
use std::hash::Hash;
use std::ops::Range;

use crate::StageError;
use crate::stage::{CheckpointId, Emit, Stage, Watermark};
use crate::state::{Restore, Snapshot, StateError, StateReader, StateWriter};

/// The number of key groups of a keyed edge that does not set `key_groups`, and the most it
/// may set (so the most workers a keyed edge can have).
pub const KEY_GROUPS: usize = 128;

/// One state id's parts of several key groups: `(group, bytes)` (saved after the number of
/// key groups).
type GroupParts = Vec<(u16, Vec<u8>)>;

/// The prefix of a saved state of the key groups (the rest is the id inside each group).
pub(crate) const GROUP_STATE: &str = "@";

/// The key group (of `groups`) of `key`: an FxHash-style hash (no SipHash on the hot path),
/// avalanched so that sequential keys spread over the high bits, scaled to `0..groups` by a
/// multiply-high. It depends only on the key's [`Hash`], so it is the same in every build of a
/// program for a given target.
///
/// ```
/// use eventflux_runtime::exec::{key_group, KEY_GROUPS};
/// let g = key_group(&"AAPL", KEY_GROUPS);
/// assert!(g < KEY_GROUPS);
/// assert_eq!(g, key_group(&"AAPL", KEY_GROUPS));
/// ```
#[inline]
pub fn key_group<K: Hash + ?Sized>(key: &K, groups: usize) -> usize {
    let mut h = crate::window::FxHasher::default();
    key.hash(&mut h);
    let mut x = std::hash::Hasher::finish(&h);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    ((u128::from(x) * groups as u128) >> 64) as usize
}

/// The worker (of `workers`) that owns key group `group` (of `groups`): groups are dealt out
/// in contiguous ranges, as [`key_groups_of`] lists them.
#[inline]
pub fn worker_of(group: usize, workers: usize, groups: usize) -> usize {
    group * workers / groups.max(1)
}

/// The key groups (of `groups`) worker `worker` of `workers` owns: the groups `g` with
/// [`worker_of(g, workers, groups)`](worker_of) `== worker`. Every worker owns at least one
/// group when `workers <= groups`.
///
/// ```
/// use eventflux_runtime::exec::{key_groups_of, worker_of, KEY_GROUPS};
/// let ranges: Vec<_> = (0..3).map(|w| key_groups_of(w, 3, KEY_GROUPS)).collect();
/// assert_eq!(ranges[0].start, 0);
/// assert_eq!(ranges[2].end, KEY_GROUPS);
/// assert_eq!(ranges[0].end, ranges[1].start);
/// assert!(ranges[1].clone().all(|g| worker_of(g, 3, KEY_GROUPS) == 1));
/// ```
pub fn key_groups_of(worker: usize, workers: usize, groups: usize) -> Range<usize> {
    let first = |w: usize| (w * groups).div_ceil(workers.max(1));
    first(worker).min(groups)..first(worker + 1).min(groups)
}

/// A keyed worker's chain, one instance per key group it owns: each event runs through the
/// instance of its key's group; watermarks, barriers, timers and the end of the stream reach
/// every instance, in group order. Checkpoints save each group's state apart (see the
/// [module docs](self)), so the state restores into a different number of workers.
///
/// `pipeline!` builds one for every keyed segment (`=>[workers = N, key = ..]`); a pipeline
/// built by hand uses it with a [`KeyedOutput`](super::KeyedOutput) and the same key.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::exec::{key_group, key_groups_of, KeyGroups, KEY_GROUPS};
///
/// // A running count per key group, in worker 0 of 2 (key groups 0..64 of 128).
/// let counter = || stateful(0u32, |n: &mut u32, k: u8| { *n += 1; Some((k, *n)) });
/// let groups = key_groups_of(0, 2, KEY_GROUPS);
/// let instances = groups.clone().map(|_| counter()).collect();
/// let mut stage = KeyGroups::new(KEY_GROUPS, groups, |k: &u8| *k, instances);
/// // Two keys of this worker, in different key groups.
/// let group = |k: &u8| key_group(k, KEY_GROUPS);
/// let a = (0..=255u8).find(|k| group(k) < 64).unwrap();
/// let b = (0..=255u8).find(|k| group(k) < 64 && group(k) != group(&a)).unwrap();
/// let mut out = Vec::new();
/// for k in [a, b, a] {
///     stage.process(k, &mut out);
/// }
/// // Each group counts its own events.
/// assert_eq!(out, [(a, 1), (b, 1), (a, 2)]);
/// ```
pub struct KeyGroups<C, F> {
    /// The edge's number of key groups.
    total: usize,
    /// The first group this worker owns; `instances[i]` is group `first + i`'s.
    first: usize,
    instances: Vec<C>,
    key: F,
    /// The latest watermark each instance emitted itself (a watermark generator inside the
    /// chain), and the least of them forwarded so far.
    marks: Vec<Option<u64>>,
    forwarded: Option<u64>,
}

impl<C, F> std::fmt::Debug for KeyGroups<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyGroups")
            .field("groups", &(self.first..self.first + self.instances.len()))
            .finish_non_exhaustive()
    }
}

impl<C, F> KeyGroups<C, F> {
    /// The chain instances of key groups `groups` (one each, in order) of `total`, routed by
    /// `key`.
    ///
    /// # Panics
    ///
    /// If `instances` does not hold one instance per group of `groups`, or `groups` is not
    /// within `0..total` (a bug in the caller).
    pub fn new(total: usize, groups: Range<usize>, key: F, instances: Vec<C>) -> Self {
        assert_eq!(
            groups.len(),
            instances.len(),
            "KeyGroups::new takes one chain instance per key group"
        );
        assert!(
            groups.end <= total,
            "KeyGroups::new: groups beyond the total"
        );
        let n = instances.len();
        KeyGroups {
            total,
            first: groups.start,
            instances,
            key,
            marks: vec![None; n],
            forwarded: None,
        }
    }

    /// The key groups this stage holds.
    pub fn groups(&self) -> Range<usize> {
        self.first..self.first + self.instances.len()
    }
}

/// What one instance emits: events pass straight through; a watermark it generates goes on
/// only as the least of every instance's latest (so no group's events become late because
/// another group's event time ran ahead).
struct GroupOut<'a, E> {
    out: &'a mut E,
    marks: &'a mut [Option<u64>],
    forwarded: &'a mut Option<u64>,
    at: usize,
}

impl<T, E: Emit<T>> Emit<T> for GroupOut<'_, E> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        self.out.emit(item);
    }

    fn fail(&mut self, error: StageError) {
        self.out.fail(error);
    }

    fn emit_watermark(&mut self, watermark: Watermark) {
        if let Some(m) = self.marks.get_mut(self.at) {
            *m = Some(m.map_or(watermark.0, |m| m.max(watermark.0)));
        }
        let least = self.marks.iter().flatten().min().copied();
        if let Some(least) = least.filter(|&l| self.forwarded.is_none_or(|f| l > f)) {
            *self.forwarded = Some(least);
            self.out.emit_watermark(Watermark(least));
        }
    }
}

impl<C, F> KeyGroups<C, F> {
    /// Runs `f` on every instance, each with its own view of `out`.
    fn each<E>(&mut self, out: &mut E, mut f: impl FnMut(&mut C, &mut GroupOut<'_, E>)) {
        for (at, instance) in self.instances.iter_mut().enumerate() {
            f(
                instance,
                &mut GroupOut {
                    out,
                    marks: &mut self.marks,
                    forwarded: &mut self.forwarded,
                    at,
                },
            );
        }
    }
}

impl<In, C, F, K> Stage<In> for KeyGroups<C, F>
where
    C: Stage<In>,
    F: FnMut(&In) -> K,
    K: Hash,
{
    type Out = C::Out;
    const ONE_TO_ONE: bool = C::ONE_TO_ONE;

    #[inline]
    fn process<E: Emit<Self::Out>>(&mut self, item: In, out: &mut E) {
        let at = key_group(&(self.key)(&item), self.total).wrapping_sub(self.first);
        match self.instances.get_mut(at) {
            Some(instance) => instance.process(
                item,
                &mut GroupOut {
                    out,
                    marks: &mut self.marks,
                    forwarded: &mut self.forwarded,
                    at,
                },
            ),
            None => misrouted(out, at.wrapping_add(self.first), self.groups()),
        }
    }

    fn on_batch_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.each(out, |c, o| c.on_batch_end(o));
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: Watermark, out: &mut E) {
        self.each(out, |c, o| c.on_watermark(watermark, o));
    }

    fn on_barrier<E: Emit<Self::Out>>(&mut self, checkpoint: CheckpointId, out: &mut E) {
        self.each(out, |c, o| c.on_barrier(checkpoint, o));
    }

    fn late_events(&self) -> u64 {
        self.instances.iter().map(Stage::late_events).sum()
    }

    fn next_timer(&self) -> Option<std::time::Duration> {
        self.instances.iter().filter_map(Stage::next_timer).min()
    }

    fn on_timer<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.each(out, |c, o| c.on_timer(o));
    }

    fn event_time(&mut self, input_watermarked: bool) -> bool {
        self.instances
            .iter_mut()
            .fold(input_watermarked, |_, c| c.event_time(input_watermarked))
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.each(out, |c, o| c.on_end(o));
    }

    /// Each state id of the instances is saved once, as the list of every group's part:
    /// `(group, bytes)`, under the id `@<id>` (a delta if any group's part is one).
    fn snapshot(&self, snapshot: &mut Snapshot) -> Result<(), StateError> {
        // Per state id: every group's part, and whether any is a delta.
        let mut bundles: BTreeMap<String, (GroupParts, bool)> = BTreeMap::new();
        for (at, instance) in self.instances.iter().enumerate() {
            let group = u16::try_from(self.first + at).unwrap_or(u16::MAX);
            let mut own = snapshot.for_group();
            instance.snapshot(&mut own)?;
            let deltas = own.deltas().clone();
            for (id, bytes) in own.into_parts() {
                let delta = deltas.contains(&id);
                let bundle = bundles.entry(id).or_default();
                bundle.0.push((group, bytes));
                bundle.1 |= delta;
            }
        }
        let total = u16::try_from(self.total).unwrap_or(u16::MAX);
        for (id, (parts, delta)) in bundles {
            let mut w = StateWriter::new();
            w.put(&(total, parts))?;
            snapshot.put_part(format!("{GROUP_STATE}{id}"), w.into_bytes(), delta);
        }
        Ok(())
    }

    /// Reads every saved group part (from however many workers saved them) and hands each
    /// instance its group's.
    fn restore(&mut self, restore: &mut Restore) -> Result<(), StateError> {
        let mut per_group: Vec<BTreeMap<String, Vec<Vec<u8>>>> =
            vec![BTreeMap::new(); self.instances.len()];
        for (id, chain) in restore.take_prefixed(GROUP_STATE) {
            for part in chain {
                let mut r = StateReader::new(&part);
                let (total, parts): (u16, GroupParts) = r
                    .take()
                    .map_err(|e| StateError::Custom(format!("state `{GROUP_STATE}{id}`: {e}")))?;
                if usize::from(total) != self.total {
                    return Err(StateError::Custom(format!(
                        "state `{id}` was saved with {total} key groups, but this keyed edge has \
                         {}: the number of key groups is fixed for a job's life (set \
                         `key_groups = {total}` on the edge, or start afresh)",
                        self.total
                    )));
                }
                for (group, bytes) in parts {
                    let at = usize::from(group).wrapping_sub(self.first);
                    if let Some(states) = per_group.get_mut(at) {
                        states.entry(id.clone()).or_default().push(bytes);
                    }
                }
            }
        }
        for (at, (instance, states)) in self.instances.iter_mut().zip(per_group).enumerate() {
            let mut own = restore.for_group(states);
            instance.restore(&mut own)?;
            if let Some(id) = own.unused().first() {
                return Err(StateError::Custom(format!(
                    "key group {}: no node takes the saved state `{id}`",
                    self.first + at
                )));
            }
        }
        Ok(())
    }
}

/// An event whose key group this worker does not own: the router and this worker disagree on
/// the key (a hand-built pipeline using different keys on the two sides).
#[cold]
#[inline(never)]
fn misrouted<T, E: Emit<T>>(out: &mut E, group: usize, own: Range<usize>) {
    out.fail(StageError::new(format!(
        "an event of key group {group} reached the worker of key groups {own:?}: the keyed \
         edge and its workers must use the same key"
    )));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::watermarks;

    /// Records events and watermarks.
    #[derive(Default)]
    struct Seen {
        events: Vec<(u8, u64)>,
        watermarks: Vec<u64>,
    }

    impl Emit<(u8, u64)> for Seen {
        fn emit(&mut self, item: (u8, u64)) {
            self.events.push(item);
        }
        fn fail(&mut self, error: StageError) {
            panic!("{error}");
        }
        fn emit_watermark(&mut self, watermark: Watermark) {
            self.watermarks.push(watermark.0);
        }
    }

    /// A watermark generator inside keyed workers runs per key group; the worker forwards the
    /// least of the groups' latest watermarks (of the groups that have one), and only when it
    /// advances: no group's events become late because another group ran ahead.
    #[test]
    fn generated_watermarks_go_on_as_the_least_over_the_groups() {
        let marks = || watermarks(|e: &(u8, u64)| e.1, 0);
        let mut stage = KeyGroups::new(2, 0..2, |e: &(u8, u64)| e.0, vec![marks(), marks()]);
        let group = |k: &u8| key_group(k, 2);
        let a = (0..=255u8).find(|k| group(k) == 0).unwrap_or(0);
        let b = (0..=255u8).find(|k| group(k) == 1).unwrap_or(0);
        let mut seen = Seen::default();
        // Batches of one event (a generator emits at the end of a batch).
        for e in [(a, 100), (b, 50), (b, 200), (a, 300)] {
            stage.process(e, &mut seen);
            stage.on_batch_end(&mut seen);
        }
        assert_eq!(seen.events, [(a, 100), (b, 50), (b, 200), (a, 300)]);
        // a: 99 (only a has one); b: 49 (least 49, not an advance); b: 199 (least 99);
        // a: 299 (least 199).
        assert_eq!(seen.watermarks, [99, 199]);
    }

    #[test]
    fn every_group_has_exactly_one_worker() {
        for groups in 1..=KEY_GROUPS {
            for workers in 1..=groups {
                let mut next = 0;
                for w in 0..workers {
                    let r = key_groups_of(w, workers, groups);
                    assert_eq!(
                        r.start, next,
                        "{workers} of {groups}: ranges are contiguous"
                    );
                    assert!(
                        !r.is_empty(),
                        "{workers} of {groups}: worker {w} owns a group"
                    );
                    assert!(r.clone().all(|g| worker_of(g, workers, groups) == w));
                    next = r.end;
                }
                assert_eq!(next, groups);
            }
        }
    }
}
