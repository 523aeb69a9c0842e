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
    /// The checkpoint of the latest full copy (saved or restored from); `None` before the
    /// first. A delta is written only against a base at least this recent: an older base does
    /// not hold the copy the delta would apply to. Changes are recorded only from the first
    /// full copy on (before it, every checkpoint saves in full anyway).
    last_full: Option<u64>,
}

/// A map for keyed state with **incremental checkpoints**: a checkpoint saves only the keys
/// changed or removed since the last completed one (a delta), and a full copy every few
/// checkpoints; recovery reads the last full copy and applies the deltas after it. Use it for
/// large keyed state (millions of keys of which few change between checkpoints), saved with
/// [`Snapshot::save_keyed`](super::Snapshot::save_keyed) and read back with
/// [`Restore::load_keyed`](super::Restore::load_keyed).
///
/// Once the map has been in a checkpoint, every mutation records its key (a hash-map
/// insert): reads are as fast as a `HashMap`'s, writes a little slower. A map that is never
/// checkpointed records nothing.
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
                last_full: None,
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
        if c.last_full.is_some() {
            let epoch = c.epoch;
            c.by_key.insert(key.clone(), (epoch, removed));
        }
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
    /// Writes the state for checkpoint `id`: what changed after the completed checkpoint
    /// `base`, or everything (`full`, no `base`, or a base that does not hold this map's
    /// latest full copy). Returns whether it wrote a delta. Changes stay recorded until a
    /// later checkpoint's base covers them (this one may still fail).
    pub(crate) fn save_for(
        &self,
        id: u64,
        base: Option<u64>,
        full: bool,
        w: &mut StateWriter,
    ) -> Result<bool, StateError> {
        let mut c = self.changes.borrow_mut();
        let last_full = c.last_full;
        let delta_base = base.filter(|&b| !full && last_full.is_some_and(|f| b >= f));
        match delta_base {
            None => {
                c.last_full = Some(id);
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
        Ok(delta_base.is_some())
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

    /// After a restore from checkpoint `id`: nothing has changed since, and `id` holds the
    /// map (its full copy and deltas).
    pub(crate) fn restored(&mut self, id: u64) {
        let c = self.changes.get_mut();
        c.by_key.clear();
        c.epoch = id + 1;
        c.last_full = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Restore, Snapshot};
    use super::*;

    /// Restores from the parts `snaps` saved, in order (a full copy and deltas).
    fn restore(snaps: Vec<Snapshot>) -> Keyed<u32, u64> {
        let chain: Vec<Vec<u8>> = snaps
            .into_iter()
            .flat_map(|s| s.into_parts().into_values())
            .collect();
        let mut back = Keyed::new();
        let parts = std::collections::BTreeMap::from([("#0".to_string(), chain)]);
        let found = Restore::with_chains(parts, 0)
            .load_keyed(&mut back)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(found);
        back
    }

    fn save(m: &Keyed<u32, u64>, id: u64, base: Option<u64>) -> (Snapshot, bool) {
        let mut s = Snapshot::for_checkpoint(id, base, false);
        s.save_keyed(m).unwrap_or_else(|e| panic!("{e}"));
        let delta = !s.deltas().is_empty();
        (s, delta)
    }

    /// A map that no completed checkpoint holds yet — a stage added since the checkpoint the
    /// run resumed from — saves a full copy even when the checkpoint has a base: a delta
    /// against a base without it would lose every key not changed since.
    #[test]
    fn a_map_no_base_holds_is_saved_in_full() {
        let mut m: Keyed<u32, u64> = Keyed::new();
        for k in 0..10 {
            m.insert(k, u64::from(k));
        }
        let (s, delta) = save(&m, 5, Some(4));
        assert!(!delta, "no base holds this map");
        assert_eq!(restore(vec![s]).len(), 10);
    }

    /// Whatever each checkpoint writes — a full copy or a delta — the chain recovery would
    /// read (the base's chain, then this part) restores the map exactly, through a first full
    /// copy, deltas, a periodic full copy whose checkpoint fails, and the checkpoint after it.
    #[test]
    fn every_checkpoint_restores_exactly_whatever_it_wrote() {
        let mut m: Keyed<u32, u64> = Keyed::new();
        // Each completed checkpoint's chain, by id.
        let mut chains: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = Default::default();
        let mut completed: Option<u64> = None;
        let steps: [(u64, bool, bool); 5] = [
            // (checkpoint, periodic full, completes)
            (1, false, true),
            (2, false, true),
            (3, true, false),
            (4, false, true),
            (5, false, true),
        ];
        for (round, (id, full, completes)) in steps.into_iter().enumerate() {
            let r = round as u32;
            m.insert(r, u64::from(r) * 10);
            m.insert(100, u64::from(r));
            if r > 0 {
                m.remove(&(r - 1));
            }
            let mut s = Snapshot::for_checkpoint(id, completed, full);
            s.save_keyed(&m).unwrap_or_else(|e| panic!("{e}"));
            let delta = !s.deltas().is_empty();
            let part: Vec<u8> = s.into_parts().into_values().flatten().collect();
            let mut chain = match (delta, completed) {
                (true, Some(base)) => chains[&base].clone(),
                _ => Vec::new(),
            };
            chain.push(part);
            let mut back = Keyed::<u32, u64>::new();
            let parts = std::collections::BTreeMap::from([("#0".to_string(), chain.clone())]);
            Restore::with_chains(parts, id)
                .load_keyed(&mut back)
                .unwrap_or_else(|e| panic!("{e}"));
            let sorted = |k: &Keyed<u32, u64>| {
                let mut v: Vec<(u32, u64)> = k.iter().map(|(a, b)| (*a, *b)).collect();
                v.sort_unstable();
                v
            };
            assert_eq!(
                sorted(&back),
                sorted(&m),
                "checkpoint {id} (delta: {delta})"
            );
            if completes {
                chains.insert(id, chain);
                completed = Some(id);
            }
        }
    }
}
