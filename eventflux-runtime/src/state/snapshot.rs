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

/// Where the ids of the next save or load come from.
#[derive(Debug, Default)]
struct Scope {
    /// The node's name, or `None` outside any node.
    name: Option<String>,
    /// Saves made in this scope so far.
    count: usize,
}

impl Scope {
    fn next_id(&mut self, unnamed: &mut usize) -> String {
        let id = match &self.name {
            Some(name) if self.count == 0 => name.clone(),
            Some(name) => format!("{name}/{}", self.count),
            None => {
                *unnamed += 1;
                format!("#{}", *unnamed - 1)
            }
        };
        self.count += 1;
        id
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
    scope: Scope,
    unnamed: usize,
    parts: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
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
        let id = self.scope.next_id(&mut self.unnamed);
        let mut w = StateWriter::new();
        f(&mut w)?;
        self.parts.insert(id, w.into_bytes());
        Ok(())
    }

    /// Runs `f` with saves scoped under node `name`.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = std::mem::replace(
            &mut self.scope,
            Scope {
                name: Some(name.to_string()),
                count: 0,
            },
        );
        let r = f(self);
        self.scope = outer;
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
    scope: Scope,
    unnamed: usize,
    parts: BTreeMap<String, Vec<u8>>,
    used: BTreeSet<String>,
}

impl Restore {
    /// Reads from `parts` (what [`Snapshot::into_parts`] gave, or a checkpoint's files).
    pub fn new(parts: BTreeMap<String, Vec<u8>>) -> Self {
        Restore {
            parts,
            ..Self::default()
        }
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
        let id = self.scope.next_id(&mut self.unnamed);
        let Some(bytes) = self.parts.get(&id) else {
            return Ok(None);
        };
        let mut r = StateReader::new(bytes);
        let value = f(&mut r).map_err(|e| StateError::Custom(format!("state `{id}`: {e}")))?;
        if r.remaining() > 0 {
            return Err(StateError::Custom(format!(
                "state `{id}`: {} bytes left unread (saved by a different stage?)",
                r.remaining()
            )));
        }
        self.used.insert(id);
        Ok(Some(value))
    }

    /// Runs `f` with loads scoped under node `name`.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = std::mem::replace(
            &mut self.scope,
            Scope {
                name: Some(name.to_string()),
                count: 0,
            },
        );
        let r = f(self);
        self.scope = outer;
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
