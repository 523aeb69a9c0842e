//! `watermarks(ts, out_of_orderness)`: generates event-time watermarks in band.
//!
//! Passes every event unchanged and tracks the largest timestamp seen. At the end of each input
//! batch, if the watermark `max_ts − out_of_orderness − 1` advanced, it is emitted downstream:
//! fused stages after it see it in `on_watermark`, and `=>` queues carry it to other threads
//! (the minimum over producers at a fan-in, and over workers after a keyed edge). Place it right
//! after a source to generate watermarks "at the source".
//!
//! # Idle inputs
//! Without events the watermark cannot advance, so a quiet but open input (a channel with no
//! traffic) would hold every window and session open, and hold back every other input at a
//! fan-in. With [`idle_timeout(d)`](Watermarks::idle_timeout) (Flink's `withIdleness`), once no
//! event has arrived for `d` of processing time the input counts as idle and event time is
//! assumed to move with processing time: the watermark becomes `max_ts − out_of_orderness − 1 +
//! elapsed`, where `elapsed` is the processing time since the last event, in event-time units
//! ([`event_time_unit`](Watermarks::event_time_unit), 1 ms by default). It is re-emitted every `d`
//! while the input stays idle, so windows and sessions close on time on a quiet stream, and an
//! idle input stops holding back a fan-in. The next event ends idleness; the watermark never
//! goes back, so an event older than an idle watermark is late.

use std::time::Duration;

use crate::stage::{Emit, Stage, Watermark};
use crate::window::{Clock, SystemClock};

/// A watermark generator. See [`watermarks`].
#[derive(Debug, Clone)]
pub struct Watermarks<F, C = SystemClock> {
    ts: F,
    out_of_orderness: u64,
    max: Option<u64>,
    emitted: Option<u64>,
    /// An event arrived since the last batch end.
    arrived: bool,
    /// Nanoseconds of processing time per unit of event time (for the idle watermark).
    unit: u64,
    idle: Option<Idleness<C>>,
}

/// The idleness timeout's state, in the clock's nanoseconds.
#[derive(Debug, Clone)]
struct Idleness<C> {
    clock: C,
    timeout: u64,
    last_arrival: u64,
    /// When to look again: `last_arrival + timeout`, then every `timeout` while idle.
    next_check: u64,
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
        arrived: false,
        unit: 1_000_000,
        idle: None,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<F, C> Watermarks<F, C> {
    /// After `timeout` without events, event time follows processing time (see the
    /// [`watermarks`] module docs), measured by the system clock.
    pub fn idle_timeout(self, timeout: Duration) -> Watermarks<F, SystemClock> {
        self.idle_timeout_with_clock(timeout, SystemClock::default())
    }

    /// [`idle_timeout`](Self::idle_timeout) measured by `clock` (a
    /// [`ManualClock`](crate::window::ManualClock) in tests).
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventflux_runtime::prelude::*;
    ///
    /// struct Seen(Vec<u64>);
    /// impl Emit<u64> for Seen {
    ///     fn emit(&mut self, _: u64) {}
    ///     fn fail(&mut self, _: StageError) {}
    ///     fn emit_watermark(&mut self, w: Watermark) { self.0.push(w.0); }
    /// }
    /// let clock = ManualClock::new(0);
    /// let mut s = watermarks(|t: &u64| *t, 100).idle_timeout_with_clock(Duration::from_millis(500), clock.clone());
    /// let mut out = Seen(Vec::new());
    /// s.process(1_000, &mut out); // timestamps in ms
    /// s.on_batch_end(&mut out);
    /// assert_eq!(out.0, [899]);
    /// assert_eq!(s.next_timer(), Some(Duration::from_millis(500)));
    /// clock.advance(500_000_000); // 500 ms of quiet: idle
    /// assert_eq!(s.next_timer(), Some(Duration::ZERO));
    /// s.on_timer(&mut out);
    /// assert_eq!(out.0, [899, 1_399]); // 899 + 500 ms
    /// ```
    pub fn idle_timeout_with_clock<C2: Clock>(
        self,
        timeout: Duration,
        clock: C2,
    ) -> Watermarks<F, C2> {
        let timeout = nanos(timeout).max(1);
        let now = clock.now();
        Watermarks {
            ts: self.ts,
            out_of_orderness: self.out_of_orderness,
            max: self.max,
            emitted: self.emitted,
            arrived: self.arrived,
            unit: self.unit,
            idle: Some(Idleness {
                last_arrival: now,
                next_check: now.saturating_add(timeout),
                clock,
                timeout,
            }),
        }
    }

    /// How much processing time one unit of event time is, for the idle watermark (default
    /// 1 ms: timestamps in milliseconds); set before or after the idle timeout. A zero unit
    /// counts as 1 ns.
    pub fn event_time_unit(mut self, unit: Duration) -> Self {
        self.unit = nanos(unit).max(1);
        self
    }

    fn bounded(&self) -> Option<u64> {
        self.max
            .and_then(|m| m.checked_sub(self.out_of_orderness.saturating_add(1)))
    }

    fn emit_if_advanced<T, E: Emit<T>>(&mut self, wm: Option<u64>, out: &mut E) {
        if let Some(w) = wm
            && self.emitted.is_none_or(|e| w > e)
        {
            self.emitted = Some(w);
            out.emit_watermark(Watermark(w));
        }
    }
}

impl<T, F: Fn(&T) -> u64, C: Clock> Stage<T> for Watermarks<F, C> {
    type Out = T;

    /// Saves the largest timestamp seen and the last watermark emitted (the idleness timer is
    /// processing time: it starts afresh).
    fn snapshot(
        &self,
        snapshot: &mut crate::state::Snapshot,
    ) -> Result<(), crate::state::StateError> {
        snapshot.write(|w| {
            crate::state::Checkpoint::save(&self.max, w)?;
            crate::state::Checkpoint::save(&self.emitted, w)
        })
    }

    fn restore(
        &mut self,
        restore: &mut crate::state::Restore,
    ) -> Result<(), crate::state::StateError> {
        if let Some((max, emitted)) = restore.read(|r| {
            Ok((
                crate::state::Checkpoint::load(r)?,
                crate::state::Checkpoint::load(r)?,
            ))
        })? {
            self.max = max;
            self.emitted = emitted;
        }
        Ok(())
    }

    #[inline]
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        let ts = (self.ts)(&item);
        if self.max.is_none_or(|m| ts > m) {
            self.max = Some(ts);
        }
        self.arrived = true;
        out.emit(item);
    }

    fn on_batch_end<E: Emit<T>>(&mut self, out: &mut E) {
        if std::mem::take(&mut self.arrived)
            && let Some(i) = &mut self.idle
        {
            i.last_arrival = i.clock.now();
            i.next_check = i.last_arrival.saturating_add(i.timeout);
        }
        self.emit_if_advanced(self.bounded(), out);
    }

    fn event_time(&mut self, _: bool) -> bool {
        true
    }

    #[inline]
    fn next_timer(&self) -> Option<Duration> {
        let i = self.idle.as_ref()?;
        self.max?;
        Some(Duration::from_nanos(
            i.next_check.saturating_sub(i.clock.now()),
        ))
    }

    fn on_timer<E: Emit<T>>(&mut self, out: &mut E) {
        let Some(i) = &mut self.idle else {
            return;
        };
        let now = i.clock.now();
        if now < i.next_check {
            return;
        }
        i.next_check = now.saturating_add(i.timeout);
        let elapsed = (now - i.last_arrival) / self.unit;
        let wm = self.max.and_then(|m| {
            m.saturating_add(elapsed)
                .checked_sub(self.out_of_orderness.saturating_add(1))
        });
        self.emit_if_advanced(wm, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::ManualClock;

    /// Records the watermarks it is given.
    struct Seen(Vec<u64>);
    impl Emit<u64> for Seen {
        fn emit(&mut self, _: u64) {}
        fn fail(&mut self, _: crate::StageError) {}
        fn emit_watermark(&mut self, w: Watermark) {
            self.0.push(w.0);
        }
    }

    /// The event-time unit applies whether it is set before or after the idle timeout.
    #[test]
    fn the_unit_applies_in_either_order() {
        let idle_after = |first: bool| {
            let clock = ManualClock::new(0);
            let second = Duration::from_secs(1);
            fn ts(t: &u64) -> u64 {
                *t
            }
            let mut s = if first {
                watermarks(ts, 0)
                    .event_time_unit(second)
                    .idle_timeout_with_clock(second, clock.clone())
            } else {
                watermarks(ts, 0)
                    .idle_timeout_with_clock(second, clock.clone())
                    .event_time_unit(second)
            };
            let mut out = Seen(Vec::new());
            s.process(10, &mut out);
            s.on_batch_end(&mut out);
            clock.advance(3_000_000_000); // 3 s of quiet = 3 units
            s.on_timer(&mut out);
            out.0
        };
        assert_eq!(idle_after(true), [9, 12]);
        assert_eq!(idle_after(false), [9, 12]);
    }
}
