//! `first(f)` and `last(f)`: the oldest and newest value in the window.

use std::collections::VecDeque;

use crate::aggregate::Aggregate;

/// The oldest value. See [`first`].
#[derive(Debug, Clone, Copy)]
pub struct First<F>(F);

/// The newest value. See [`last`].
#[derive(Debug, Clone, Copy)]
pub struct Last<F>(F);

/// The value of `f` for the oldest event in the window. Sliding windows keep the window's values
/// (retraction pops the oldest), so its state is as long as the window; windows that never
/// retract keep only the first value.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = first(|x: &u8| *x);
/// let mut s = spec.init(&7);
/// for x in [8u8, 9] { spec.add(&mut s, &x); }
/// spec.retract(&mut s, &7);
/// assert_eq!(spec.result(&s), 8);
/// ```
pub fn first<F>(f: F) -> First<F> {
    First(f)
}

/// The value of `f` for the newest event in the window.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = last(|x: &u8| *x);
/// let mut s = spec.init(&7);
/// for x in [8u8, 9] { spec.add(&mut s, &x); }
/// spec.retract(&mut s, &7);
/// assert_eq!(spec.result(&s), 9);
/// ```
pub fn last<F>(f: F) -> Last<F> {
    Last(f)
}

impl<T, V: Clone + crate::state::Checkpoint, F: Fn(&T) -> V> Aggregate<T> for First<F> {
    /// The oldest value, and (sliding windows) the later ones in order.
    type State = (V, VecDeque<V>);
    type Output = V;
    #[inline]
    fn init(&self, first: &T) -> Self::State {
        ((self.0)(first), VecDeque::new())
    }
    #[inline]
    fn add(&self, s: &mut Self::State, item: &T) {
        s.1.push_back((self.0)(item));
    }
    #[inline]
    fn insert(&self, _: &mut Self::State, _: &T) {}
    #[inline]
    fn retract(&self, s: &mut Self::State, _: &T) {
        // Never the only value left: the next one becomes the oldest.
        if let Some(next) = s.1.pop_front() {
            s.0 = next;
        }
    }
    fn merge(&self, _: &mut Self::State, _: &Self::State) {}
    fn result(&self, s: &Self::State) -> V {
        s.0.clone()
    }
    fn reset(&self, s: &mut Self::State, first: &T) {
        s.0 = (self.0)(first);
        s.1.clear();
    }
}

impl<T, V: Clone + crate::state::Checkpoint, F: Fn(&T) -> V> Aggregate<T> for Last<F> {
    type State = V;
    type Output = V;
    #[inline]
    fn init(&self, first: &T) -> V {
        (self.0)(first)
    }
    #[inline]
    fn add(&self, s: &mut V, item: &T) {
        *s = (self.0)(item);
    }
    /// The newest value never leaves while older ones remain.
    #[inline]
    fn retract(&self, _: &mut V, _: &T) {}
    fn merge(&self, into: &mut V, from: &V) {
        into.clone_from(from);
    }
    fn result(&self, s: &V) -> V {
        s.clone()
    }
}
