//! `unique(key)`: the latest event per key.
//!
//! Every arrival enters the window (and is passed on), replacing the previous event with the
//! same key; `.with_expired()` also passes the replaced event, before the arrival.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use crate::stage::{Emit, Stage};
use crate::state::{Checkpoint, checkpoint_fields};
use crate::window::{FxHasher, WindowEvent};

/// A unique window. See [`unique`].
pub struct Unique<T, K, F> {
    key: F,
    held: HashMap<K, T, BuildHasherDefault<FxHasher>>,
}

/// The latest event for each `key(event)`.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::window::{unique, WindowEvent};
/// let mut w = unique(|e: &(char, u32)| e.0).with_expired();
/// let mut out = Vec::new();
/// for e in [('a', 1), ('b', 2), ('a', 3)] { w.process(e, &mut out); }
/// assert_eq!(out, [
///     WindowEvent::Current(('a', 1)), WindowEvent::Current(('b', 2)),
///     WindowEvent::Expired(('a', 1)), WindowEvent::Current(('a', 3)),
/// ]);
/// ```
pub fn unique<T, K: Hash + Eq, F: Fn(&T) -> K>(key: F) -> Unique<T, K, F> {
    Unique {
        key,
        held: HashMap::default(),
    }
}

impl<T, K: Hash + Eq, F: Fn(&T) -> K> Unique<T, K, F> {
    /// Also pass the replaced events.
    pub fn with_expired(self) -> UniqueExpired<T, K, F> {
        UniqueExpired(self)
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

impl<T: Clone + Checkpoint, K: Hash + Eq + Checkpoint, F: Fn(&T) -> K> Stage<T>
    for Unique<T, K, F>
{
    type Out = T;

    checkpoint_fields!(held);

    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        self.held.insert((self.key)(&item), item.clone());
        out.emit(item);
    }
}

/// `unique(key).with_expired()`.
pub struct UniqueExpired<T, K, F>(Unique<T, K, F>);

impl<T: Clone + Checkpoint, K: Hash + Eq + Checkpoint, F: Fn(&T) -> K> Stage<T>
    for UniqueExpired<T, K, F>
{
    type Out = WindowEvent<T>;

    fn snapshot(&self, s: &mut crate::state::Snapshot) -> Result<(), crate::state::StateError> {
        self.0.snapshot(s)
    }

    fn restore(&mut self, r: &mut crate::state::Restore) -> Result<(), crate::state::StateError> {
        self.0.restore(r)
    }

    fn process<E: Emit<WindowEvent<T>>>(&mut self, item: T, out: &mut E) {
        if let Some(old) = self.0.held.insert((self.0.key)(&item), item.clone()) {
            out.emit(WindowEvent::Expired(old));
        }
        out.emit(WindowEvent::Current(item));
    }
}
