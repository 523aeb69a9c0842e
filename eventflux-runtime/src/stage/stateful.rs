//! `stateful`: user state plus a closure — the general-purpose operator.
//!
//! For each event, `f(&mut state, event)` may update the state and return `Some(output)` to emit
//! one event or `None` to emit nothing. An optional [`finish_with`](Stateful::finish_with) closure may emit one final event from
//! the state when the stream ends. State lives inside the stage, on the stage's thread: no locks.
//! It is saved in every checkpoint and restored on recovery, so it must implement
//! [`Checkpoint`]: numbers, strings, options, tuples and standard collections do, and a state
//! type of your own derives it (`#[derive(Checkpoint)]`).
//! For more than one output per event, or for watermark and barrier handling, implement
//! [`Stage`] directly.

use crate::stage::{Emit, Stage};
use crate::state::{Checkpoint, Restore, Snapshot, StateError};

/// A stage holding user state `S`. See [`stateful`].
#[derive(Debug, Clone)]
pub struct Stateful<S, F, G = NoFinish> {
    state: S,
    f: F,
    finish: G,
}

/// The end-of-stream action of a [`Stateful`] stage without one: emits nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFinish;

/// What a [`Stateful`] stage does at end of stream: a closure `FnMut(&mut S) -> Option<U>`, or
/// [`NoFinish`].
pub trait Finish<S, U> {
    /// Produces the final event, if any.
    fn finish(&mut self, state: &mut S) -> Option<U>;
}

impl<S, U> Finish<S, U> for NoFinish {
    fn finish(&mut self, _: &mut S) -> Option<U> {
        None
    }
}

impl<S, U, G> Finish<S, U> for G
where
    G: FnMut(&mut S) -> Option<U>,
{
    fn finish(&mut self, state: &mut S) -> Option<U> {
        self(state)
    }
}

/// Builds a [`Stateful`] stage from an initial state and a step closure.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// // Emit an event only when the value changes.
/// let mut s = stateful(None::<u32>, |last: &mut Option<u32>, x: u32| {
///     (last.replace(x) != Some(x)).then_some(x)
/// });
/// let mut out = Vec::new();
/// for x in [1, 1, 2, 2, 1] { s.process(x, &mut out); }
/// assert_eq!(out, [1, 2, 1]);
/// ```
pub fn stateful<S, F>(init: S, f: F) -> Stateful<S, F> {
    Stateful {
        state: init,
        f,
        finish: NoFinish,
    }
}

impl<S, F, G> Stateful<S, F, G> {
    /// Adds a closure run once at end of stream; its `Some` result is emitted last.
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    /// let mut s = stateful(0u64, |sum: &mut u64, x: u64| { *sum += x; None::<u64> })
    ///     .finish_with(|sum: &mut u64| Some(*sum));
    /// let mut out = Vec::new();
    /// for x in [1, 2, 3] { s.process(x, &mut out); }
    /// s.on_end(&mut out);
    /// assert_eq!(out, [6]);
    /// ```
    pub fn finish_with<H>(self, finish: H) -> Stateful<S, F, H> {
        Stateful {
            state: self.state,
            f: self.f,
            finish,
        }
    }

    /// The current state.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Mutable access to the state (for restoring it, say).
    pub fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }
}

/// The state is checkpointed (hence `S: Checkpoint`: derive it on your state type).
impl<S: Checkpoint, T, U, F, G> Stage<T> for Stateful<S, F, G>
where
    F: FnMut(&mut S, T) -> Option<U>,
    G: Finish<S, U>,
{
    type Out = U;

    #[inline(always)]
    fn process<E: Emit<U>>(&mut self, item: T, out: &mut E) {
        if let Some(x) = (self.f)(&mut self.state, item) {
            out.emit(x);
        }
    }

    fn on_end<E: Emit<U>>(&mut self, out: &mut E) {
        if let Some(x) = self.finish.finish(&mut self.state) {
            out.emit(x);
        }
    }

    fn snapshot(&self, snapshot: &mut Snapshot) -> Result<(), StateError> {
        snapshot.save(&self.state)
    }

    fn restore(&mut self, restore: &mut Restore) -> Result<(), StateError> {
        if let Some(state) = restore.load()? {
            self.state = state;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_max_emits_on_increase_and_final() {
        let mut s = stateful(0i64, |m: &mut i64, x: i64| {
            (x > *m).then(|| {
                *m = x;
                x
            })
        })
        .finish_with(|m: &mut i64| Some(-*m));
        let mut out = Vec::new();
        for x in [3, 1, 4, 1, 5] {
            s.process(x, &mut out);
        }
        s.on_end(&mut out);
        assert_eq!(out, vec![3, 4, 5, -5]);
        assert_eq!(*s.state(), 5);
    }
}
