//! `map`: projects each event to a new value (one output per input).

use crate::stage::{Emit, Stage};

/// Applies `f` to every event. See [`map`].
#[derive(Debug, Clone)]
pub struct Map<F> {
    f: F,
}

/// Builds a [`Map`] stage: exactly one output per input, in order.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut m = map(|(a, b): (u32, u32)| a * b);
/// let mut out = Vec::new();
/// m.process((3, 4), &mut out);
/// assert_eq!(out, [12]);
/// ```
pub fn map<F>(f: F) -> Map<F> {
    Map { f }
}

impl<T, U, F> Stage<T> for Map<F>
where
    F: FnMut(T) -> U,
{
    type Out = U;
    const ONE_TO_ONE: bool = true;
    const PULLABLE: bool = true;

    #[inline(always)]
    fn pull<I: Iterator<Item = T>>(&mut self, items: I) -> impl Iterator<Item = U> {
        items.map(&mut self.f)
    }

    #[inline(always)]
    fn process<E: Emit<U>>(&mut self, item: T, out: &mut E) {
        out.emit((self.f)(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_output_per_input() {
        let mut m = map(|x: u8| u16::from(x) * 300);
        let mut out = Vec::new();
        for x in [1u8, 2, 3] {
            m.process(x, &mut out);
        }
        assert_eq!(out, vec![300u16, 600, 900]);
    }
}
