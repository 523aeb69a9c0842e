//! Aggregates: incremental functions over the events of a window (per group).
//!
//! An [`Aggregate`] is a *specification* (which field, which function) that creates per-group
//! *state* from a group's first event ([`init`](Aggregate::init)) and updates it:
//! [`insert`](Aggregate::insert) an event into a window that never retracts,
//! [`add`](Aggregate::add) one to a sliding window and [`retract`](Aggregate::retract) one that
//! left it, [`merge`](Aggregate::merge) two states (session windows),
//! [`result`](Aggregate::result). A state never becomes empty (a group whose last event leaves
//! is released), so results are plain values. Windows retract events in the order they were
//! added (first in, first out), which is what lets `min`/`max` retract in O(1) amortised with a
//! monotonic deque.
//!
//! Several aggregates at once are a tuple: `(count(), sum(|t: &Trade| t.volume), max(...))`
//! yields a tuple of results.
//!
//! | aggregate | result | notes |
//! |---|---|---|
//! | [`count()`] | `u64` | |
//! | [`sum(f)`](sum()) | `i128` for integers, `f64` for floats | integers widened to `i128` (never through `f64`); floats: plain `+=` in windows that never retract, compensated (TwoSum error terms) in sliding windows; [`sum(f).compensated()`](Sum::compensated) everywhere |
//! | [`avg(f)`](avg()) | `f64` | the sum as above, divided by the count |
//! | [`min(f)`](min()) / [`max(f)`](max()) | `V` | one value when never retracted; a monotonic deque in sliding windows: exact under retraction |
//! | [`variance(f)`](variance()) / [`stddev(f)`](stddev()) | `f64` | population variance (Welford, with removal) |
//! | [`distinct_count(f)`](distinct_count()) | `u64` | counted multiset (`BTreeMap`) |
//! | [`first(f)`](first()) / [`last(f)`](last()) | `V` | oldest / newest value in the window |
//!
//! ```
//! use eventflux_runtime::aggregate::*;
//! let spec = (count(), sum(|x: &i64| *x), max(|x: &i64| *x));
//! let mut s = spec.init(&3);
//! for x in [9i64, 4] { spec.add(&mut s, &x); }
//! spec.retract(&mut s, &3);
//! assert_eq!(spec.result(&s), (2, 13, 9));
//! ```

mod count;
mod distinct;
mod extrema;
mod first_last;
mod sum;
mod variance;

pub use count::{Count, count};
pub use distinct::{DistinctCount, distinct_count};
pub use extrema::{Max, Min, max, min};
pub use first_last::{First, Last, first, last};
pub use sum::{Avg, Sum, SumValue, avg, sum};
pub use variance::{StdDev, Variance, stddev, variance};

/// An incremental aggregate over events of type `T`. See the [module docs](self).
///
/// A state always holds at least one event: windows create a group's state from its first
/// event ([`init`](Aggregate::init)) and release the group, rather than retracting, when its
/// last event leaves. That is why `min`, `max`, `avg`, `first` and `last` of a group are plain
/// values, not `Option`s.
///
/// Windows that never retract (batch, tumbling, sliding event-time and session windows) call
/// [`insert`](Aggregate::insert); sliding windows (`length`, `time`) call
/// [`add`](Aggregate::add) and [`retract`](Aggregate::retract). An aggregate may keep less
/// state, or cheaper state, on the insert-only path (`sum` adds with a plain `+=` there and
/// with compensation on the retracting path; `min`/`max` keep one value there and a monotonic
/// deque on the retracting path).
///
/// A user-defined aggregate — the sum of squares of a window:
///
/// ```
/// use eventflux_runtime::aggregate::Aggregate;
///
/// struct SumOfSquares;
/// impl Aggregate<i64> for SumOfSquares {
///     type State = i128;
///     type Output = i128;
///     fn init(&self, x: &i64) -> i128 { i128::from(*x) * i128::from(*x) }
///     fn add(&self, s: &mut i128, x: &i64) { *s += i128::from(*x) * i128::from(*x); }
///     fn retract(&self, s: &mut i128, x: &i64) { *s -= i128::from(*x) * i128::from(*x); }
///     fn merge(&self, into: &mut i128, from: &i128) { *into += *from; }
///     fn result(&self, s: &i128) -> i128 { *s }
/// }
/// let mut s = SumOfSquares.init(&2);
/// for x in [-3, 4] { SumOfSquares.add(&mut s, &x); }
/// SumOfSquares.retract(&mut s, &2);
/// assert_eq!(SumOfSquares.result(&s), 25);
/// ```
pub trait Aggregate<T> {
    /// Per-group state: saved in checkpoints, so it implements
    /// [`Checkpoint`](crate::state::Checkpoint) (numbers, tuples and standard collections do;
    /// derive it on a state type of your own).
    type State: crate::state::Checkpoint;
    /// The result.
    type Output;
    /// The state of a window holding only `first`.
    fn init(&self, first: &T) -> Self::State;
    /// Adds one event to a window that may later retract it (sliding windows).
    fn add(&self, state: &mut Self::State, item: &T);

    /// Adds one event to a window that will never retract (batch, tumbling, sliding event-time
    /// and session windows): an aggregate may keep less state, or cheaper state, then.
    /// Defaults to [`add`](Aggregate::add).
    #[inline]
    fn insert(&self, state: &mut Self::State, item: &T) {
        self.add(state, item);
    }
    /// Removes the oldest event still in `state` (windows retract in insertion order, and never
    /// the only event left: a group whose last event leaves is released instead).
    fn retract(&self, state: &mut Self::State, item: &T);
    /// Folds `from` (a later run of events) into `into` (used when session windows merge).
    fn merge(&self, into: &mut Self::State, from: &Self::State);
    /// The current result.
    fn result(&self, state: &Self::State) -> Self::Output;
    /// Makes `state` (of a released group) hold only `first`, keeping its allocations for reuse.
    #[inline]
    fn reset(&self, state: &mut Self::State, first: &T) {
        *state = self.init(first);
    }
    /// The state of a group that has no event yet, for aggregates that have one (`count` 0,
    /// `sum` 0, `min` of numbers +∞, …), such that [`insert`](Aggregate::insert)ing `first` into
    /// it gives [`init(first)`](Aggregate::init). Windows grouped by a small index
    /// ([`group_by_index`](crate::window)) then keep every group's state ready and take a
    /// group's first event like any other, without a start. `None` (the default): the aggregate
    /// needs a first event.
    ///
    /// ```
    /// use eventflux_runtime::aggregate::*;
    /// let spec = (count(), min(|x: &f64| *x));
    /// let mut s = spec.empty().expect("count and min of f64 both have an empty state");
    /// spec.insert(&mut s, &2.5);
    /// assert_eq!(spec.result(&s), (1, 2.5));
    /// assert!(first(|x: &f64| *x).empty().is_none());
    /// ```
    #[inline]
    fn empty(&self) -> Option<Self::State> {
        None
    }
    /// Makes `state` (of a released group) [`empty`](Aggregate::empty) again, in place and
    /// keeping its allocations; false (and `state` unchanged) if the aggregate has no empty
    /// state. The default assigns `empty()`; aggregates whose state owns memory override it.
    ///
    /// ```
    /// use eventflux_runtime::aggregate::*;
    /// let spec = (count(), max(|x: &i32| *x));
    /// let mut s = spec.init(&4);
    /// assert!(spec.clear(&mut s));
    /// spec.insert(&mut s, &-2);
    /// assert_eq!(spec.result(&s), (1, -2));
    /// ```
    #[inline]
    fn clear(&self, state: &mut Self::State) -> bool {
        match self.empty() {
            Some(empty) => {
                *state = empty;
                true
            }
            None => false,
        }
    }
    /// The result of a state built by [`init`](Aggregate::init),
    /// [`insert`](Aggregate::insert) and [`merge`](Aggregate::merge) alone — a window that
    /// never retracts, closing — leaving the state [`clear`](Aggregate::clear)ed when the
    /// aggregate has an empty state. The default is `result` then `clear`; an aggregate can do
    /// both in one pass (`min`/`max` swap the seed in).
    ///
    /// ```
    /// use eventflux_runtime::aggregate::*;
    /// let spec = (count(), min(|x: &i32| *x));
    /// let mut s = spec.init(&4);
    /// spec.insert(&mut s, &1);
    /// assert_eq!(spec.finish(&mut s), (2, 1));
    /// assert_eq!(spec.result(&s), (0, i32::MAX), "cleared: the empty state");
    /// ```
    #[inline]
    fn finish(&self, state: &mut Self::State) -> Self::Output {
        let result = self.result(state);
        self.clear(state);
        result
    }
    /// [`insert`](Aggregate::insert) into a state whose group's events the window counts for
    /// it (a group of a ready table, started [`empty`](Aggregate::empty)): an aggregate that
    /// needs nothing but the count (`count`, `avg`'s divisor) skips keeping its own. The
    /// default is `insert`. Such a state is only ever read through
    /// [`finish_counted`](Aggregate::finish_counted).
    ///
    /// ```
    /// use eventflux_runtime::aggregate::*;
    /// let spec = (count(), avg(|x: &f64| *x));
    /// let mut s = spec.empty().expect("both have an empty state");
    /// for x in [1.0, 2.0, 6.0] { spec.insert_counted(&mut s, &x); }
    /// assert_eq!(spec.finish_counted(&mut s, 3), (3, 3.0));
    /// ```
    #[inline]
    fn insert_counted(&self, state: &mut Self::State, item: &T) {
        self.insert(state, item);
    }
    /// [`finish`](Aggregate::finish) for a state built from [`empty`](Aggregate::empty) by
    /// `events` calls of [`insert_counted`](Aggregate::insert_counted). The default is
    /// `finish`.
    #[inline]
    fn finish_counted(&self, state: &mut Self::State, events: u64) -> Self::Output {
        let _ = events;
        self.finish(state)
    }
}

macro_rules! tuple_aggregate {
    ($($name:ident $idx:tt),+) => {
        impl<T, $($name: Aggregate<T>),+> Aggregate<T> for ($($name,)+) {
            type State = ($($name::State,)+);
            type Output = ($($name::Output,)+);
            #[inline]
            fn init(&self, first: &T) -> Self::State {
                ($(self.$idx.init(first),)+)
            }
            #[inline]
            fn add(&self, state: &mut Self::State, item: &T) {
                $(self.$idx.add(&mut state.$idx, item);)+
            }
            #[inline]
            fn insert(&self, state: &mut Self::State, item: &T) {
                $(self.$idx.insert(&mut state.$idx, item);)+
            }
            #[inline]
            fn retract(&self, state: &mut Self::State, item: &T) {
                $(self.$idx.retract(&mut state.$idx, item);)+
            }
            fn merge(&self, into: &mut Self::State, from: &Self::State) {
                $(self.$idx.merge(&mut into.$idx, &from.$idx);)+
            }
            #[inline]
            fn result(&self, state: &Self::State) -> Self::Output {
                ($(self.$idx.result(&state.$idx),)+)
            }
            #[inline]
            fn reset(&self, state: &mut Self::State, first: &T) {
                $(self.$idx.reset(&mut state.$idx, first);)+
            }
            #[inline]
            fn empty(&self) -> Option<Self::State> {
                Some(($(self.$idx.empty()?,)+))
            }
            #[inline]
            fn finish(&self, state: &mut Self::State) -> Self::Output {
                // All or nothing, as `clear`.
                if self.empty().is_none() {
                    return self.result(state);
                }
                ($(self.$idx.finish(&mut state.$idx),)+)
            }
            #[inline]
            fn insert_counted(&self, state: &mut Self::State, item: &T) {
                $(self.$idx.insert_counted(&mut state.$idx, item);)+
            }
            #[inline]
            fn finish_counted(&self, state: &mut Self::State, events: u64) -> Self::Output {
                ($(self.$idx.finish_counted(&mut state.$idx, events),)+)
            }
            #[inline]
            fn clear(&self, state: &mut Self::State) -> bool {
                // All or nothing: members are cleared only when every one can be.
                if self.empty().is_none() {
                    return false;
                }
                $(self.$idx.clear(&mut state.$idx);)+
                true
            }
        }
    };
}

tuple_aggregate!(A 0);
tuple_aggregate!(A 0, B 1);
tuple_aggregate!(A 0, B 1, C 2);
tuple_aggregate!(A 0, B 1, C 2, D 3);
tuple_aggregate!(A 0, B 1, C 2, D 3, E 4);
tuple_aggregate!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_aggregate!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_aggregate!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_aggregate!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_aggregate!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);

#[cfg(test)]
mod tests {
    use super::*;

    /// The results of folding `xs` from `init(xs[0])` and from `empty()`, per aggregate.
    pub(crate) fn both<A: Aggregate<f64>>(spec: &A, xs: &[f64]) -> (A::Output, A::Output) {
        let mut from_first = spec.init(&xs[0]);
        let mut from_empty = spec.empty().expect("this aggregate has an empty state");
        spec.insert(&mut from_empty, &xs[0]);
        for x in &xs[1..] {
            spec.insert(&mut from_first, x);
            spec.insert(&mut from_empty, x);
        }
        (spec.result(&from_first), spec.result(&from_empty))
    }

    #[test]
    fn empty_then_first_equals_init_for_every_built_in_that_has_one() {
        for xs in [&[3.0][..], &[2.5, -1.0, 7.0, 7.0], &[-0.5, 1e300, -1e300]] {
            let spec = (
                count(),
                sum(|x: &f64| *x),
                avg(|x: &f64| *x),
                min(|x: &f64| *x),
                max(|x: &f64| *x),
                variance(|x: &f64| *x),
                stddev(|x: &f64| *x),
                sum(|x: &f64| *x).compensated(),
                min(|x: &f64| *x as i64),
                max(|x: &f64| *x as u32),
            );
            let (a, b) = both(&spec, xs);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{xs:?}");
        }
        let none: [Option<()>; 3] = [
            first(|x: &f64| *x).empty().map(|_| ()),
            last(|x: &f64| *x).empty().map(|_| ()),
            distinct_count(|x: &f64| *x as i64).empty().map(|_| ()),
        ];
        assert_eq!(none, [None, None, None], "these need a first event");
        assert!((count(), first(|x: &f64| *x)).empty().is_none());
    }

    /// `finish` gives `result` and leaves the empty state (the next window starts from it as
    /// from `empty()`); an aggregate, or a tuple with a member, without an empty state is left
    /// as it was.
    #[test]
    fn finish_gives_the_result_and_leaves_the_state_empty() {
        let xs = [2.5, -1.0, 7.0, f64::NAN, 4.0];
        fn check<A: Aggregate<f64>>(spec: A, xs: &[f64], empties: bool)
        where
            A::Output: std::fmt::Debug,
        {
            let mut s = spec.init(&xs[0]);
            for x in &xs[1..] {
                spec.insert(&mut s, x);
            }
            let before = format!("{:?}", spec.result(&s));
            assert_eq!(format!("{:?}", spec.finish(&mut s)), before);
            let after = format!("{:?}", spec.result(&s));
            match spec.empty() {
                Some(e) => {
                    assert!(empties);
                    assert_eq!(after, format!("{:?}", spec.result(&e)));
                    // And it takes the next window's events as `init` would.
                    spec.insert(&mut s, &xs[1]);
                    spec.insert(&mut s, &xs[2]);
                    let mut fresh = spec.init(&xs[1]);
                    spec.insert(&mut fresh, &xs[2]);
                    assert_eq!(
                        format!("{:?}", spec.result(&s)),
                        format!("{:?}", spec.result(&fresh))
                    );
                }
                None => {
                    assert!(!empties);
                    assert_eq!(after, before, "no empty state: left as it was");
                }
            }
        }
        check(
            (
                count(),
                sum(|x: &f64| *x),
                avg(|x: &f64| *x),
                min(|x: &f64| *x),
                max(|x: &f64| *x),
                variance(|x: &f64| *x),
                sum(|x: &f64| *x).compensated(),
                min(|x: &f64| *x as i64),
                max(|x: &f64| *x as u32),
            ),
            &xs,
            true,
        );
        check(min(|x: &f64| *x), &xs, true);
        check(first(|x: &f64| *x), &xs, false);
        check(distinct_count(|x: &f64| *x as i64), &xs, false);
        check((count(), last(|x: &f64| *x)), &xs, false);
    }

    /// A state the window counts for (`insert_counted` from `empty`, then `finish_counted`
    /// with the number of events) gives what `insert` and `finish` give, for every built-in
    /// with an empty state, window after window.
    #[test]
    fn counted_states_give_what_counting_states_give() {
        let spec = (
            count(),
            sum(|x: &f64| *x),
            avg(|x: &f64| *x),
            min(|x: &f64| *x),
            max(|x: &f64| *x),
            variance(|x: &f64| *x),
            avg(|x: &f64| *x).compensated(),
            avg(|x: &f64| *x as i64),
        );
        let mut counted = spec.empty().expect("every member has an empty state");
        let mut plain = spec.empty().expect("every member has an empty state");
        for window in [&[2.5, -1.0, 7.0][..], &[4.0], &[1e300, -1e300, 3.0, 0.5]] {
            for x in window {
                spec.insert_counted(&mut counted, x);
                spec.insert(&mut plain, x);
            }
            let got = spec.finish_counted(&mut counted, window.len() as u64);
            let want = spec.finish(&mut plain);
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{window:?}");
        }
    }
}
