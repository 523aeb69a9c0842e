//! `count()`: the number of events in the window.

use crate::aggregate::Aggregate;

/// Counts events. See [`count`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

/// The number of events.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let mut s = count().init(&'a');
/// count().add(&mut s, &'b');
/// assert_eq!(Aggregate::<char>::result(&count(), &s), 2);
/// ```
pub fn count() -> Count {
    Count
}

impl<T> Aggregate<T> for Count {
    type State = u64;
    type Output = u64;
    #[inline]
    fn init(&self, _: &T) -> u64 {
        1
    }
    #[inline]
    fn add(&self, s: &mut u64, _: &T) {
        *s += 1;
    }
    #[inline]
    fn retract(&self, s: &mut u64, _: &T) {
        *s -= 1;
    }
    fn merge(&self, into: &mut u64, from: &u64) {
        *into += *from;
    }
    #[inline]
    fn result(&self, s: &u64) -> u64 {
        *s
    }
    #[inline]
    fn empty(&self) -> Option<u64> {
        Some(0)
    }
    /// The window counts: nothing to do (the state stays 0, the empty state).
    #[inline]
    fn insert_counted(&self, _: &mut u64, _: &T) {}
    #[inline]
    fn finish_counted(&self, _: &mut u64, events: u64) -> u64 {
        events
    }
}
