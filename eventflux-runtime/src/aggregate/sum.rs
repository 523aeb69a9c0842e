//! `sum(f)` and `avg(f)`: exact for integers; for floats, a plain `+=` where nothing is ever
//! retracted (the loop a user would write, error at most `n·ε·Σ|x|`) and compensated summation
//! where values are retracted (sliding windows: adding then removing a large value must not leave
//! drift behind), or everywhere with [`Sum::compensated`].

use crate::aggregate::Aggregate;

/// Values that can be summed: integers into an `i128`, floats with a plain or a compensated sum
/// (so adding then retracting a large value does not leave drift behind).
pub trait SumValue: Copy {
    /// The running state.
    type Acc: Copy + Default + std::fmt::Debug + crate::state::Checkpoint;
    /// The sum's type.
    type Output: Copy + std::fmt::Debug;
    /// The sum of `self` alone.
    fn start(self) -> Self::Acc {
        let mut acc = Self::Acc::default();
        self.add_to(&mut acc);
        acc
    }
    /// Adds `self`, exactly or compensated (values may be retracted later).
    fn add_to(self, acc: &mut Self::Acc);
    /// Adds `self` to a sum that is never retracted from: floats use a plain `+=`.
    #[inline]
    fn insert_to(self, acc: &mut Self::Acc) {
        self.add_to(acc);
    }
    /// Subtracts `self`.
    fn sub_from(self, acc: &mut Self::Acc);
    /// Adds another accumulator.
    fn merge(into: &mut Self::Acc, from: &Self::Acc);
    /// The sum.
    fn total(acc: &Self::Acc) -> Self::Output;
    /// The sum as `f64` (for averages).
    fn total_f64(acc: &Self::Acc) -> f64;
}

macro_rules! int_sum {
    ($($t:ty),*) => {$(
        impl SumValue for $t {
            type Acc = i128;
            type Output = i128;
            #[inline]
            fn start(self) -> i128 {
                self as i128
            }
            #[inline]
            fn add_to(self, acc: &mut i128) {
                // i128 holds the sum of 2^64 values of any 64-bit type: it cannot overflow here.
                *acc += self as i128;
            }
            #[inline]
            fn sub_from(self, acc: &mut i128) {
                *acc -= self as i128;
            }
            fn merge(into: &mut i128, from: &i128) {
                *into = into.saturating_add(*from);
            }
            #[inline]
            fn total(acc: &i128) -> i128 {
                *acc
            }
            #[inline]
            fn total_f64(acc: &i128) -> f64 {
                *acc as f64
            }
        }
    )*};
}

int_sum!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

/// A compensated sum: every addition's exact rounding error (Knuth's branch-free TwoSum) is
/// accumulated separately, as in Neumaier's algorithm, and added back in the result.
#[derive(Debug, Clone, Copy, Default, PartialEq, crate::state::Checkpoint)]
#[checkpoint(crate = crate)]
pub struct Compensated {
    sum: f64,
    comp: f64,
}

impl Compensated {
    #[inline]
    fn add(&mut self, x: f64) {
        // Knuth's TwoSum: the exact rounding error of `sum + x`, without a branch.
        let t = self.sum + x;
        let z = t - self.sum;
        self.comp += (self.sum - (t - z)) + (x - z);
        self.sum = t;
    }

    #[inline]
    fn value(&self) -> f64 {
        self.sum + self.comp
    }
}

macro_rules! float_sum {
    ($($t:ty),*) => {$(
        impl SumValue for $t {
            type Acc = Compensated;
            type Output = f64;
            #[inline]
            fn start(self) -> Compensated {
                Compensated { sum: f64::from(self), comp: 0.0 }
            }
            #[inline]
            fn add_to(self, acc: &mut Compensated) {
                acc.add(f64::from(self));
            }
            #[inline]
            fn insert_to(self, acc: &mut Compensated) {
                acc.sum += f64::from(self);
            }
            #[inline]
            fn sub_from(self, acc: &mut Compensated) {
                acc.add(-f64::from(self));
            }
            fn merge(into: &mut Compensated, from: &Compensated) {
                into.add(from.sum);
                into.add(from.comp);
            }
            #[inline]
            fn total(acc: &Compensated) -> f64 {
                acc.value()
            }
            #[inline]
            fn total_f64(acc: &Compensated) -> f64 {
                acc.value()
            }
        }
    )*};
}

float_sum!(f32, f64);

/// Sums `f(event)`. See [`sum`]. `EXACT`: compensated float summation in every window (see
/// [`compensated`](Sum::compensated)).
#[derive(Debug, Clone, Copy)]
pub struct Sum<F, const EXACT: bool = false>(F);

impl<F> Sum<F> {
    /// Compensated float summation in every window, not only in sliding ones: for long
    /// windows of values of very different magnitudes, where a plain `+=` would lose low
    /// digits. Costs about five floating-point operations per event instead of one.
    ///
    /// ```
    /// use eventflux_runtime::aggregate::*;
    /// let spec = sum(|x: &f64| *x).compensated();
    /// let mut s = spec.init(&1e16);
    /// for x in [1.0, 1.0, -1e16] { spec.insert(&mut s, &x); }
    /// assert_eq!(spec.result(&s), 2.0);
    /// let plain = sum(|x: &f64| *x);
    /// let mut s = plain.init(&1e16);
    /// for x in [1.0, 1.0, -1e16] { plain.insert(&mut s, &x); }
    /// assert_eq!(plain.result(&s), 0.0); // 1e16 + 1 rounds back to 1e16, twice
    /// ```
    pub fn compensated(self) -> Sum<F, true> {
        Sum(self.0)
    }
}

/// The sum of `f(event)`: `i128` for integer values, `f64` for floats (plain `+=` in windows
/// that never retract, compensated in sliding ones; see [`Sum::compensated`]).
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = sum(|x: &u64| *x);
/// let mut s = spec.init(&u64::MAX);
/// spec.add(&mut s, &u64::MAX);
/// assert_eq!(spec.result(&s), 2 * u64::MAX as i128); // exact, no overflow, no f64
/// ```
pub fn sum<F>(f: F) -> Sum<F> {
    Sum(f)
}

impl<T, V: SumValue, F: Fn(&T) -> V, const EXACT: bool> Aggregate<T> for Sum<F, EXACT> {
    type State = V::Acc;
    type Output = V::Output;
    #[inline]
    fn init(&self, first: &T) -> V::Acc {
        (self.0)(first).start()
    }
    #[inline]
    fn add(&self, s: &mut V::Acc, item: &T) {
        (self.0)(item).add_to(s);
    }
    #[inline]
    fn insert(&self, s: &mut V::Acc, item: &T) {
        if EXACT {
            (self.0)(item).add_to(s);
        } else {
            (self.0)(item).insert_to(s);
        }
    }
    #[inline]
    fn retract(&self, s: &mut V::Acc, item: &T) {
        (self.0)(item).sub_from(s);
    }
    fn merge(&self, into: &mut V::Acc, from: &V::Acc) {
        V::merge(into, from);
    }
    #[inline]
    fn result(&self, s: &V::Acc) -> V::Output {
        V::total(s)
    }
    #[inline]
    fn empty(&self) -> Option<V::Acc> {
        Some(V::Acc::default())
    }
}

/// Averages `f(event)`. See [`avg`]. `EXACT`: as for [`Sum`].
#[derive(Debug, Clone, Copy)]
pub struct Avg<F, const EXACT: bool = false>(F);

impl<F> Avg<F> {
    /// Compensated float summation in every window (see [`Sum::compensated`]).
    ///
    /// ```
    /// use eventflux_runtime::aggregate::*;
    /// let spec = avg(|x: &f64| *x).compensated();
    /// let mut s = spec.init(&1e16);
    /// for x in [1.0, 1.0, -1e16] { spec.insert(&mut s, &x); }
    /// assert_eq!(spec.result(&s), 0.5);
    /// ```
    pub fn compensated(self) -> Avg<F, true> {
        Avg(self.0)
    }
}

/// The mean of `f(event)` (the sum as [`sum`] computes it, divided by the count).
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = avg(|x: &i32| *x);
/// let mut s = spec.init(&1);
/// for x in [2, 4] { spec.add(&mut s, &x); }
/// assert_eq!(spec.result(&s), 7.0 / 3.0);
/// ```
pub fn avg<F>(f: F) -> Avg<F> {
    Avg(f)
}

impl<T, V: SumValue, F: Fn(&T) -> V, const EXACT: bool> Aggregate<T> for Avg<F, EXACT> {
    type State = (V::Acc, u64);
    type Output = f64;
    #[inline]
    fn init(&self, first: &T) -> Self::State {
        ((self.0)(first).start(), 1)
    }
    #[inline]
    fn add(&self, s: &mut Self::State, item: &T) {
        (self.0)(item).add_to(&mut s.0);
        s.1 += 1;
    }
    #[inline]
    fn insert(&self, s: &mut Self::State, item: &T) {
        self.insert_counted(s, item);
        s.1 += 1;
    }
    #[inline]
    fn retract(&self, s: &mut Self::State, item: &T) {
        (self.0)(item).sub_from(&mut s.0);
        s.1 = s.1.saturating_sub(1);
    }
    fn merge(&self, into: &mut Self::State, from: &Self::State) {
        V::merge(&mut into.0, &from.0);
        into.1 += from.1;
    }
    #[inline]
    fn result(&self, s: &Self::State) -> f64 {
        V::total_f64(&s.0) / s.1 as f64
    }
    #[inline]
    fn empty(&self) -> Option<Self::State> {
        Some((V::Acc::default(), 0))
    }
    /// The window counts: only the sum is kept (the state's count stays 0).
    #[inline]
    fn insert_counted(&self, s: &mut Self::State, item: &T) {
        if EXACT {
            (self.0)(item).add_to(&mut s.0);
        } else {
            (self.0)(item).insert_to(&mut s.0);
        }
    }
    #[inline]
    fn finish_counted(&self, s: &mut Self::State, events: u64) -> f64 {
        let mean = V::total_f64(&s.0) / events as f64;
        *s = (V::Acc::default(), 0);
        mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensation_survives_add_and_retract_of_large_values() {
        let spec = sum(|x: &f64| *x);
        let mut s = spec.init(&0.1);
        spec.add(&mut s, &1e17);
        spec.add(&mut s, &0.2);
        spec.retract(&mut s, &1e17);
        assert!((spec.result(&s) - 0.3).abs() < 1e-12, "{}", spec.result(&s));
    }

    #[test]
    fn integer_sums_are_exact_at_the_extremes() {
        let spec = sum(|x: &i64| *x);
        let mut s = spec.init(&i64::MIN);
        for x in [i64::MIN, i64::MAX] {
            spec.add(&mut s, &x);
        }
        assert_eq!(spec.result(&s), 2 * i64::MIN as i128 + i64::MAX as i128);
    }
}
