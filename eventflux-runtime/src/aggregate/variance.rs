//! `variance(f)` and `stddev(f)`: population variance by Welford's method, with removal.

use crate::aggregate::Aggregate;

/// Welford state: count, mean, sum of squared deviations.
#[derive(Debug, Clone, Copy, Default, PartialEq, crate::state::Checkpoint)]
#[checkpoint(crate = crate)]
pub struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    #[inline]
    fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    #[inline]
    fn remove(&mut self, x: f64) {
        if self.n <= 1 {
            *self = Moments::default();
            return;
        }
        self.n -= 1;
        let d = x - self.mean;
        self.mean -= d / self.n as f64;
        self.m2 -= d * (x - self.mean);
        if self.m2 < 0.0 {
            self.m2 = 0.0;
        }
    }

    fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        self.mean += d * o.n as f64 / n as f64;
        self.m2 += o.m2 + d * d * self.n as f64 * o.n as f64 / n as f64;
        self.n = n;
    }

    /// Never called on an empty state (a window's groups hold at least one event).
    fn variance(&self) -> f64 {
        self.m2 / self.n.max(1) as f64
    }
}

/// Population variance of `f(event)`. See [`variance`].
#[derive(Debug, Clone, Copy)]
pub struct Variance<F>(F);

/// Population standard deviation of `f(event)`. See [`stddev`].
#[derive(Debug, Clone, Copy)]
pub struct StdDev<F>(F);

/// The population variance of `f(event)` as `f64`.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = variance(|x: &f64| *x);
/// let mut s = spec.init(&2.0);
/// for x in [4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] { spec.add(&mut s, &x); }
/// assert_eq!(spec.result(&s), 4.0);
/// ```
pub fn variance<F>(f: F) -> Variance<F> {
    Variance(f)
}

/// The population standard deviation of `f(event)` as `f64`.
///
/// ```
/// use eventflux_runtime::aggregate::*;
/// let spec = stddev(|x: &f64| *x);
/// let mut s = spec.init(&2.0);
/// for x in [4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] { spec.add(&mut s, &x); }
/// assert_eq!(spec.result(&s), 2.0);
/// ```
pub fn stddev<F>(f: F) -> StdDev<F> {
    StdDev(f)
}

macro_rules! moments {
    ($ty:ident, $finish:expr) => {
        impl<T, V: Into<f64>, F: Fn(&T) -> V> Aggregate<T> for $ty<F> {
            type State = Moments;
            type Output = f64;
            #[inline]
            fn init(&self, first: &T) -> Moments {
                let mut m = Moments::default();
                m.add((self.0)(first).into());
                m
            }
            #[inline]
            fn add(&self, s: &mut Moments, item: &T) {
                s.add((self.0)(item).into());
            }
            #[inline]
            fn retract(&self, s: &mut Moments, item: &T) {
                s.remove((self.0)(item).into());
            }
            fn merge(&self, into: &mut Moments, from: &Moments) {
                into.merge(from);
            }
            fn result(&self, s: &Moments) -> f64 {
                ($finish)(s.variance())
            }
            #[inline]
            fn empty(&self) -> Option<Moments> {
                Some(Moments::default())
            }
        }
    };
}

moments!(Variance, |v: f64| v);
moments!(StdDev, f64::sqrt);
