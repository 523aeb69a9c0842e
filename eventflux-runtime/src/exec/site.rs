//! Which node a panic came from.
//!
//! A segment catches panics once, around its whole loop, so on its own it only knows the
//! segment. Guards name the node: a guard is armed before a node's code runs and *forgotten*
//! when it returns, so on the normal path no code runs for it; only a panic unwinding through it
//! drops it, and its destructor records the node — the innermost one wins, since unwinding drops
//! the innermost guard first.
//! - Calls that are not per event (stage hooks, a source's `stop` and `wait`, a sink's calls
//!   other than `send`) run inside [`in_node`], whose guard records the node's name. A source's
//!   `poll` has no guard (its landing pad would span the whole fused loop): a panic no other
//!   guard claims is the source's, and a source segment is named after its source.
//! - A stage's per-event `process` is guarded by a [`StageGuard`] holding only the stage's id
//!   (cheaper to keep live than a name), looked up in the pipeline's names after the catch.
//! - A sink's per-event `send` is guarded by a zero-sized [`SinkGuard`]; which sink it was is
//!   decided after the catch from the sinks opened on the panicking thread.
//!
//! The segment then reads the innermost with [`take`] and names it (`exec::panicked`).

use std::cell::RefCell;
use std::collections::BTreeMap;

/// The innermost node a panic unwound through: a guarded call's name, a stage's id, or a sink.
pub(crate) enum Site {
    Name(String),
    Stage(u32),
    /// A sink's `send` (which sink: the one running on this thread; see `exec::panicked`).
    Sink,
    /// Making a stage's next input in a run ([`InputGuarded`]): not the stage's code, but the
    /// segment's input (its source) unless a stage pulled upstream claimed it first.
    Input,
}

/// The inputs of a stage's run (`Stage::process_all`, `Stage::pull`), each `next` guarded so
/// that a panic while producing an input (in the source's iterator) is not blamed on the stage
/// pulling it.
pub(crate) struct InputGuarded<I>(pub(crate) I);

impl<I: Iterator> Iterator for InputGuarded<I> {
    type Item = I::Item;

    #[inline(always)]
    fn next(&mut self) -> Option<I::Item> {
        let guard = InputGuard;
        let next = self.0.next();
        std::mem::forget(guard);
        next
    }
}

/// Armed around making one input and forgotten on return (zero-sized).
struct InputGuard;

impl Drop for InputGuard {
    #[cold]
    fn drop(&mut self) {
        record(|| Site::Input);
    }
}

thread_local! {
    static PANICKED_IN: RefCell<Option<Site>> = const { RefCell::new(None) };
}

/// Records `site` unless an inner guard already recorded one.
fn record(site: impl FnOnce() -> Site) {
    let _ = PANICKED_IN.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut()
            && slot.is_none()
        {
            *slot = Some(site());
        }
    });
}

/// Armed around a stage's `process` and forgotten on return: only a panic unwinding through
/// it drops it, which records the stage's id (from [`NodeIds`]) unless an inner stage already
/// did.
pub(crate) struct StageGuard(pub(crate) u32);

impl Drop for StageGuard {
    #[cold]
    fn drop(&mut self) {
        record(|| Site::Stage(self.0));
    }
}

/// Armed around a sink's `send` and forgotten on return (zero-sized: arming it stores nothing).
pub(crate) struct SinkGuard;

impl Drop for SinkGuard {
    #[cold]
    fn drop(&mut self) {
        record(|| Site::Sink);
    }
}

/// [`StageGuard`] for a compile-time id: a zero-sized value, so arming it stores nothing.
pub(crate) struct ConstStageGuard<const ID: u32>;

impl<const ID: u32> Drop for ConstStageGuard<ID> {
    #[cold]
    fn drop(&mut self) {
        record(|| Site::Stage(ID));
    }
}

/// Ids `pipeline!` assigns at compile time are below this; ids registered at run time start
/// here.
pub(crate) const FIRST_RUNTIME_ID: u32 = 1 << 20;

/// The names of the pipeline's named stages, by id (0 is "none").
#[derive(Debug)]
pub(crate) struct NodeIds {
    names: std::cell::RefCell<BTreeMap<u32, String>>,
    next: std::cell::Cell<u32>,
}

impl Default for NodeIds {
    fn default() -> Self {
        Self {
            names: std::cell::RefCell::default(),
            next: std::cell::Cell::new(FIRST_RUNTIME_ID),
        }
    }
}

impl NodeIds {
    /// Registers `name` under a fresh id; returns it.
    pub(crate) fn register(&self, name: &str) -> u32 {
        let id = self.next.get();
        self.next.set(id.saturating_add(1));
        self.register_at(id, name);
        id
    }

    /// Registers `name` under `id` (a compile-time id, below [`FIRST_RUNTIME_ID`]).
    pub(crate) fn register_at(&self, id: u32, name: &str) {
        self.names.borrow_mut().insert(id, name.to_string());
    }

    pub(crate) fn into_names(self) -> BTreeMap<u32, String> {
        self.names.into_inner()
    }
}

struct Guard<'a>(&'a str);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // Only reached while unwinding: `in_node` forgets the guard on return.
        record(|| Site::Name(self.0.to_string()));
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
/// Resets it.
pub(crate) fn take() -> Option<Site> {
    PANICKED_IN
        .try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten()
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
        assert!(matches!(take(), Some(Site::Name(n)) if n == "inner"));
        assert!(take().is_none(), "taken once");
        in_node("quiet", || ());
        assert!(take().is_none(), "nothing recorded without a panic");
    }
}
