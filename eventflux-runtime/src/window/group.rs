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
/// slot after the caller has reset its state; the state's allocations are kept for the next
/// group that takes the slot, so steady state does not allocate.
pub trait Table<K, S> {
    /// The slot of `key` and its state, activated (with `init` if the slot never held state) if
    /// inactive; `true` if the group was not active before.
    fn entry(&mut self, key: &K, init: impl FnOnce() -> S) -> (usize, bool, &mut S);
    /// The state in `slot`.
    fn state(&mut self, slot: usize) -> Option<&mut S>;
    /// The key of an active `slot`.
    fn key(&self, slot: usize) -> Option<K>;
    /// Deactivates `slot` (its state must already be reset).
    fn release(&mut self, slot: usize);
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
    fn entry(&mut self, _: &(), init: impl FnOnce() -> S) -> (usize, bool, &mut S) {
        let created = !self.active;
        self.active = true;
        (0, created, self.state.get_or_insert_with(init))
    }
    #[inline]
    fn state(&mut self, _: usize) -> Option<&mut S> {
        self.state.as_mut()
    }
    fn key(&self, _: usize) -> Option<()> {
        self.active.then_some(())
    }
    fn release(&mut self, _: usize) {
        self.active = false;
    }
    fn len(&self) -> usize {
        usize::from(self.active)
    }
}

/// Table of [`ByKey`].
#[derive(Debug)]
pub struct KeyedTable<K, S> {
    index: HashMap<K, usize, BuildHasherDefault<FxHasher>>,
    slots: Vec<(Option<K>, S)>,
    free: Vec<usize>,
}

impl<K: Hash + Eq + Clone, S> Table<K, S> for KeyedTable<K, S> {
    #[inline]
    fn entry(&mut self, key: &K, init: impl FnOnce() -> S) -> (usize, bool, &mut S) {
        let (i, created) = match self.index.get(key) {
            Some(&i) => (i, false),
            None => {
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i].0 = Some(key.clone());
                        i
                    }
                    None => {
                        self.slots.push((Some(key.clone()), init()));
                        self.slots.len() - 1
                    }
                };
                self.index.insert(key.clone(), i);
                (i, true)
            }
        };
        (i, created, &mut self.slots[i].1)
    }
    #[inline]
    fn state(&mut self, slot: usize) -> Option<&mut S> {
        self.slots.get_mut(slot).map(|(_, s)| s)
    }
    fn key(&self, slot: usize) -> Option<K> {
        self.slots.get(slot)?.0.clone()
    }
    fn release(&mut self, slot: usize) {
        if let Some(k) = self.slots.get_mut(slot).and_then(|(k, _)| k.take()) {
            self.index.remove(&k);
            self.free.push(slot);
        }
    }
    fn len(&self) -> usize {
        self.index.len()
    }
}

/// Table of [`ByIndex`].
#[derive(Debug)]
pub struct DenseTable<S> {
    slots: Vec<(bool, Option<S>)>,
    len: usize,
}

impl<S> Table<usize, S> for DenseTable<S> {
    #[inline]
    fn entry(&mut self, key: &usize, init: impl FnOnce() -> S) -> (usize, bool, &mut S) {
        let i = *key;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || (false, None));
        }
        let (active, state) = &mut self.slots[i];
        let created = !*active;
        if created {
            *active = true;
            self.len += 1;
        }
        (i, created, state.get_or_insert_with(init))
    }
    #[inline]
    fn state(&mut self, slot: usize) -> Option<&mut S> {
        self.slots.get_mut(slot)?.1.as_mut()
    }
    fn key(&self, slot: usize) -> Option<usize> {
        self.slots.get(slot)?.0.then_some(slot)
    }
    fn release(&mut self, slot: usize) {
        if let Some((active, _)) = self.slots.get_mut(slot)
            && *active
        {
            *active = false;
            self.len -= 1;
        }
    }
    fn len(&self) -> usize {
        self.len
    }
}
