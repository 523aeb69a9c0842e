//! Which node a panic came from.
//!
//! A segment catches panics once, around its whole loop, so on its own it only knows the
//! segment. Each named node (stage, source poll, sink call) runs inside [`in_node`], which arms a
//! guard and *forgets* it on return: on the normal path that is no code at all; while a panic
//! unwinds through it, the guard's destructor records the node's name — the innermost node wins,
//! since unwinding drops the innermost guard first. The segment then reads it with [`take`].

use std::cell::RefCell;

thread_local! {
    static PANICKED_IN: RefCell<Option<String>> = const { RefCell::new(None) };
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
