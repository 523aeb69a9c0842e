//! [`Snapshot`] and [`Restore`]: the states of a chain of stages, each under a stable id.
//!
//! A stage saves its state through [`Stage::snapshot`](crate::Stage::snapshot) and reads it
//! back in [`Stage::restore`](crate::Stage::restore). Ids come from node names: `pipeline!`
//! and [`Named`](crate::stage::Named) scope each node's saves under its name, so a state is
//! found again by the same node in a later build. A node whose stage saves several states
//! (a chain inside one node) numbers them in order: `name`, `name/1`, `name/2`. A stage outside
//! any named scope is numbered by position: `#0`, `#1`.

use std::collections::{BTreeMap, BTreeSet};

use super::{Checkpoint, StateError, StateReader, StateWriter};

/// Each state's saved parts by id: one, or for an incremental state a full copy and the
/// deltas after it, in order.
pub(crate) type Chains = BTreeMap<String, Vec<Vec<u8>>>;

/// Where the ids of the next save or load come from.
#[derive(Debug, Default)]
struct Scope {
    /// The node's name, or `None` outside any node.
    name: Option<String>,
    /// Saves made in this scope so far.
    count: usize,
}

/// The ids of a [`Snapshot`]'s saves or a [`Restore`]'s loads, in the same order.
#[derive(Debug, Default)]
struct Ids {
    scope: Scope,
    /// States saved outside any node so far.
    unnamed: usize,
}

impl Ids {
    /// The id of the next save (or load).
    fn next(&mut self) -> String {
        let s = &mut self.scope;
        let id = match &s.name {
            Some(name) if s.count == 0 => name.clone(),
            Some(name) => format!("{name}/{}", s.count),
            None => {
                self.unnamed += 1;
                format!("#{}", self.unnamed - 1)
            }
        };
        s.count += 1;
        id
    }

    /// Enters node `name`'s scope; returns the scope to [`leave`](Self::leave) for.
    fn enter(&mut self, name: &str) -> Scope {
        std::mem::replace(
            &mut self.scope,
            Scope {
                name: Some(name.to_string()),
                count: 0,
            },
        )
    }

    fn leave(&mut self, outer: Scope) {
        self.scope = outer;
    }
}

/// Reads one saved part with `f`, which must read all of it; errors name the state.
fn read_part<T>(
    id: &str,
    part: &[u8],
    f: impl FnOnce(&mut StateReader<'_>) -> Result<T, StateError>,
) -> Result<T, StateError> {
    let mut r = StateReader::new(part);
    let value = f(&mut r).map_err(|e| StateError::Custom(format!("state `{id}`: {e}")))?;
    match r.remaining() {
        0 => Ok(value),
        left => Err(StateError::Custom(format!(
            "state `{id}`: {left} bytes left unread (saved by a different stage?)"
        ))),
    }
}

/// The states of a chain of stages being saved, by id.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::state::{Restore, Snapshot};
/// use eventflux_runtime::stage::Named;
///
/// let running_sum = || Named::new("sum", stateful(0u64, |s: &mut u64, x: u64| { *s += x; Some(*s) }));
/// let mut stage = running_sum();
/// let mut out = Vec::new();
/// for x in [1, 2, 3] { stage.process(x, &mut out); }
///
/// let mut snap = Snapshot::new();
/// stage.snapshot(&mut snap)?;
/// let parts = snap.into_parts();
/// assert_eq!(parts.keys().collect::<Vec<_>>(), ["sum"]);
///
/// let mut again = running_sum();
/// let mut restore = Restore::new(parts);
/// again.restore(&mut restore)?;
/// again.process(4, &mut out);
/// assert_eq!(out, [1, 3, 6, 10]);
/// # Ok::<(), eventflux_runtime::state::StateError>(())
/// ```
#[derive(Debug, Default)]
pub struct Snapshot {
    ids: Ids,
    parts: BTreeMap<String, Vec<u8>>,
    /// The checkpoint being taken (0 outside a pipeline).
    checkpoint: u64,
    /// The last completed checkpoint, which incremental states save their changes against;
    /// `None`: they save everything.
    base: Option<u64>,
    /// Incremental states save everything this time.
    full: bool,
    /// Ids of the parts that are deltas against `base`.
    deltas: BTreeSet<String>,
}

impl Snapshot {
    /// An empty snapshot (incremental states save everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// The snapshot of checkpoint `checkpoint`: incremental states save their changes since
    /// `base` (a completed checkpoint) unless `full`. Pipelines make it; a custom driver or a
    /// test can too.
    ///
    /// ```
    /// use eventflux_runtime::state::{Keyed, Snapshot};
    /// let mut m: Keyed<u32, u64> = Keyed::new();
    /// for k in 0..1000 { m.insert(k, 0); }
    /// let mut full = Snapshot::for_checkpoint(1, None, true);
    /// full.save_keyed(&m)?;
    /// m.insert(7, 1); // one key changes
    /// let mut delta = Snapshot::for_checkpoint(2, Some(1), false);
    /// delta.save_keyed(&m)?;
    /// let size = |s: Snapshot| s.into_parts().values().map(Vec::len).sum::<usize>();
    /// assert!(size(delta) * 100 < size(full));
    /// # Ok::<(), eventflux_runtime::state::StateError>(())
    /// ```
    pub fn for_checkpoint(checkpoint: u64, base: Option<u64>, full: bool) -> Self {
        Snapshot {
            checkpoint,
            base,
            full,
            ..Self::default()
        }
    }

    /// Saves a [`Keyed`](super::Keyed) map under the current id: the keys changed since the
    /// last completed checkpoint, or everything every few checkpoints (see
    /// [`Keyed`](super::Keyed)).
    ///
    /// ```
    /// use eventflux_runtime::state::{Keyed, Restore, Snapshot};
    /// let mut m: Keyed<u32, u64> = Keyed::new();
    /// m.insert(1, 10);
    /// let mut s = Snapshot::new();
    /// s.save_keyed(&m)?;
    /// let mut back: Keyed<u32, u64> = Keyed::new();
    /// Restore::new(s.into_parts()).load_keyed(&mut back)?;
    /// assert_eq!(back.get(&1), Some(&10));
    /// # Ok::<(), eventflux_runtime::state::StateError>(())
    /// ```
    pub fn save_keyed<K, V>(&mut self, state: &super::Keyed<K, V>) -> Result<(), StateError>
    where
        K: std::hash::Hash + Eq + Clone + Checkpoint,
        V: Checkpoint,
    {
        let (checkpoint, base, full) = (self.checkpoint, self.base, self.full);
        let id = self.ids.next();
        let mut w = StateWriter::new();
        if state.save_for(checkpoint, base, full, &mut w)? {
            self.deltas.insert(id.clone());
        }
        self.parts.insert(id, w.into_bytes());
        Ok(())
    }

    /// Ids of the parts saved as deltas against the base checkpoint.
    pub(crate) fn deltas(&self) -> &BTreeSet<String> {
        &self.deltas
    }

    /// An empty snapshot of the same checkpoint (for one key group's chain instance).
    pub(crate) fn for_group(&self) -> Self {
        Self::for_checkpoint(self.checkpoint, self.base, self.full)
    }

    /// Adds a part made elsewhere under `id` (a delta against the base if `delta`).
    pub(crate) fn put_part(&mut self, id: String, bytes: Vec<u8>, delta: bool) {
        if delta {
            self.deltas.insert(id.clone());
        }
        self.parts.insert(id, bytes);
    }

    /// Saves `state` under the current id.
    pub fn save<T: Checkpoint>(&mut self, state: &T) -> Result<(), StateError> {
        self.write(|w| state.save(w))
    }

    /// Saves what `f` writes under the current id (for a stage whose state is several fields).
    pub fn write(
        &mut self,
        f: impl FnOnce(&mut StateWriter) -> Result<(), StateError>,
    ) -> Result<(), StateError> {
        let id = self.ids.next();
        let mut w = StateWriter::new();
        f(&mut w)?;
        self.parts.insert(id, w.into_bytes());
        Ok(())
    }

    /// Runs `f` with saves scoped under node `name`.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = self.ids.enter(name);
        let r = f(self);
        self.ids.leave(outer);
        r
    }

    /// The saved states, by id.
    pub fn into_parts(self) -> BTreeMap<String, Vec<u8>> {
        self.parts
    }
}

/// Saved states being read back into a chain of stages. See [`Snapshot`].
#[derive(Debug, Default)]
pub struct Restore {
    ids: Ids,
    /// Each state's saved parts: one, or for an incremental state a full copy and the deltas
    /// after it, in order.
    parts: BTreeMap<String, Vec<Vec<u8>>>,
    used: BTreeSet<String>,
    /// The checkpoint restored from.
    checkpoint: u64,
    /// The checkpoint's incremental states are restored into a different layout (keyed workers
    /// rescaled): their next save must be a full copy, as the checkpoint does not hold them
    /// where they will be saved.
    relocated: bool,
}

impl Restore {
    /// Reads from `parts` (what [`Snapshot::into_parts`] gave).
    pub fn new(parts: BTreeMap<String, Vec<u8>>) -> Self {
        Restore {
            parts: parts.into_iter().map(|(k, v)| (k, vec![v])).collect(),
            ..Self::default()
        }
    }

    /// Reads from a checkpoint's states: each a chain of parts (a full copy and deltas).
    pub(crate) fn with_chains(parts: Chains, checkpoint: u64) -> Self {
        Restore {
            parts,
            checkpoint,
            ..Self::default()
        }
    }

    /// Marks the states as restored into a different layout (see `relocated`).
    pub(crate) fn relocated(mut self, relocated: bool) -> Self {
        self.relocated = relocated;
        self
    }

    /// Takes (as read) every state whose id starts with `prefix`, by the rest of its id.
    pub(crate) fn take_prefixed(&mut self, prefix: &str) -> Chains {
        let ids: Vec<String> = self
            .parts
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        ids.into_iter()
            .filter_map(|id| {
                let chain = self.parts.remove(&id)?;
                let rest = id[prefix.len()..].to_string();
                self.used.insert(id);
                Some((rest, chain))
            })
            .collect()
    }

    /// A restore of `parts` (one key group's states) from the same checkpoint.
    pub(crate) fn for_group(&self, parts: Chains) -> Self {
        Restore::with_chains(parts, self.checkpoint).relocated(self.relocated)
    }

    /// Reads a [`Keyed`](super::Keyed) map saved with [`Snapshot::save_keyed`] into `into`
    /// (the full copy, then each delta); `false` if the checkpoint has no state here.
    pub fn load_keyed<K, V>(&mut self, into: &mut super::Keyed<K, V>) -> Result<bool, StateError>
    where
        K: std::hash::Hash + Eq + Clone + Checkpoint,
        V: Checkpoint,
    {
        let id = self.ids.next();
        let Some(chain) = self.parts.get(&id) else {
            return Ok(false);
        };
        for (i, part) in chain.iter().enumerate() {
            read_part(&format!("{id}` part `{i}"), part, |r| into.apply(r))?;
        }
        if !self.relocated {
            into.restored(self.checkpoint);
        }
        self.used.insert(id);
        Ok(true)
    }

    /// The state saved under the current id, or `None` if the checkpoint has none (a stage
    /// added since: it keeps its initial state).
    pub fn load<T: Checkpoint>(&mut self) -> Result<Option<T>, StateError> {
        self.read(|r| T::load(r))
    }

    /// Reads the state saved under the current id with `f`, which must read all of it.
    pub fn read<T>(
        &mut self,
        f: impl FnOnce(&mut StateReader<'_>) -> Result<T, StateError>,
    ) -> Result<Option<T>, StateError> {
        let id = self.ids.next();
        let Some(chain) = self.parts.get(&id) else {
            return Ok(None);
        };
        let [bytes] = &chain[..] else {
            return Err(StateError::Custom(format!(
                "state `{id}` was saved incrementally ({} parts): read it with `load_keyed`",
                chain.len()
            )));
        };
        let value = read_part(&id, bytes, f)?;
        self.used.insert(id);
        Ok(Some(value))
    }

    /// Runs `f` with loads scoped under node `name`.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = self.ids.enter(name);
        let r = f(self);
        self.ids.leave(outer);
        r
    }

    /// Ids of saved states no stage read: state of a node that no longer exists (or was
    /// renamed).
    pub fn unused(&self) -> Vec<&str> {
        self.parts
            .keys()
            .filter(|k| !self.used.contains(*k))
            .map(String::as_str)
            .collect()
    }
}
