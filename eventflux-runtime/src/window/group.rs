//! Group tables: per-group window state, keyed by hash, by a dense index, or a single group.
//!
//! A table maps a group key to a *slot* holding that group's state. Slots of groups that leave a
//! window are freed and reused, so state stays bounded by the groups currently in windows.
//! Iteration order never reaches users: windows record each group's first appearance
//! explicitly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

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
    /// The table holding per-group state `S`.
    type Table<S>: Table<Self::Key, S>;
    /// The key of `item`.
    fn key(&self, item: &T) -> Self::Key;
    /// An empty table.
    fn table<S>(&self) -> Self::Table<S>;
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
    type Table<S> = GlobalTable<S>;
    #[inline]
    fn key(&self, _: &T) {}
    fn table<S>(&self) -> GlobalTable<S> {
        GlobalTable {
            state: None,
            active: false,
        }
    }
}

impl<T, K: Hash + Eq + Clone, F: Fn(&T) -> K> Grouping<T> for ByKey<F> {
    type Key = K;
    type Table<S> = KeyedTable<K, S>;
    #[inline]
    fn key(&self, item: &T) -> K {
        (self.0)(item)
    }
    fn table<S>(&self) -> KeyedTable<K, S> {
        KeyedTable {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T, F: Fn(&T) -> usize> Grouping<T> for ByIndex<F> {
    type Key = usize;
    type Table<S> = DenseTable<S>;
    #[inline]
    fn key(&self, item: &T) -> usize {
        (self.0)(item)
    }
    fn table<S>(&self) -> DenseTable<S> {
        DenseTable {
            slots: Vec::new(),
            len: 0,
        }
    }
}

/// Table of [`Global`].
#[derive(Debug)]
pub struct GlobalTable<S> {
    state: Option<S>,
    active: bool,
}

impl<S> Table<(), S> for GlobalTable<S> {
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

/// Table of [`ByKey`].
#[derive(Debug)]
pub struct KeyedTable<K, S> {
    /// Active keys and their slots.
    index: HashMap<K, usize, BuildHasherDefault<FxHasher>>,
    /// Each slot's key (while active) and state (kept while inactive).
    slots: Vec<(Option<K>, S)>,
    free: Vec<usize>,
}

impl<K: Hash + Eq + Clone, S> Table<K, S> for KeyedTable<K, S> {
    #[inline]
    fn active(&mut self, key: &K) -> Option<(usize, &mut S)> {
        let i = *self.index.get(key)?;
        Some((i, &mut self.slots.get_mut(i)?.1))
    }
    fn activate(
        &mut self,
        key: &K,
        reset: impl FnOnce(&mut S),
        mut init: impl FnMut() -> S,
    ) -> usize {
        if let Some(&i) = self.index.get(key)
            && let Some((_, state)) = self.slots.get_mut(i)
        {
            reset(state);
            return i;
        }
        let i = match self.free.pop() {
            Some(i) if i < self.slots.len() => {
                reset(&mut self.slots[i].1);
                i
            }
            _ => {
                self.slots.push((None, init()));
                self.slots.len() - 1
            }
        };
        self.slots[i].0 = Some(key.clone());
        self.index.insert(key.clone(), i);
        i
    }
    #[inline]
    fn state(&mut self, slot: usize) -> Option<&mut S> {
        match self.slots.get_mut(slot) {
            Some((Some(_), s)) => Some(s),
            _ => None,
        }
    }
    fn release(&mut self, slot: usize) -> Option<(K, &mut S)> {
        let (k, state) = self.slots.get_mut(slot)?;
        let k = k.take()?;
        self.index.remove(&k);
        self.free.push(slot);
        Some((k, state))
    }
    fn len(&self) -> usize {
        self.index.len()
    }
}

/// Table of [`ByIndex`].
#[derive(Debug)]
pub struct DenseTable<S> {
    /// Whether each index is active, and its state. A slot's state exists from the first time
    /// a group at or above its index arrives (a placeholder until its own group does, reset
    /// before use), so the hot path tests one flag and updates the state in place.
    slots: Vec<(bool, S)>,
    len: usize,
}

impl<S> Table<usize, S> for DenseTable<S> {
    #[inline(always)]
    fn active(&mut self, key: &usize) -> Option<(usize, &mut S)> {
        match self.slots.get_mut(*key)? {
            (true, s) => Some((*key, s)),
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
        if i >= self.slots.len() {
            // New slots hold `init()`: the first event's state for `i`, placeholders below it.
            self.slots.resize_with(i + 1, || (false, init()));
        } else {
            reset(&mut self.slots[i].1);
        }
        let active = &mut self.slots[i].0;
        if !*active {
            *active = true;
            self.len += 1;
        }
        i
    }
    #[inline]
    fn state(&mut self, slot: usize) -> Option<&mut S> {
        self.active(&slot).map(|(_, s)| s)
    }
    fn release(&mut self, slot: usize) -> Option<(usize, &mut S)> {
        match self.slots.get_mut(slot)? {
            (active @ true, s) => {
                *active = false;
                self.len -= 1;
                Some((slot, s))
            }
            _ => None,
        }
    }
    fn len(&self) -> usize {
        self.len
    }
}
