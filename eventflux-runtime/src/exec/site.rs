//! Which node a panic came from.
//!
//! A segment catches panics once, around its whole loop, so on its own it only knows the
//! segment. Two mechanisms name the node, chosen by cost:
//! - Calls that are not per event (stage hooks, a source's poll, a sink's calls) run inside
//!   [`in_node`], which arms a guard and *forgets* it on return: while a panic unwinds through
//!   it, the guard's destructor records the node's name — the innermost node wins, since
//!   unwinding drops the innermost guard first.
//! - A stage's per-event `process` is marked by [`enter`], one store of the stage's id into a
//!   thread-local (restored by the emitter after each downstream call returns), because a guard
//!   there adds landing pads that cost ~10 instructions per event in the fused loop.
//!
//! The segment then reads both with [`take`]: the guard's name first, else the marked stage.

use std::cell::{Cell, RefCell};

thread_local! {
    static PANICKED_IN: RefCell<Option<String>> = const { RefCell::new(None) };
    static CURRENT: Cell<u32> = const { Cell::new(0) };
}

/// Marks the stage with id `id` (from [`NodeIds`]) as the one running on this thread.
#[inline(always)]
pub(crate) fn enter(id: u32) {
    CURRENT.with(|c| c.set(id));
}

/// The names of the pipeline's named stages, by id (0 is "none").
#[derive(Debug, Default)]
pub(crate) struct NodeIds {
    names: std::cell::RefCell<Vec<String>>,
}

impl NodeIds {
    /// Registers `name`; returns its id.
    pub(crate) fn register(&self, name: &str) -> u32 {
        let mut names = self.names.borrow_mut();
        names.push(name.to_string());
        u32::try_from(names.len()).unwrap_or(0)
    }

    pub(crate) fn into_names(self) -> Vec<String> {
        self.names.into_inner()
    }
}

struct Guard<'a>(&'a str);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // Only reached while unwinding: `in_node` forgets the guard on return.
        let _ = PANICKED_IN.try_with(|slot| {
            if let Ok(mut slot) = slot.try_borrow_mut()
                && slot.is_none()
            {
                *slot = Some(self.0.to_string());
            }
        });
    }
}

/// Runs `f` as node `name`: if it panics, `name` is recorded for [`take`].
#[inline(always)]
pub(crate) fn in_node<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let guard = Guard(name);
    let r = f();
    std::mem::forget(guard);
    r
}

/// The innermost node a panic unwound through on this thread since the last call, if any.
pub(crate) fn take() -> Option<String> {
    PANICKED_IN
        .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten()
}

/// The node a panic came from: a guarded node if one recorded it, else the stage marked
/// running (looked up in `names`, the pipeline's stage names by id). Resets both.
pub(crate) fn take_with(names: &[String]) -> Option<String> {
    let id = CURRENT.try_with(|c| c.replace(0)).unwrap_or(0);
    take().or_else(|| {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        names.get(i).cloned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_node_is_recorded() {
        let _ = take();
        let r = std::panic::catch_unwind(|| {
            in_node("outer", || in_node("inner", || panic!("boom")));
        });
        assert!(r.is_err());
        assert_eq!(take().as_deref(), Some("inner"));
        assert_eq!(take(), None, "taken once");
        in_node("quiet", || ());
        assert_eq!(take(), None, "nothing recorded without a panic");
    }
}
