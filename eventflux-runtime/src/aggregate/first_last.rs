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
/// (retraction pops the oldest), so its state is as long as the window.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = first(|x: &u8| *x);
/// let mut s = spec.init();
/// for x in [7u8, 8, 9] { spec.add(&mut s, &x); }
/// spec.retract(&mut s, &7);
/// assert_eq!(spec.result(&s), Some(8));
/// ```
pub fn first<F>(f: F) -> First<F> {
    First(f)
}

/// The value of `f` for the newest event in the window.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = last(|x: &u8| *x);
/// let mut s = spec.init();
/// for x in [7u8, 8, 9] { spec.add(&mut s, &x); }
/// spec.retract(&mut s, &7);
/// assert_eq!(spec.result(&s), Some(9));
/// ```
pub fn last<F>(f: F) -> Last<F> {
    Last(f)
}

impl<T, V: Clone, F: Fn(&T) -> V> Aggregate<T> for First<F> {
    type State = VecDeque<V>;
    type Output = Option<V>;
    fn init(&self) -> VecDeque<V> {
        VecDeque::new()
    }
    #[inline]
    fn add(&self, s: &mut VecDeque<V>, item: &T) {
        s.push_back((self.0)(item));
    }
    #[inline]
    fn retract(&self, s: &mut VecDeque<V>, _: &T) {
        s.pop_front();
    }
    fn merge(&self, into: &mut VecDeque<V>, from: &VecDeque<V>) {
        into.extend(from.iter().cloned());
    }
    fn result(&self, s: &VecDeque<V>) -> Option<V> {
        s.front().cloned()
    }
    fn reset(&self, s: &mut VecDeque<V>) {
        s.clear();
    }
}

impl<T, V: Clone, F: Fn(&T) -> V> Aggregate<T> for Last<F> {
    /// The newest value and how many events are in the window.
    type State = (Option<V>, u64);
    type Output = Option<V>;
    fn init(&self) -> Self::State {
        (None, 0)
    }
    #[inline]
    fn add(&self, s: &mut Self::State, item: &T) {
        s.0 = Some((self.0)(item));
        s.1 += 1;
    }
    #[inline]
    fn retract(&self, s: &mut Self::State, _: &T) {
        // The newest value leaves only when it is the last one left.
        s.1 = s.1.saturating_sub(1);
        if s.1 == 0 {
            s.0 = None;
        }
    }
    fn merge(&self, into: &mut Self::State, from: &Self::State) {
        if from.1 > 0 {
            into.0.clone_from(&from.0);
            into.1 += from.1;
        }
    }
    fn result(&self, s: &Self::State) -> Option<V> {
        s.0.clone()
    }
}
