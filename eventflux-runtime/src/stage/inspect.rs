//! `inspect`: observes events without changing them (logging, debugging, side counters).

use crate::stage::{Emit, Stage};

/// Calls `f(&event)` and passes the event on. See [`inspect`].
#[derive(Debug, Clone)]
pub struct Inspect<F> {
    f: F,
}

/// Builds an [`Inspect`] stage.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut seen = 0;
/// let mut out = Vec::new();
/// {
///     let mut s = inspect(|_: &u8| seen += 1);
///     s.process(1, &mut out);
///     s.process(2, &mut out);
/// }
/// assert_eq!((seen, out), (2, vec![1, 2]));
/// ```
pub fn inspect<F>(f: F) -> Inspect<F> {
    Inspect { f }
}

impl<T, F> Stage<T> for Inspect<F>
where
    F: FnMut(&T),
{
    type Out = T;
    const ONE_TO_ONE: bool = true;
    const PULLABLE: bool = true;

    #[inline(always)]
    fn pull<I: Iterator<Item = T>>(&mut self, items: I) -> impl Iterator<Item = T> {
        items.inspect(&mut self.f)
    }

    #[inline(always)]
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        (self.f)(&item);
        out.emit(item);
    }
}
