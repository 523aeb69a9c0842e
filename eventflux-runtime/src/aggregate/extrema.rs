//! `min(f)` and `max(f)`: one value in windows that never retract; exact retraction in sliding
//! windows with a monotonic deque per group.
//!
//! The deque holds `(sequence, value)` pairs whose values are increasing (for `min`) from front
//! to back: a new value first removes every value behind it that can never be the minimum
//! again. Retraction (always of the oldest event) pops the front if it is that event. Each
//! value is pushed and popped at most once: O(1) amortised.

use std::any::Any;
use std::collections::VecDeque;

use crate::aggregate::Aggregate;

/// State of `min`/`max`: the best value of an append-only window, or the monotonic deque of a
/// sliding one (boxed and created on the first retractable addition, so append-only state stays
/// small: two words for `f64`).
#[derive(Debug, Clone, crate::state::Checkpoint)]
#[checkpoint(crate = crate)]
pub struct Extremum<V> {
    best: V,
    sliding: Option<Box<Sliding<V>>>,
}

/// The monotonic deque of a sliding window, with sequence numbers to recognise retractions.
/// Never empty: it always holds the newest value, which is never retracted while others remain.
#[derive(Debug, Clone, crate::state::Checkpoint)]
#[checkpoint(crate = crate)]
struct Sliding<V> {
    deque: VecDeque<(u64, V)>,
    added: u64,
    retracted: u64,
}

impl<V: PartialOrd + Clone> Extremum<V> {
    fn new(v: V) -> Self {
        Self {
            best: v,
            sliding: None,
        }
    }

    /// Sliding windows. `dominates(new, old)`: `old` can never be the answer again once `new`
    /// is in.
    #[inline]
    fn add(&mut self, v: V, dominates: impl Fn(&V, &V) -> bool) {
        let best = &self.best;
        let s = self.sliding.get_or_insert_with(|| {
            // The first event, taken in by `init`, is the deque's first entry.
            let mut deque = VecDeque::new();
            deque.push_back((0, best.clone()));
            Box::new(Sliding {
                deque,
                added: 1,
                retracted: 0,
            })
        });
        while let Some((_, back)) = s.deque.back() {
            if dominates(&v, back) {
                s.deque.pop_back();
            } else {
                break;
            }
        }
        s.deque.push_back((s.added, v));
        s.added += 1;
    }

    /// Append-only windows: only the best value matters. `better(new, old)` is strict, so a
    /// NaN never replaces a value (nor a value a NaN that came first) and, for floats, the
    /// select below is a single `minsd`/`maxsd`.
    #[inline]
    fn insert(&mut self, v: V, better: impl Fn(&V, &V) -> bool) {
        // A select between the two candidates (not a conditional store) compiles branch-free
        // for plain values: a data-dependent branch here mispredicts.
        let cur = std::mem::replace(&mut self.best, v);
        if !better(&self.best, &cur) {
            self.best = cur;
        }
    }

    #[inline]
    fn current(&self) -> V {
        match self.sliding.as_ref().and_then(|s| s.deque.front()) {
            Some((_, v)) => v.clone(),
            None => self.best.clone(),
        }
    }

    #[inline]
    fn retract(&mut self) {
        if let Some(s) = self.sliding.as_mut() {
            if s.deque.front().is_some_and(|(seq, _)| *seq == s.retracted) {
                s.deque.pop_front();
            }
            s.retracted += 1;
        }
    }

    /// Merges (session windows, which never retract): keeps the better best value.
    fn merge(&mut self, from: &Self, better: impl Fn(&V, &V) -> bool) {
        self.insert(from.current(), better);
    }

    /// Holds only `v`, keeping the deque's allocation.
    fn reset(&mut self, v: V) {
        if let Some(s) = self.sliding.as_mut() {
            s.deque.clear();
            s.deque.push_back((0, v.clone()));
            s.added = 1;
            s.retracted = 0;
        }
        self.best = v;
    }
}

/// The smallest `f(event)`. See [`min`].
#[derive(Debug, Clone, Copy)]
pub struct Min<F>(F);

/// The largest `f(event)`. See [`max`].
#[derive(Debug, Clone, Copy)]
pub struct Max<F>(F);

/// The smallest value of `f(event)` in the window; exact under retraction. For floats in windows
/// that never retract, NaNs are ignored (as by `f64::min`) and a group whose values are all NaN
/// gives +∞, the value a plain `min` loop starts from. (Sliding windows avoid NaN inputs: there a
/// NaN is kept and compares unordered.)
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = min(|x: &i32| *x);
/// let mut s = spec.init(&5);
/// for x in [1, 3] { spec.add(&mut s, &x); }
/// spec.retract(&mut s, &5);
/// assert_eq!(spec.result(&s), 1);
/// spec.retract(&mut s, &1);
/// assert_eq!(spec.result(&s), 3);
/// ```
pub fn min<F>(f: F) -> Min<F> {
    Min(f)
}

/// The largest value of `f(event)` in the window; exact under retraction. NaNs: as for [`min`]
/// (an all-NaN group gives −∞).
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = max(|x: &i32| *x);
/// let mut s = spec.init(&5);
/// for x in [1, 3] { spec.add(&mut s, &x); }
/// spec.retract(&mut s, &5);
/// assert_eq!(spec.result(&s), 3);
/// ```
pub fn max<F>(f: F) -> Max<F> {
    Max(f)
}

#[inline]
fn below<V: PartialOrd>(new: &V, old: &V) -> bool {
    // Ties: the newer value replaces the older one, which leaves the window first.
    new <= old
}

#[inline]
fn above<V: PartialOrd>(new: &V, old: &V) -> bool {
    new >= old
}

#[inline]
fn less<V: PartialOrd>(new: &V, old: &V) -> bool {
    new < old
}

#[inline]
fn greater<V: PartialOrd>(new: &V, old: &V) -> bool {
    new > old
}

/// The value every other value of `V` replaces, for the numeric types: ±∞ for floats, the
/// type's largest (`min`) or smallest (`max`) value for integers; `None` for other types. The
/// test is on `TypeId`s, which the compiler folds to a constant for each `V`.
#[inline]
fn seed<V: Any + Clone>(for_min: bool) -> Option<V> {
    macro_rules! seeds {
        ($($t:ty: $lo:expr, $hi:expr;)*) => {$(
            let v: $t = if for_min { $hi } else { $lo };
            if let Some(v) = (&v as &dyn Any).downcast_ref::<V>() {
                return Some(v.clone());
            }
        )*};
    }
    seeds! {
        f64: f64::NEG_INFINITY, f64::INFINITY;
        f32: f32::NEG_INFINITY, f32::INFINITY;
        i64: i64::MIN, i64::MAX;
        i32: i32::MIN, i32::MAX;
        u64: u64::MIN, u64::MAX;
        u32: u32::MIN, u32::MAX;
        usize: usize::MIN, usize::MAX;
        isize: isize::MIN, isize::MAX;
        i128: i128::MIN, i128::MAX;
        u128: u128::MIN, u128::MAX;
        i16: i16::MIN, i16::MAX;
        u16: u16::MIN, u16::MAX;
        i8: i8::MIN, i8::MAX;
        u8: u8::MIN, u8::MAX;
    }
    None
}

/// A group's first value: itself, or the seed in place of a NaN (which later values replace,
/// as they would replace the seed).
#[inline]
fn first_value<V: Any + Clone + PartialOrd>(v: V, for_min: bool) -> V {
    if v.partial_cmp(&v).is_none()
        && let Some(seed) = seed::<V>(for_min)
    {
        return seed;
    }
    v
}

macro_rules! extremum {
    ($ty:ident, $dominates:ident, $better:ident, $for_min:expr) => {
        impl<T, V: PartialOrd + Clone + Any + crate::state::Checkpoint, F: Fn(&T) -> V> Aggregate<T>
            for $ty<F>
        {
            type State = Extremum<V>;
            type Output = V;
            #[inline]
            fn init(&self, first: &T) -> Extremum<V> {
                Extremum::new(first_value((self.0)(first), $for_min))
            }
            #[inline]
            fn empty(&self) -> Option<Extremum<V>> {
                seed::<V>($for_min).map(Extremum::new)
            }
            #[inline]
            fn clear(&self, s: &mut Extremum<V>) -> bool {
                match seed::<V>($for_min) {
                    Some(v) => {
                        s.reset(v);
                        true
                    }
                    None => false,
                }
            }
            /// Append-only states never hold a deque: the best value is the result.
            #[inline]
            fn finish(&self, s: &mut Extremum<V>) -> V {
                debug_assert!(s.sliding.is_none(), "finish on a retractable state");
                match seed::<V>($for_min) {
                    Some(v) => std::mem::replace(&mut s.best, v),
                    None => s.best.clone(),
                }
            }
            #[inline]
            fn add(&self, s: &mut Extremum<V>, item: &T) {
                s.add((self.0)(item), $dominates);
            }
            #[inline]
            fn insert(&self, s: &mut Extremum<V>, item: &T) {
                s.insert((self.0)(item), $better);
            }
            #[inline]
            fn retract(&self, s: &mut Extremum<V>, _: &T) {
                s.retract();
            }
            fn merge(&self, into: &mut Extremum<V>, from: &Extremum<V>) {
                into.merge(from, $better);
            }
            #[inline]
            fn result(&self, s: &Extremum<V>) -> V {
                s.current()
            }
            #[inline]
            fn reset(&self, s: &mut Extremum<V>, first: &T) {
                s.reset(first_value((self.0)(first), $for_min));
            }
        }
    };
}

extremum!(Min, below, less, true);
extremum!(Max, above, greater, false);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::tests::both;

    #[test]
    fn nan_is_ignored_and_an_all_nan_group_gives_the_seed() {
        let lo = min(|x: &f64| *x);
        let hi = max(|x: &f64| *x);
        for (xs, want_lo, want_hi) in [
            (vec![f64::NAN, 2.0, 1.0], 1.0, 2.0),
            (vec![3.0, f64::NAN, 4.0], 3.0, 4.0),
            (vec![f64::NAN, f64::NAN], f64::INFINITY, f64::NEG_INFINITY),
        ] {
            // From a first event (init), from the empty state, and after a reset: the same.
            let want = (want_lo, want_hi);
            assert_eq!(both(&(lo, hi), &xs), (want, want), "{xs:?}");
            let (mut c, mut d) = (lo.init(&-100.0), hi.init(&100.0));
            lo.reset(&mut c, &xs[0]);
            hi.reset(&mut d, &xs[0]);
            for x in &xs[1..] {
                lo.insert(&mut c, x);
                hi.insert(&mut d, x);
            }
            assert_eq!((lo.result(&c), hi.result(&d)), want, "{xs:?}");
        }
    }

    #[test]
    fn seeds_exist_for_numbers_only() {
        assert_eq!(min(|x: &i32| *x).empty().map(|s| s.best), Some(i32::MAX));
        assert_eq!(max(|x: &u8| *x).empty().map(|s| s.best), Some(0));
        assert!(min(|x: &String| x.clone()).empty().is_none());
        let spec = min(|x: &String| x.clone());
        let mut s = spec.init(&"b".to_string());
        spec.insert(&mut s, &"a".to_string());
        assert_eq!(spec.result(&s), "a");
    }

    #[test]
    fn insert_keeps_the_extreme_and_ignores_later_nan() {
        let spec = min(|x: &f64| *x);
        let mut s = spec.init(&3.0);
        for x in [f64::NAN, 1.0, 2.0] {
            spec.insert(&mut s, &x);
        }
        assert_eq!(spec.result(&s), 1.0);
        let spec = max(|x: &f64| *x);
        let mut s = spec.init(&3.0);
        for x in [f64::NAN, 7.0, 2.0] {
            spec.insert(&mut s, &x);
        }
        assert_eq!(spec.result(&s), 7.0);
    }

    #[test]
    fn reset_after_sliding_use_starts_over() {
        let spec = max(|x: &i32| *x);
        let mut s = spec.init(&9);
        spec.add(&mut s, &1);
        spec.retract(&mut s, &9);
        assert_eq!(spec.result(&s), 1);
        spec.reset(&mut s, &4);
        spec.add(&mut s, &2);
        assert_eq!(spec.result(&s), 4);
        spec.retract(&mut s, &4);
        assert_eq!(spec.result(&s), 2);
    }
}
