//! `count()`: the number of events in the window.

use crate::aggregate::Aggregate;

/// Counts events. See [`count`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

/// The number of events.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let mut s = Aggregate::<u8>::init(&count());
/// count().add(&mut s, &1u8);
/// assert_eq!(Aggregate::<u8>::result(&count(), &s), 1);
/// ```
pub fn count() -> Count {
    Count
}

impl<T> Aggregate<T> for Count {
    type State = u64;
    type Output = u64;
    #[inline]
    fn init(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, s: &mut u64, _: &T) {
        *s += 1;
    }
    #[inline]
    fn retract(&self, s: &mut u64, _: &T) {
        *s = s.saturating_sub(1);
    }
    fn merge(&self, into: &mut u64, from: &u64) {
        *into += *from;
    }
    #[inline]
    fn result(&self, s: &u64) -> u64 {
        *s
    }
}
