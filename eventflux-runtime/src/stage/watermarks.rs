//! `watermarks(ts, out_of_orderness)`: generates event-time watermarks in band.
//!
//! Passes every event unchanged and tracks the largest timestamp seen. At the end of each input
//! batch, if the watermark `max_ts − out_of_orderness − 1` advanced, it is emitted downstream:
//! fused stages after it see it in `on_watermark`, and `=>` queues carry it to other threads
//! (the minimum over producers at a fan-in, and over workers after a keyed edge). Place it right
//! after a source to generate watermarks "at the source".

use crate::stage::{Emit, Stage, Watermark};

/// A watermark generator. See [`watermarks`].
#[derive(Debug, Clone)]
pub struct Watermarks<F> {
    ts: F,
    out_of_orderness: u64,
    max: Option<u64>,
    emitted: Option<u64>,
}

/// Bounded-out-of-orderness watermarks from `ts(event)`.
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// /// Records watermarks it is given.
/// struct Seen(Vec<u64>);
/// impl Emit<u64> for Seen {
///     fn emit(&mut self, _: u64) {}
///     fn fail(&mut self, _: StageError) {}
///     fn emit_watermark(&mut self, w: Watermark) { self.0.push(w.0); }
/// }
/// let mut s = watermarks(|t: &u64| *t, 5);
/// let mut out = Seen(Vec::new());
/// for t in [10, 20, 15] { s.process(t, &mut out); }
/// s.on_batch_end(&mut out);
/// assert_eq!(out.0, [14]);
/// ```
pub fn watermarks<F>(ts: F, out_of_orderness: u64) -> Watermarks<F> {
    Watermarks {
        ts,
        out_of_orderness,
        max: None,
        emitted: None,
    }
}

impl<T, F: Fn(&T) -> u64> Stage<T> for Watermarks<F> {
    type Out = T;

    #[inline]
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        let ts = (self.ts)(&item);
        if self.max.is_none_or(|m| ts > m) {
            self.max = Some(ts);
        }
        out.emit(item);
    }

    fn on_batch_end<E: Emit<T>>(&mut self, out: &mut E) {
        let wm = self
            .max
            .and_then(|m| m.checked_sub(self.out_of_orderness.saturating_add(1)));
        if let Some(w) = wm
            && self.emitted.is_none_or(|e| w > e)
        {
            self.emitted = Some(w);
            out.emit_watermark(Watermark(w));
        }
    }

    fn event_time(&mut self, _: bool) -> bool {
        true
    }
}
