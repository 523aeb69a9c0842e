//! `filter`: keeps the events a predicate accepts.
//!
//! Emits each accepted event unchanged, in arrival order; rejected events are not counted as
//! drops (filtering is the stage's purpose). Stateless; hooks pass through.

use crate::stage::{Emit, Stage};

/// Keeps events for which `predicate` returns `true`. See [`filter`].
#[derive(Debug, Clone)]
pub struct Filter<F> {
    predicate: F,
}

/// Builds a [`Filter`] stage.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut f = filter(|x: &i32| *x > 0);
/// let mut out = Vec::new();
/// for x in [-1, 2, 0, 3] { f.process(x, &mut out); }
/// assert_eq!(out, [2, 3]);
/// ```
pub fn filter<F>(predicate: F) -> Filter<F> {
    Filter { predicate }
}

impl<T, F> Stage<T> for Filter<F>
where
    F: FnMut(&T) -> bool,
{
    type Out = T;
    const PULLABLE: bool = true;

    #[inline(always)]
    fn pull<I: Iterator<Item = T>>(&mut self, items: I) -> impl Iterator<Item = T> {
        items.filter(|item| (self.predicate)(item))
    }

    #[inline(always)]
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        if (self.predicate)(&item) {
            out.emit(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_only_accepted() {
        let mut f = filter(|x: &u32| x.is_multiple_of(3));
        let mut out = Vec::new();
        for x in 0..10 {
            f.process(x, &mut out);
        }
        assert_eq!(out, vec![0, 3, 6, 9]);
    }
}
