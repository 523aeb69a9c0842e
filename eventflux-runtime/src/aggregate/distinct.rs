//! `distinct_count(f)`: how many different values of `f(event)` are in the window.

use std::collections::BTreeMap;

use crate::aggregate::Aggregate;

/// Counts distinct values. See [`distinct_count`].
#[derive(Debug, Clone, Copy)]
pub struct DistinctCount<F>(F);

/// The number of distinct values of `f(event)`; a counted multiset, so retraction is exact.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = distinct_count(|x: &u8| *x);
/// let mut s = spec.init(&1);
/// for x in [2u8, 1] { spec.add(&mut s, &x); }
/// assert_eq!(spec.result(&s), 2);
/// spec.retract(&mut s, &1);
/// assert_eq!(spec.result(&s), 2);
/// spec.retract(&mut s, &2);
/// assert_eq!(spec.result(&s), 1);
/// ```
pub fn distinct_count<F>(f: F) -> DistinctCount<F> {
    DistinctCount(f)
}

impl<T, K: Ord + Clone + crate::state::Checkpoint, F: Fn(&T) -> K> Aggregate<T>
    for DistinctCount<F>
{
    type State = BTreeMap<K, u64>;
    type Output = u64;
    fn init(&self, first: &T) -> Self::State {
        BTreeMap::from([((self.0)(first), 1)])
    }
    fn reset(&self, s: &mut Self::State, first: &T) {
        s.clear();
        s.insert((self.0)(first), 1);
    }
    fn add(&self, s: &mut Self::State, item: &T) {
        *s.entry((self.0)(item)).or_insert(0) += 1;
    }
    fn retract(&self, s: &mut Self::State, item: &T) {
        let k = (self.0)(item);
        if let Some(c) = s.get_mut(&k) {
            *c -= 1;
            if *c == 0 {
                s.remove(&k);
            }
        }
    }
    fn merge(&self, into: &mut Self::State, from: &Self::State) {
        for (k, c) in from {
            *into.entry(k.clone()).or_insert(0) += *c;
        }
    }
    fn result(&self, s: &Self::State) -> u64 {
        s.len() as u64
    }
}
