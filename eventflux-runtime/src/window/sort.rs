//! `sort(n, by)`: keeps the `n` events with the smallest `by(event)`.
//!
//! An arrival that ranks among the `n` smallest (ties: the earlier event ranks first) enters the
//! window and is passed on; if the window then holds `n + 1` events, the largest leaves. An
//! arrival that does not rank is not passed. `.with_expired()` also passes the event that left
//! (which may be the arrival itself, as `Expired` only).

use std::collections::BTreeMap;

use crate::stage::{Emit, Stage};
use crate::state::{Checkpoint, checkpoint_fields};
use crate::window::WindowEvent;

/// A sorted window. See [`sort`].
pub struct Sort<T, K, F> {
    n: usize,
    by: F,
    held: BTreeMap<(K, u64), T>,
    seq: u64,
}

/// The `n` (≥ 1) events with the smallest `by(event)`.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::window::{sort, WindowEvent};
/// let mut w = sort(2, |x: &u32| *x).with_expired();
/// let mut out = Vec::new();
/// for x in [5, 3, 9, 1] { w.process(x, &mut out); }
/// assert_eq!(out, [
///     WindowEvent::Current(5), WindowEvent::Current(3),
///     WindowEvent::Expired(9),
///     WindowEvent::Current(1), WindowEvent::Expired(5),
/// ]);
/// ```
pub fn sort<T, K: Ord, F: Fn(&T) -> K>(n: usize, by: F) -> Sort<T, K, F> {
    Sort {
        n: n.max(1),
        by,
        held: BTreeMap::new(),
        seq: 0,
    }
}

impl<T, K: Ord, F: Fn(&T) -> K> Sort<T, K, F> {
    /// Also pass the events that leave the window.
    pub fn with_expired(self) -> SortExpired<T, K, F> {
        SortExpired(self)
    }

    /// Inserts `item`; returns whether it stayed, and what left.
    fn insert(&mut self, item: T) -> (Option<(K, u64)>, Option<T>)
    where
        T: Clone,
    {
        let key = ((self.by)(&item), self.seq);
        self.seq += 1;
        self.held.insert((key.0, key.1), item);
        if self.held.len() > self.n
            && let Some((k, old)) = self.held.pop_last()
        {
            return (Some(k), Some(old));
        }
        (None, None)
    }

    /// The events in the window, smallest first.
    pub fn contents(&self) -> impl Iterator<Item = &T> {
        self.held.values()
    }
}

impl<T: Clone + Checkpoint, K: Ord + Checkpoint, F: Fn(&T) -> K> Stage<T> for Sort<T, K, F> {
    type Out = T;

    checkpoint_fields!(held, seq);

    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        let seq = self.seq;
        let copy = item.clone();
        let (left, _) = self.insert(item);
        if left.is_none_or(|(_, s)| s != seq) {
            out.emit(copy);
        }
    }
}

/// `sort(n, by).with_expired()`.
pub struct SortExpired<T, K, F>(Sort<T, K, F>);

impl<T: Clone + Checkpoint, K: Ord + Checkpoint, F: Fn(&T) -> K> Stage<T> for SortExpired<T, K, F> {
    type Out = WindowEvent<T>;

    fn snapshot(&self, s: &mut crate::state::Snapshot) -> Result<(), crate::state::StateError> {
        self.0.snapshot(s)
    }

    fn restore(&mut self, r: &mut crate::state::Restore) -> Result<(), crate::state::StateError> {
        self.0.restore(r)
    }

    fn process<E: Emit<WindowEvent<T>>>(&mut self, item: T, out: &mut E) {
        let seq = self.0.seq;
        let copy = item.clone();
        match self.0.insert(item) {
            (Some((_, s)), Some(old)) if s == seq => out.emit(WindowEvent::Expired(old)),
            (_, Some(old)) => {
                out.emit(WindowEvent::Current(copy));
                out.emit(WindowEvent::Expired(old));
            }
            _ => out.emit(WindowEvent::Current(copy)),
        }
    }
}
