//! `flat_map`: zero or more outputs per input.
//!
//! The closure returns anything iterable; its items are emitted in iteration order. Returning an
//! `Option`, an array or an iterator keeps the stage allocation-free; returning a `Vec` allocates
//! once per event, which is the closure's choice.

use crate::stage::{Emit, Stage};

/// Emits every item of `f(event)`. See [`flat_map`].
#[derive(Debug, Clone)]
pub struct FlatMap<F> {
    f: F,
}

/// Builds a [`FlatMap`] stage.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut s = flat_map(|x: u32| 0..x);
/// let mut out = Vec::new();
/// s.process(3, &mut out);
/// s.process(0, &mut out);
/// s.process(2, &mut out);
/// assert_eq!(out, [0, 1, 2, 0, 1]);
/// ```
pub fn flat_map<F>(f: F) -> FlatMap<F> {
    FlatMap { f }
}

impl<T, I, F> Stage<T> for FlatMap<F>
where
    F: FnMut(T) -> I,
    I: IntoIterator,
{
    type Out = I::Item;

    #[inline(always)]
    fn process<E: Emit<I::Item>>(&mut self, item: T, out: &mut E) {
        for x in (self.f)(item) {
            out.emit(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_output_filters_and_maps() {
        let mut s = flat_map(|x: i32| (x > 0).then_some(x * 2));
        let mut out = Vec::new();
        for x in [1, -1, 2] {
            s.process(x, &mut out);
        }
        assert_eq!(out, vec![2, 4]);
    }
}
