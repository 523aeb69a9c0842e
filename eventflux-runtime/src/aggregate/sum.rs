//! `sum(f)` and `avg(f)`: exact for integers, compensated for floats.

use crate::aggregate::Aggregate;

/// Values that can be summed: integers into a checked `i128`, floats with
/// compensated summation (so adding then retracting a large value does not leave drift behind).
pub trait SumValue: Copy {
    /// The running state.
    type Acc: Copy + Default + std::fmt::Debug;
    /// The sum's type.
    type Output: Copy + std::fmt::Debug;
    /// Adds `self`.
    fn add_to(self, acc: &mut Self::Acc);
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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
            fn add_to(self, acc: &mut Compensated) {
                acc.add(f64::from(self));
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

/// Sums `f(event)`. See [`sum`].
#[derive(Debug, Clone, Copy)]
pub struct Sum<F>(F);

/// The sum of `f(event)`: `i128` for integer values, `f64` for floats.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = sum(|x: &u64| *x);
/// let mut s = spec.init();
/// spec.add(&mut s, &u64::MAX);
/// spec.add(&mut s, &u64::MAX);
/// assert_eq!(spec.result(&s), 2 * u64::MAX as i128); // exact, no overflow, no f64
/// ```
pub fn sum<F>(f: F) -> Sum<F> {
    Sum(f)
}

impl<T, V: SumValue, F: Fn(&T) -> V> Aggregate<T> for Sum<F> {
    type State = V::Acc;
    type Output = V::Output;
    #[inline]
    fn init(&self) -> V::Acc {
        V::Acc::default()
    }
    #[inline]
    fn add(&self, s: &mut V::Acc, item: &T) {
        (self.0)(item).add_to(s);
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
}

/// Averages `f(event)`. See [`avg`].
#[derive(Debug, Clone, Copy)]
pub struct Avg<F>(F);

/// The mean of `f(event)`, `None` for an empty window.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = avg(|x: &i32| *x);
/// let mut s = spec.init();
/// assert_eq!(spec.result(&s), None);
/// for x in [1, 2, 4] { spec.add(&mut s, &x); }
/// assert_eq!(spec.result(&s), Some(7.0 / 3.0));
/// ```
pub fn avg<F>(f: F) -> Avg<F> {
    Avg(f)
}

impl<T, V: SumValue, F: Fn(&T) -> V> Aggregate<T> for Avg<F> {
    type State = (V::Acc, u64);
    type Output = Option<f64>;
    #[inline]
    fn init(&self) -> Self::State {
        (V::Acc::default(), 0)
    }
    #[inline]
    fn add(&self, s: &mut Self::State, item: &T) {
        (self.0)(item).add_to(&mut s.0);
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
    fn result(&self, s: &Self::State) -> Option<f64> {
        (s.1 > 0).then(|| V::total_f64(&s.0) / s.1 as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensation_survives_add_and_retract_of_large_values() {
        let spec = sum(|x: &f64| *x);
        let mut s = spec.init();
        spec.add(&mut s, &0.1);
        spec.add(&mut s, &1e17);
        spec.add(&mut s, &0.2);
        spec.retract(&mut s, &1e17);
        assert!((spec.result(&s) - 0.3).abs() < 1e-12, "{}", spec.result(&s));
    }

    #[test]
    fn integer_sums_are_exact_at_the_extremes() {
        let spec = sum(|x: &i64| *x);
        let mut s = spec.init();
        for x in [i64::MIN, i64::MIN, i64::MAX] {
            spec.add(&mut s, &x);
        }
        assert_eq!(spec.result(&s), 2 * i64::MIN as i128 + i64::MAX as i128);
    }
}
