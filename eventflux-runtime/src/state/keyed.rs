//! [`Keyed`]: a map whose checkpoints are incremental.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use super::{Checkpoint, StateError, StateReader, StateWriter};
use crate::window::FxHasher;

type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Keys changed since a checkpoint: for each, the checkpoint that will first include the
/// change, and whether the key was removed.
struct Changes<K> {
    by_key: Map<K, (u64, bool)>,
    /// The checkpoint that will include changes made now.
    epoch: u64,
}

/// A map for keyed state with **incremental checkpoints**: a checkpoint saves only the keys
/// changed or removed since the last completed one (a delta), and a full copy every few
/// checkpoints; recovery reads the last full copy and applies the deltas after it. Use it for
/// large keyed state (millions of keys of which few change between checkpoints), saved with
/// [`Snapshot::save_keyed`](super::Snapshot::save_keyed) and read back with
/// [`Restore::load_keyed`](super::Restore::load_keyed).
///
/// Every mutation records its key (a hash-set insert): reads are as fast as a `HashMap`'s,
/// writes a little slower.
///
/// ```
/// use eventflux_runtime::state::Keyed;
/// let mut totals: Keyed<String, u64> = Keyed::new();
/// *totals.get_or_insert_with("ann".into(), || 0) += 5;
/// totals.insert("bob".into(), 1);
/// totals.remove(&"bob".into());
/// assert_eq!(totals.get(&"ann".into()), Some(&5));
/// assert_eq!(totals.len(), 1);
/// ```
pub struct Keyed<K, V> {
    map: Map<K, V>,
    changes: RefCell<Changes<K>>,
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for Keyed<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

impl<K, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed {
            map: Map::default(),
            changes: RefCell::new(Changes {
                by_key: Map::default(),
                epoch: 1,
            }),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Keyed<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    fn touch(&mut self, key: &K, removed: bool) {
        let c = self.changes.get_mut();
        let epoch = c.epoch;
        c.by_key.insert(key.clone(), (epoch, removed));
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// The value of `key`, to change (recorded as changed).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if self.map.contains_key(key) {
            self.touch(key, false);
        }
        self.map.get_mut(key)
    }

    /// The value of `key`, made with `make` if absent (recorded as changed).
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.touch(&key, false);
        self.map.entry(key).or_insert_with(make)
    }

    /// Sets `key`'s value; returns the old one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.touch(&key, false);
        self.map.insert(key, value)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.touch(key, true);
        }
        old
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }
}

const FULL: u8 = 0;
const DELTA: u8 = 1;

impl<K: Hash + Eq + Clone + Checkpoint, V: Checkpoint> Keyed<K, V> {
    /// Writes the state for checkpoint `id`: everything (`full`, or no `base`), or what
    /// changed after the completed checkpoint `base`. Changes stay recorded until a later
    /// checkpoint's base covers them (this one may still fail).
    pub(crate) fn save_for(
        &self,
        id: u64,
        base: Option<u64>,
        full: bool,
        w: &mut StateWriter,
    ) -> Result<(), StateError> {
        let mut c = self.changes.borrow_mut();
        match base.filter(|_| !full) {
            None => {
                w.put(&FULL)?;
                w.len_prefix(self.map.len())?;
                for (k, v) in &self.map {
                    k.save(w)?;
                    v.save(w)?;
                }
            }
            Some(base) => {
                w.put(&DELTA)?;
                let changed: Vec<(&K, bool)> = c
                    .by_key
                    .iter()
                    .filter(|(_, (epoch, _))| *epoch > base)
                    .map(|(k, (_, removed))| (k, *removed))
                    .collect();
                let (removed, kept): (Vec<_>, Vec<_>) = changed.into_iter().partition(|(_, r)| *r);
                w.len_prefix(kept.len())?;
                for (k, _) in kept {
                    k.save(w)?;
                    match self.map.get(k) {
                        Some(v) => v.save(w)?,
                        None => return Err(StateError::custom("a changed key has no value")),
                    }
                }
                w.len_prefix(removed.len())?;
                for (k, _) in removed {
                    k.save(w)?;
                }
            }
        }
        if let Some(base) = base {
            c.by_key.retain(|_, (epoch, _)| *epoch > base);
        }
        c.epoch = id + 1;
        Ok(())
    }

    /// Applies one saved part (a full copy or a delta) of checkpoint chain ending at `id`.
    pub(crate) fn apply(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let kind: u8 = r.take()?;
        match kind {
            FULL => {
                self.map.clear();
                let n = r.len_prefix()?;
                self.map.reserve(r.capacity_for(n));
                for _ in 0..n {
                    let k = K::load(r)?;
                    self.map.insert(k, V::load(r)?);
                }
            }
            DELTA => {
                for _ in 0..r.len_prefix()? {
                    let k = K::load(r)?;
                    self.map.insert(k, V::load(r)?);
                }
                for _ in 0..r.len_prefix()? {
                    self.map.remove(&K::load(r)?);
                }
            }
            other => {
                return Err(StateError::custom(format!(
                    "unknown keyed-state part kind {other}"
                )));
            }
        }
        Ok(())
    }

    /// After a restore from checkpoint `id`: nothing has changed since.
    pub(crate) fn restored(&mut self, id: u64) {
        let c = self.changes.get_mut();
        c.by_key.clear();
        c.epoch = id + 1;
    }
}
