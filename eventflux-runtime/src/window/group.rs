//! Group tables: per-group window state, keyed by hash, by a dense index, or a single group.
//!
//! A table maps a group key to a *slot* holding that group's state. Slots of groups that leave a
//! window are freed and reused, so state stays bounded by the groups currently in windows.
//! Hash-map iteration order never reaches users: a table that lists its groups itself does so
//! in the order of its slots (index order for `group_by_index`), and windows over other tables
//! record each group's first appearance explicitly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::state::{Checkpoint, StateError, StateReader, StateWriter};

/// FxHash-style hasher for group keys (SipHash costs a third of a hot loop's throughput).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// How events are grouped. Implemented by [`Global`], [`ByKey`] and [`ByIndex`].
pub trait Grouping<T> {
    /// The group key in output rows.
    type Key: Clone;
    /// The table holding per-group state `S` (saved in checkpoints).
    type Table<S: Checkpoint>: Table<Self::Key, S> + Checkpoint + SlotOrder;
    /// The key of `item`.
    fn key(&self, item: &T) -> Self::Key;
    /// An empty table.
    fn table<S: Checkpoint>(&self) -> Self::Table<S>;
}

/// Per-group state storage.
///
/// A slot is *active* while its group is in a window. [`release`](Table::release) deactivates a
/// slot; its state is kept and [`activate`](Table::activate) resets it in place when a group
/// next takes the slot, so the state's allocations are reused and steady state does not
/// allocate.
pub trait Table<K, S> {
    /// The slot and state of `key`'s group, if it is active (the hot path).
    fn active(&mut self, key: &K) -> Option<(usize, &mut S)>;
    /// Activates `key`'s group: the state its slot kept is `reset` in place, or a new one made
    /// with `init` (which may also be called to fill slots of other keys, which are reset before
    /// use). Returns the slot.
    fn activate(&mut self, key: &K, reset: impl FnOnce(&mut S), init: impl FnMut() -> S) -> usize;
    /// The state of an active `slot`.
    fn state(&mut self, slot: usize) -> Option<&mut S>;
    /// Deactivates an active `slot`, returning its key and its state (kept for reuse).
    fn release(&mut self, slot: usize) -> Option<(K, &mut S)>;
    /// Number of active groups.
    fn len(&self) -> usize;
    /// Whether no group is active.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the table lists its active groups itself ([`drain_active`](Table::drain_active)),
    /// so that its users keep no order of first appearance: a dense table always (in index
    /// order), a keyed table once ready (see [`make_ready`](Table::make_ready); in the order of
    /// its slots).
    fn lists_active(&self) -> bool {
        false
    }
    /// Keeps a state made by `empty` ready for `key` (a dense table: for every index up to
    /// `key`), so that [`fold`](Table::fold) takes a group's first event like any other, and
    /// keeps using ready states from then on (the caller makes a drained group's state empty
    /// again). False if the table cannot (a global table, or one already used with
    /// [`activate`](Table::activate)), or `empty` gives `None` (the aggregate has no empty
    /// state): groups are then started with `activate`.
    fn make_ready(&mut self, key: &K, empty: impl FnMut() -> Option<S>) -> bool {
        let _ = (key, empty);
        false
    }
    /// Folds an event into `key`'s group with `f` if its state is there (an active group, or a
    /// ready state, which becomes active); false: the group must be started with
    /// [`activate`](Table::activate) or [`make_ready`](Table::make_ready).
    #[inline(always)]
    fn fold(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool {
        match self.active(key) {
            Some((_, state)) => {
                f(state);
                true
            }
            None => false,
        }
    }
    /// Tables that [list their active groups](Table::lists_active): releases every active group,
    /// in their order, giving each one's key, state and — for a [ready](Table::is_ready)
    /// table — the number of events folded into it in this window (0 otherwise) to `f`. Other
    /// tables release nothing (their users release their groups by slot).
    fn drain_active(&mut self, f: impl FnMut(K, &mut S, u64)) {
        let _ = f;
    }
    /// Whether the table is ready (see [`make_ready`](Table::make_ready)). A ready table also
    /// counts the events folded into each group: its states are folded with
    /// [`Aggregate::insert_counted`](crate::aggregate::Aggregate::insert_counted) and finished
    /// with the count, so aggregates that only need the count (`count`, `avg`'s divisor) do not
    /// keep one each.
    fn is_ready(&self) -> bool {
        false
    }

    /// The table's view for a run of [`fold`](Table::fold)s with nothing else in between:
    /// a window's fast-path loop holds it in local variables (a dense table's slots as a
    /// slice, so the loop does not reload them from the table for every event).
    type Folder<'a>: Folder<K, S>
    where
        Self: 'a;
    /// See [`Folder`](Table::Folder).
    fn folder(&mut self) -> Self::Folder<'_>;
}

/// [`Table::fold`] for a run of folds (see [`Table::folder`]).
pub trait Folder<K, S> {
    /// As [`Table::fold`].
    fn fold(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool;
    /// Whether the table is [ready](Table::is_ready): its loop may then use
    /// [`fold_ready`](Folder::fold_ready), with states folded as counted ones.
    #[inline(always)]
    fn is_ready(&self) -> bool {
        false
    }
    /// [`fold`](Folder::fold) for a ready table, with readiness not tested again.
    #[inline(always)]
    fn fold_ready(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool {
        self.fold(key, f)
    }
}

impl<K, S, T: Table<K, S>> Folder<K, S> for &mut T {
    #[inline(always)]
    fn fold(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool {
        Table::fold(&mut **self, key, f)
    }
}

/// The [`Folder`] of a [`DenseTable`]: its slots as a slice.
pub struct DenseFolder<'a, S> {
    slots: &'a mut [(u64, S)],
    ready: bool,
}

impl<S> DenseFolder<'_, S> {
    #[inline(always)]
    fn take<const READY: bool>(&mut self, key: usize, f: impl FnOnce(&mut S)) -> bool {
        let Some((n, state)) = self.slots.get_mut(key) else {
            return false;
        };
        if !(READY || self.ready || *n > 0) {
            return false;
        }
        f(state);
        *n += 1;
        true
    }
}

impl<S> Folder<usize, S> for DenseFolder<'_, S> {
    #[inline(always)]
    fn fold(&mut self, key: &usize, f: impl FnOnce(&mut S)) -> bool {
        self.take::<false>(*key, f)
    }

    #[inline(always)]
    fn is_ready(&self) -> bool {
        self.ready
    }

    #[inline(always)]
    fn fold_ready(&mut self, key: &usize, f: impl FnOnce(&mut S)) -> bool {
        self.take::<true>(*key, f)
    }
}

/// Whether the order in which a table lists its groups comes from the table's own history.
///
/// A ready [`KeyedTable`] lists its groups in the order of its slots, which it took as keys
/// first came, possibly several windows earlier: a window that reuses the table inherits that
/// order, so a checkpoint must keep the table (even one no window holds) for a restored run to
/// list rows as the uninterrupted run would. Index order ([`DenseTable`]), a single group
/// ([`GlobalTable`]) and first appearance (a keyed table that is not ready) need nothing kept.
///
/// ```
/// use eventflux_runtime::window::{Global, Grouping, SlotOrder};
/// // The table of an ungrouped window: a single group, nothing to keep.
/// let table = Grouping::<u32>::table::<u64>(&Global);
/// assert!(!table.order_from_history());
/// ```
pub trait SlotOrder {
    /// See [`SlotOrder`].
    fn order_from_history(&self) -> bool {
        false
    }
}

impl<S> SlotOrder for GlobalTable<S> {}

impl<S> SlotOrder for DenseTable<S> {}

impl<K, S> SlotOrder for KeyedTable<K, S> {
    fn order_from_history(&self) -> bool {
        self.ready
    }
}

/// One group for everything; the key is `()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

/// Groups by a hashed key.
#[derive(Debug, Clone, Copy)]
pub struct ByKey<F>(pub(crate) F);

/// Groups by a small integer (`usize`) used directly as an array index: the fastest table, for
/// dense keys such as instrument ids. The table grows to the largest index seen.
#[derive(Debug, Clone, Copy)]
pub struct ByIndex<F>(pub(crate) F);

impl<T> Grouping<T> for Global {
    type Key = ();
    type Table<S: Checkpoint> = GlobalTable<S>;
    #[inline]
    fn key(&self, _: &T) {}
    fn table<S: Checkpoint>(&self) -> GlobalTable<S> {
        GlobalTable {
            state: None,
            active: false,
        }
    }
}

impl<T, K: Hash + Eq + Clone + Checkpoint, F: Fn(&T) -> K> Grouping<T> for ByKey<F> {
    type Key = K;
    type Table<S: Checkpoint> = KeyedTable<K, S>;
    #[inline]
    fn key(&self, item: &T) -> K {
        (self.0)(item)
    }
    fn table<S: Checkpoint>(&self) -> KeyedTable<K, S> {
        KeyedTable::new()
    }
}

impl<T, F: Fn(&T) -> usize> Grouping<T> for ByIndex<F> {
    type Key = usize;
    type Table<S: Checkpoint> = DenseTable<S>;
    #[inline]
    fn key(&self, item: &T) -> usize {
        (self.0)(item)
    }
    fn table<S: Checkpoint>(&self) -> DenseTable<S> {
        DenseTable::new()
    }
}

/// Table of [`Global`].
#[derive(Debug, Checkpoint)]
#[checkpoint(crate = crate)]
pub struct GlobalTable<S> {
    state: Option<S>,
    active: bool,
}

impl<S> Table<(), S> for GlobalTable<S> {
    type Folder<'a>
        = &'a mut Self
    where
        Self: 'a;
    #[inline(always)]
    fn folder(&mut self) -> &mut Self {
        self
    }

    #[inline]
    fn active(&mut self, _: &()) -> Option<(usize, &mut S)> {
        if self.active {
            self.state.as_mut().map(|s| (0, s))
        } else {
            None
        }
    }
    fn activate(&mut self, _: &(), reset: impl FnOnce(&mut S), init: impl FnMut() -> S) -> usize {
        self.active = true;
        restart(&mut self.state, reset, init);
        0
    }
    #[inline]
    fn state(&mut self, _: usize) -> Option<&mut S> {
        self.active(&()).map(|(_, s)| s)
    }
    fn release(&mut self, _: usize) -> Option<((), &mut S)> {
        if !std::mem::replace(&mut self.active, false) {
            return None;
        }
        self.state.as_mut().map(|s| ((), s))
    }
    fn len(&self) -> usize {
        usize::from(self.active)
    }
}

/// The state a slot kept, reset in place, or a new one.
#[inline]
fn restart<S>(cell: &mut Option<S>, reset: impl FnOnce(&mut S), mut init: impl FnMut() -> S) {
    match cell {
        Some(s) => reset(s),
        None => *cell = Some(init()),
    }
}

/// Bits of a [`KeyedTable`]'s cache index.
const CACHE_BITS: u32 = 10;
/// Lines of a [`KeyedTable`]'s cache.
const CACHE_LINES: usize = 1 << CACHE_BITS;

/// Table of [`ByKey`].
///
/// A released group keeps its slot and its place in the index (idle), so a key that comes back
/// in the next window costs one lookup and a reset, not a removal and a reinsertion. Idle keys
/// are evicted, and their slots freed for other keys, once they outnumber both
/// [`KEEP_IDLE`](Self::KEEP_IDLE) and twice the active groups: memory stays proportional to the
/// groups actually in windows. Once ready (an aggregate with an empty state: see
/// [`Table::make_ready`]) an idle slot holds the empty state, so a returning key's first event
/// in a window is folded like any other, and the table lists its active groups itself, in the
/// order of their slots (a scan when the window closes: the hot path records nothing about a
/// group's first event). Idle keys of a ready table are evicted when a window closes.
#[derive(Debug)]
pub struct KeyedTable<K, S> {
    /// Every key with a slot (active or idle), and its slot.
    index: HashMap<K, usize, BuildHasherDefault<FxHasher>>,
    slots: Vec<KeyedSlot<K, S>>,
    /// Slots of evicted keys.
    free: Vec<usize>,
    /// Active groups of a table that is not ready (a ready one finds them by their event counts
    /// when a window closes); every other key in the index is idle.
    active: usize,
    /// A direct-mapped cache in front of `index` (1024 lines): the slot last found for a hash's
    /// top ten bits.
    /// An entry is only a guess, checked against the slot's key, so it never needs
    /// invalidating; a hit costs one comparison of keys instead of a probe of the map.
    cache: Box<[usize; CACHE_LINES]>,
    /// Ready (see [`Table::make_ready`]): every key's slot, idle ones included, holds an empty
    /// state, so a returning key's first event folds like any other; the table then lists its
    /// active slots itself, by their event counts.
    ready: bool,
}

#[derive(Debug, Checkpoint)]
#[checkpoint(crate = crate)]
struct KeyedSlot<K, S> {
    key: K,
    /// Events folded into the state in the current window (0: idle).
    events: u64,
    state: S,
}

impl<K, S> KeyedTable<K, S> {
    /// Idle keys kept whatever the number of active groups.
    pub const KEEP_IDLE: usize = 1024;

    pub(crate) fn new() -> Self {
        Self {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            active: 0,
            cache: Box::new([usize::MAX; CACHE_LINES]),
            ready: false,
        }
    }
}

/// `key`'s entry in a [`KeyedTable`]'s cache.
#[inline(always)]
fn cache_line<K: Hash>(key: &K) -> usize {
    use std::hash::BuildHasher;
    // The hash's top bits: below `CACHE_LINES`, so indexing the cache needs no check.
    (BuildHasherDefault::<FxHasher>::default().hash_one(key) >> (64 - CACHE_BITS)) as usize
}

impl<K: Hash + Eq + Clone, S> KeyedTable<K, S> {
    /// `key`'s slot (active or idle), if it has one: through the cache, else the index.
    #[inline(always)]
    fn find(&mut self, key: &K) -> Option<usize> {
        let line = cache_line(key);
        find_slot(&self.slots, &mut self.cache, &self.index, key, line)
    }

    /// Active groups: counted (a table that is not ready) or found by their event counts.
    fn count_active(&self) -> usize {
        if self.ready {
            self.slots.iter().filter(|s| s.events > 0).count()
        } else {
            self.active
        }
    }

    /// Whether `idle` keys are too many for `active` groups: more than
    /// [`KEEP_IDLE`](Self::KEEP_IDLE) and twice the active groups.
    fn too_many_idle(active: usize, idle: usize) -> bool {
        idle > Self::KEEP_IDLE && idle > 2 * active
    }

    /// A freed slot for a key not in the index, its key set; `None`: the caller pushes a new
    /// slot. A table that is not ready evicts its idle keys first if they are too many (a ready
    /// one does when a window closes, in [`drain_active`](Table::drain_active): the hot path
    /// does not count its active groups).
    fn reuse_slot(&mut self, key: &K) -> Option<usize> {
        if !self.ready {
            let idle = self.index.len().saturating_sub(self.active);
            if Self::too_many_idle(self.active, idle) {
                self.evict_idle();
            }
        }
        match self.free.pop() {
            Some(i) if i < self.slots.len() => {
                self.slots[i].key = key.clone();
                Some(i)
            }
            _ => None,
        }
    }

    /// Enters `key`'s new slot `i` in the index and the cache.
    fn index_slot(&mut self, key: &K, i: usize) {
        self.index.insert(key.clone(), i);
        let line = cache_line(key);
        if let Some(c) = self.cache.get_mut(line) {
            *c = i;
        }
    }

    /// A ready table: an idle slot holding `empty` for a key not in the index.
    fn new_ready_slot(&mut self, key: &K, empty: S) {
        let i = match self.reuse_slot(key) {
            Some(i) => {
                self.slots[i].state = empty;
                i
            }
            None => {
                self.slots.push(KeyedSlot {
                    key: key.clone(),
                    events: 0,
                    state: empty,
                });
                self.slots.len() - 1
            }
        };
        self.index_slot(key, i);
    }

    /// Evicts every idle key (their slots go to the free list).
    #[cold]
    fn evict_idle(&mut self) {
        let (slots, free) = (&self.slots, &mut self.free);
        self.index.retain(|_, &mut i| {
            let keep = slots.get(i).is_some_and(|s| s.events > 0);
            if !keep {
                free.push(i);
            }
            keep
        });
        // New keys take freed slots lowest first, whatever order the index gave them in (so
        // a restored table, whose index is rebuilt, hands out the same slots).
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        // A freed slot keeps its old key until reused: forget every cached slot, so a
        // returning key is looked up in the index (and given a slot) rather than finding its
        // freed one.
        self.cache.fill(usize::MAX);
    }
}

/// The [`Folder`] of a [`KeyedTable`]: the parts of the table the hot path uses, borrowed
/// apart (slots and cache as slices), so a window's loop holds them in registers instead of
/// reloading them through the table after every store into a state.
pub struct KeyedFolder<'a, K, S> {
    slots: &'a mut [KeyedSlot<K, S>],
    cache: &'a mut [usize; CACHE_LINES],
    index: &'a HashMap<K, usize, BuildHasherDefault<FxHasher>>,
    ready: bool,
}

impl<K: Hash + Eq + Clone, S> Folder<K, S> for KeyedFolder<'_, K, S> {
    #[inline(always)]
    fn fold(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool {
        self.take::<false>(key, f)
    }

    #[inline(always)]
    fn is_ready(&self) -> bool {
        self.ready
    }

    #[inline(always)]
    fn fold_ready(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool {
        self.take::<true>(key, f)
    }
}

impl<K: Hash + Eq + Clone, S> KeyedFolder<'_, K, S> {
    /// The hot path: a group found through the cache, active or (ready table) idle, folded and
    /// counted with no test of whether it is the group's first event; anything else out of
    /// line.
    #[inline(always)]
    fn take<const READY: bool>(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool {
        let ready = READY || self.ready;
        let line = cache_line(key);
        let i = self.cache[line];
        if let Some(slot) = self.slots.get_mut(i)
            && slot.key == *key
            && (ready || slot.events > 0)
        {
            f(&mut slot.state);
            slot.events += 1;
            return true;
        }
        fold_slow(self.slots, self.cache, self.index, self.ready, key, line, f)
    }
}

/// `key`'s slot in a [`KeyedTable`] (active or idle), if it has one: the slot its cache `line`
/// names if that slot holds `key`, else the one the index gives, which the cache then
/// remembers. Takes the table's parts, for [`KeyedTable::find`] and [`fold_slow`] alike.
#[inline(always)]
fn find_slot<K: Hash + Eq, S>(
    slots: &[KeyedSlot<K, S>],
    cache: &mut [usize; CACHE_LINES],
    index: &HashMap<K, usize, BuildHasherDefault<FxHasher>>,
    key: &K,
    line: usize,
) -> Option<usize> {
    let cached = cache.get(line).copied().unwrap_or(usize::MAX);
    if slots.get(cached).is_some_and(|s| s.key == *key) {
        return Some(cached);
    }
    find_uncached(cache, index, key, line)
}

/// [`find_slot`] past the cache: look `key` up in the index and remember its slot.
#[inline(never)]
fn find_uncached<K: Hash + Eq>(
    cache: &mut [usize; CACHE_LINES],
    index: &HashMap<K, usize, BuildHasherDefault<FxHasher>>,
    key: &K,
    line: usize,
) -> Option<usize> {
    let i = *index.get(key)?;
    if let Some(c) = cache.get_mut(line) {
        *c = i;
    }
    Some(i)
}

/// [`KeyedFolder`]'s `fold` past the cache or for an idle slot: look `key` up in the index
/// (remembering its slot in the cache); a ready table's idle slot (its state empty) becomes
/// active as `f` folds its group's first event of the window into it. Takes the folder's parts
/// apart, so the folder itself stays in registers in the caller's loop. Returns whether `f`
/// folded the event.
#[inline(never)]
fn fold_slow<K: Hash + Eq, S>(
    slots: &mut [KeyedSlot<K, S>],
    cache: &mut [usize; CACHE_LINES],
    index: &HashMap<K, usize, BuildHasherDefault<FxHasher>>,
    ready: bool,
    key: &K,
    line: usize,
    f: impl FnOnce(&mut S),
) -> bool {
    let Some(i) = find_slot(slots, cache, index, key, line) else {
        return false;
    };
    match slots.get_mut(i) {
        Some(slot) if ready || slot.events > 0 => {
            f(&mut slot.state);
            slot.events += 1;
            true
        }
        _ => false,
    }
}

impl<K: Hash + Eq + Clone, S> Table<K, S> for KeyedTable<K, S> {
    type Folder<'a>
        = KeyedFolder<'a, K, S>
    where
        Self: 'a;
    #[inline(always)]
    fn folder(&mut self) -> KeyedFolder<'_, K, S> {
        KeyedFolder {
            slots: &mut self.slots,
            cache: &mut self.cache,
            index: &self.index,
            ready: self.ready,
        }
    }

    #[inline]
    fn active(&mut self, key: &K) -> Option<(usize, &mut S)> {
        let i = self.find(key)?;
        match self.slots.get_mut(i)? {
            KeyedSlot {
                events: 1.., state, ..
            } => Some((i, state)),
            _ => None,
        }
    }
    fn activate(
        &mut self,
        key: &K,
        reset: impl FnOnce(&mut S),
        mut init: impl FnMut() -> S,
    ) -> usize {
        if let Some(&i) = self.index.get(key)
            && let Some(slot) = self.slots.get_mut(i)
        {
            reset(&mut slot.state);
            if slot.events == 0 {
                slot.events = 1;
                self.active += 1;
            }
            return i;
        }
        let i = match self.reuse_slot(key) {
            Some(i) => {
                let slot = &mut self.slots[i];
                slot.events = 1;
                reset(&mut slot.state);
                i
            }
            None => {
                self.slots.push(KeyedSlot {
                    key: key.clone(),
                    events: 1,
                    state: init(),
                });
                self.slots.len() - 1
            }
        };
        self.index_slot(key, i);
        self.active += 1;
        i
    }
    #[inline]
    fn state(&mut self, slot: usize) -> Option<&mut S> {
        match self.slots.get_mut(slot)? {
            KeyedSlot {
                events: 1.., state, ..
            } => Some(state),
            _ => None,
        }
    }
    fn release(&mut self, slot: usize) -> Option<(K, &mut S)> {
        let s = self.slots.get_mut(slot)?;
        if s.events == 0 {
            return None;
        }
        s.events = 0;
        self.active -= 1;
        Some((s.key.clone(), &mut s.state))
    }
    fn len(&self) -> usize {
        self.count_active()
    }

    fn lists_active(&self) -> bool {
        self.ready
    }

    fn is_ready(&self) -> bool {
        self.ready
    }

    fn make_ready(&mut self, key: &K, mut empty: impl FnMut() -> Option<S>) -> bool {
        if !self.ready {
            // A table holding started groups' states keeps starting groups.
            if !self.slots.is_empty() {
                return false;
            }
            let Some(first) = empty() else {
                return false;
            };
            self.new_ready_slot(key, first);
            self.ready = true;
            return true;
        }
        if self.find(key).is_some() {
            return true;
        }
        match empty() {
            Some(state) => {
                self.new_ready_slot(key, state);
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    fn fold(&mut self, key: &K, f: impl FnOnce(&mut S)) -> bool {
        self.folder().fold(key, f)
    }

    fn drain_active(&mut self, mut f: impl FnMut(K, &mut S, u64)) {
        if !self.ready {
            return;
        }
        // Keys idle through the whole window are evicted if they are too many (their slots
        // keep an empty state for the keys that take them).
        // (No key can be too many idle ones while the index holds at most `KEEP_IDLE`.)
        if self.index.len() > Self::KEEP_IDLE {
            let active = self.count_active();
            if Self::too_many_idle(active, self.index.len().saturating_sub(active)) {
                self.evict_idle();
            }
        }
        for slot in &mut self.slots {
            let events = std::mem::take(&mut slot.events);
            if events > 0 {
                f(slot.key.clone(), &mut slot.state, events);
            }
        }
    }
}

/// Saves the slots (keys, event counts, states) and the free list; the index and the cache are
/// derived from the slots when restored. Version 1 also saved a ready table's order of first
/// appearance, which is read and dropped (its active groups are those with events).
impl<K: Hash + Eq + Clone + Checkpoint, S: Checkpoint> Checkpoint for KeyedTable<K, S> {
    fn save(&self, w: &mut StateWriter) -> Result<(), StateError> {
        w.version(2)?;
        self.slots.save(w)?;
        self.free.save(w)?;
        self.active.save(w)?;
        self.ready.save(w)
    }

    fn load(r: &mut StateReader<'_>) -> Result<Self, StateError> {
        let version = r.version()?;
        if !(1..=2).contains(&version) {
            return Err(StateError::Version {
                ty: "KeyedTable",
                found: version,
                oldest: 1,
                newest: 2,
            });
        }
        let mut t: KeyedTable<K, S> = KeyedTable::new();
        t.slots = Vec::load(r)?;
        t.free = Vec::load(r)?;
        t.active = usize::load(r)?;
        t.ready = bool::load(r)?;
        if version == 1 {
            let _order: Vec<usize> = Vec::load(r)?;
            let _listed = usize::load(r)?;
        }
        let mut freed = vec![false; t.slots.len()];
        for &i in &t.free {
            match freed.get_mut(i) {
                Some(f) => *f = true,
                None => return Err(StateError::custom(format!("free slot {i} out of range"))),
            }
        }
        for (i, slot) in t.slots.iter().enumerate() {
            if !freed[i] && t.index.insert(slot.key.clone(), i).is_some() {
                return Err(StateError::custom("a key holds two slots"));
            }
        }
        Ok(t)
    }
}

/// Table of [`ByIndex`]: a state per index, with whether it is active.
///
/// Its groups are listed in index order (see [`Table::lists_active`]), by a scan of every index
/// when a window closes: `group_by_index` is for small, dense indices. A slot's state exists
/// from the first time a group at or above its index arrives: a placeholder until its own group
/// does, reset before use — or, once ready (see [`Table::make_ready`]), the aggregate's empty
/// state, which the hot path folds every event into, a group's first included, with no test of
/// whether the group is new (the loop a user would write over an array of accumulators).
#[derive(Debug, Checkpoint)]
#[checkpoint(crate = crate)]
pub struct DenseTable<S> {
    /// Per index: the events folded into its state in the current window (0: inactive), and
    /// the state.
    slots: Vec<(u64, S)>,
    ready: bool,
}

impl<S> DenseTable<S> {
    pub(crate) fn new() -> Self {
        DenseTable {
            slots: Vec::new(),
            ready: false,
        }
    }

    /// Room for index `i` (new slots inactive, made by `make`); false if `make` gives none.
    fn grow(&mut self, i: usize, mut make: impl FnMut() -> Option<S>) -> bool {
        while self.slots.len() <= i {
            match make() {
                Some(s) => self.slots.push((0, s)),
                None => return false,
            }
        }
        true
    }
}

impl<S> Table<usize, S> for DenseTable<S> {
    #[inline(always)]
    fn active(&mut self, key: &usize) -> Option<(usize, &mut S)> {
        match self.slots.get_mut(*key)? {
            (1.., s) => Some((*key, s)),
            _ => None,
        }
    }
    fn activate(
        &mut self,
        key: &usize,
        reset: impl FnOnce(&mut S),
        mut init: impl FnMut() -> S,
    ) -> usize {
        let i = *key;
        if i < self.slots.len() {
            reset(&mut self.slots[i].1);
        } else {
            // New slots hold `init()`: the first event's state for `i`, placeholders below it.
            self.grow(i, || Some(init()));
        }
        if let Some(slot) = self.slots.get_mut(i) {
            slot.0 = 1;
        }
        i
    }
    #[inline]
    fn state(&mut self, slot: usize) -> Option<&mut S> {
        self.active(&slot).map(|(_, s)| s)
    }
    fn release(&mut self, slot: usize) -> Option<(usize, &mut S)> {
        match self.slots.get_mut(slot)? {
            (n @ 1.., s) => {
                *n = 0;
                Some((slot, s))
            }
            _ => None,
        }
    }
    fn len(&self) -> usize {
        self.slots.iter().filter(|(n, _)| *n > 0).count()
    }

    fn lists_active(&self) -> bool {
        true
    }

    fn is_ready(&self) -> bool {
        self.ready
    }

    fn make_ready(&mut self, key: &usize, mut empty: impl FnMut() -> Option<S>) -> bool {
        if !self.ready {
            // A table that already holds started groups' states keeps starting groups.
            if !self.slots.is_empty() {
                return false;
            }
            let Some(first) = empty() else {
                return false;
            };
            self.slots.push((0, first));
            self.ready = true;
        }
        self.grow(*key, empty)
    }

    #[inline(always)]
    fn fold(&mut self, key: &usize, f: impl FnOnce(&mut S)) -> bool {
        self.folder().fold(key, f)
    }

    type Folder<'a>
        = DenseFolder<'a, S>
    where
        S: 'a;
    #[inline(always)]
    fn folder(&mut self) -> DenseFolder<'_, S> {
        DenseFolder {
            slots: &mut self.slots,
            ready: self.ready,
        }
    }

    fn drain_active(&mut self, mut f: impl FnMut(usize, &mut S, u64)) {
        for (i, (n, state)) in self.slots.iter_mut().enumerate() {
            let events = std::mem::take(n);
            if events > 0 {
                f(i, state, events);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Activates `key` with state `v` (reset or new) and returns its slot.
    fn start(t: &mut KeyedTable<u64, u64>, key: u64, v: u64) -> usize {
        t.activate(&key, |s| *s = v, || v)
    }

    /// A ready table of sums: `make_ready` then `fold` for each `(key, value)`, as a window's
    /// loop does (a key new to the table is made ready first).
    fn fold_ready(t: &mut KeyedTable<u64, u64>, events: &[(u64, u64)]) {
        for &(k, v) in events {
            if !t.fold(&k, |s| *s += v) {
                assert!(t.make_ready(&k, || Some(0)), "key {k}");
                assert!(t.fold(&k, |s| *s += v), "key {k} after make_ready");
            }
        }
    }

    /// Drains a ready table of sums: `(key, sum, events)` in its order, each state emptied.
    fn drain(t: &mut KeyedTable<u64, u64>) -> Vec<(u64, u64, u64)> {
        let mut rows = Vec::new();
        t.drain_active(|k, s, n| rows.push((k, std::mem::take(s), n)));
        rows
    }

    #[test]
    fn a_ready_table_lists_its_groups_in_slot_order_across_windows() {
        let mut t = KeyedTable::<u64, u64>::new();
        fold_ready(&mut t, &[(30, 1), (10, 2), (30, 3), (20, 4)]);
        assert!(t.is_ready() && t.lists_active());
        assert_eq!(t.len(), 3);
        assert_eq!(drain(&mut t), [(30, 4, 2), (10, 2, 1), (20, 4, 1)]);
        assert_eq!(t.len(), 0);
        // The next window: keys come back in another order, one is missing, one is new; the
        // returning ones keep their places, the new one comes after them.
        fold_ready(&mut t, &[(20, 5), (40, 6), (30, 7), (20, 1)]);
        assert_eq!(t.len(), 3);
        assert_eq!(drain(&mut t), [(30, 7, 1), (20, 6, 2), (40, 6, 1)]);
        // A window nobody came to lists nothing.
        assert_eq!(drain(&mut t), []);
    }

    #[test]
    fn a_ready_table_evicts_keys_idle_through_a_window_when_it_closes() {
        let mut t = KeyedTable::<u64, u64>::new();
        let n = KeyedTable::<u64, u64>::KEEP_IDLE as u64 + 500;
        let first: Vec<(u64, u64)> = (0..n).map(|k| (k, k)).collect();
        fold_ready(&mut t, &first);
        assert_eq!(drain(&mut t).len(), n as usize);
        // Only keys 0 and 7 come back: the window closes with 2 active and n - 2 idle keys,
        // too many; the idle ones are evicted and their slots freed.
        fold_ready(&mut t, &[(7, 1), (0, 2)]);
        assert_eq!(drain(&mut t), [(0, 2, 1), (7, 1, 1)]);
        assert_eq!((t.index.len(), t.free.len()), (2, n as usize - 2));
        // Evicted keys come back as new ones, in freed slots, with empty states: a stale cache
        // line never leads one to another key's slot.
        fold_ready(&mut t, &[(5, 10), (7, 1), (1_000_000, 3), (5, 1)]);
        let rows = drain(&mut t);
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [(5, 11, 2), (7, 1, 1), (1_000_000, 3, 1)]);
        assert_eq!(t.slots.len(), n as usize, "freed slots were reused");
        // Few keys: nothing is evicted however many windows they skip.
        let mut small = KeyedTable::<u64, u64>::new();
        fold_ready(&mut small, &[(1, 1), (2, 2), (3, 3)]);
        drain(&mut small);
        fold_ready(&mut small, &[(2, 1)]);
        drain(&mut small);
        assert_eq!((small.index.len(), small.free.len()), (3, 0));
    }

    #[test]
    fn a_ready_table_checkpointed_by_version_1_restores_its_active_groups() {
        use crate::state::{Compression, from_bytes, to_bytes};
        let mut t = KeyedTable::<u64, u64>::new();
        fold_ready(&mut t, &[(1, 1), (2, 2), (3, 3)]);
        drain(&mut t);
        fold_ready(&mut t, &[(3, 5), (1, 6)]);
        // Version 1 also saved the order of first appearance, and its length.
        let mut w = StateWriter::new();
        w.version(1).and_then(|()| t.slots.save(&mut w)).unwrap();
        t.free.save(&mut w).unwrap();
        t.active.save(&mut w).unwrap();
        t.ready.save(&mut w).unwrap();
        vec![2usize, 0, usize::MAX, usize::MAX]
            .save(&mut w)
            .unwrap();
        2usize.save(&mut w).unwrap();
        let v1 = crate::state::frame(&w.into_bytes(), Compression::None);
        let mut back: KeyedTable<u64, u64> = from_bytes(&v1).unwrap();
        assert_eq!(drain(&mut back), [(1, 6, 1), (3, 5, 1)]);
        // The current version round-trips.
        let mut again: KeyedTable<u64, u64> =
            from_bytes(&to_bytes(&t, Compression::None).unwrap()).unwrap();
        assert_eq!(drain(&mut again), [(1, 6, 1), (3, 5, 1)]);
    }

    #[test]
    fn keyed_slots_are_reused_evicted_and_never_confused() {
        let mut t = KeyedTable::<u64, u64>::new();
        // 3000 groups come and go: their keys stay idle (a returning key keeps its slot)...
        for k in 0..3000 {
            start(&mut t, k, k);
        }
        let slot_7 = t.active(&7).map(|(i, _)| i);
        for i in 0..3000 {
            assert_eq!(
                t.release(i).map(|(k, s)| (k, *s)),
                Some((i as u64, i as u64))
            );
        }
        assert_eq!((t.len(), t.index.len()), (0, 3000));
        assert_eq!(t.active(&7), None, "released");
        assert_eq!(
            Some(start(&mut t, 7, 70)),
            slot_7,
            "a returning key keeps its slot"
        );
        assert_eq!(
            t.active(&7).map(|(_, s)| *s),
            Some(70),
            "its state was reset"
        );
        // ...until idle keys outnumber 1024 and twice the active ones: a new key evicts them.
        let slot = start(&mut t, 5000, 1);
        assert_eq!((t.len(), t.index.len()), (2, 2));
        assert!(slot < 3000, "the new key took an evicted slot");
        // A key whose slot went to another key is not found through a stale cache line.
        let old = (0..3000).find(|&i| i != 7 && i == slot as u64);
        if let Some(old) = old {
            assert_eq!(t.active(&old), None);
        }
        assert_eq!(t.active(&5000).map(|(i, s)| (i, *s)), Some((slot, 1)));
        for k in 0..3000 {
            assert_eq!(t.active(&k).is_some(), k == 7, "key {k}");
        }
    }
}
