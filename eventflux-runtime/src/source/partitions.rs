//! Event time over a partitioned input: one watermark per partition, the least over the
//! partitions that are live, idle partitions left out after a timeout (as Flink's
//! `withIdleness`). Broker-agnostic: any partitioned source (Redis Streams, a Kafka adapter)
//! feeds it what it reads and emits what it returns.

use std::time::Duration;

use crate::stage::Watermark;
use crate::window::{Clock, SystemClock};

#[derive(Debug, Clone)]
struct Part {
    /// The largest timestamp seen.
    max: Option<u64>,
    /// When the partition last had an event (the clock's time).
    last_seen: u64,
    /// It has ended (a bounded read reached its end): it holds nothing back.
    done: bool,
}

/// Watermarks of a partitioned input.
///
/// Each partition's watermark trails its largest timestamp by the out-of-orderness (plus one:
/// a watermark `w` says every timestamp up to `w` is complete). The input's watermark is the
/// least over the partitions that are not ended and not idle, so a slow partition holds event
/// time back and a quiet one does not, once it has had nothing for the idleness timeout. A
/// partition that has seen nothing yet holds it back too, until it goes idle. When every
/// partition is idle, the least over those that have data is used (nothing arrives anywhere,
/// so what was seen is complete). Watermarks only rise.
///
/// ```
/// use std::time::Duration;
/// use eventflux_runtime::source::PartitionWatermarks;
/// use eventflux_runtime::window::ManualClock;
/// use eventflux_runtime::Watermark;
/// let clock = ManualClock::new(0);
/// let mut w = PartitionWatermarks::new(2, 10)
///     .idle_after(Duration::from_secs(5))
///     .with_clock(clock.clone());
/// w.observe(0, 100);
/// assert_eq!(w.advance(), None, "partition 1 has seen nothing yet");
/// w.observe(1, 50);
/// assert_eq!(w.advance(), Some(Watermark(39)), "the least: partition 1's");
/// clock.advance(5_000_000_000);
/// w.observe(0, 200);
/// assert_eq!(w.advance(), Some(Watermark(189)), "partition 1 went idle");
/// ```
#[derive(Debug, Clone)]
pub struct PartitionWatermarks<C = SystemClock> {
    out_of_orderness: u64,
    idle_ns: Option<u64>,
    clock: C,
    parts: Vec<Part>,
    emitted: Option<u64>,
}

impl PartitionWatermarks {
    /// For `partitions` partitions whose events are at most `out_of_orderness` out of order.
    pub fn new(partitions: usize, out_of_orderness: u64) -> Self {
        let clock = SystemClock::default();
        let now = clock.now();
        Self {
            out_of_orderness,
            idle_ns: None,
            clock,
            parts: vec![
                Part {
                    max: None,
                    last_seen: now,
                    done: false,
                };
                partitions
            ],
            emitted: None,
        }
    }
}

impl<C: Clock> PartitionWatermarks<C> {
    /// A partition with no event for `timeout` (processing time) stops holding event time
    /// back, until it has events again.
    pub fn idle_after(mut self, timeout: Duration) -> Self {
        self.idle_ns = Some(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        self
    }

    /// Measures idleness on `clock` (a [`ManualClock`](crate::window::ManualClock) in tests).
    pub fn with_clock<C2: Clock>(self, clock: C2) -> PartitionWatermarks<C2> {
        let now = clock.now();
        PartitionWatermarks {
            out_of_orderness: self.out_of_orderness,
            idle_ns: self.idle_ns,
            parts: self
                .parts
                .into_iter()
                .map(|p| Part {
                    last_seen: now,
                    ..p
                })
                .collect(),
            clock,
            emitted: self.emitted,
        }
    }

    /// An event with timestamp `ts` was read from `partition`.
    pub fn observe(&mut self, partition: usize, ts: u64) {
        let now = self.clock.now();
        if let Some(p) = self.parts.get_mut(partition) {
            p.max = Some(p.max.map_or(ts, |m| m.max(ts)));
            p.last_seen = now;
        }
    }

    /// `partition` has ended: it no longer holds event time back.
    pub fn finish(&mut self, partition: usize) {
        if let Some(p) = self.parts.get_mut(partition) {
            p.done = true;
        }
    }

    /// The input's watermark, if it rose since the last call.
    pub fn advance(&mut self) -> Option<Watermark> {
        let now = self.clock.now();
        let idle = |p: &Part| {
            self.idle_ns
                .is_some_and(|t| now.saturating_sub(p.last_seen) >= t)
        };
        let live: Vec<&Part> = self.parts.iter().filter(|p| !p.done && !idle(p)).collect();
        // Every partition idle: nothing is arriving anywhere, so event time goes as far as the
        // partitions that have data allow (an idle partition that never had any holds
        // nothing back).
        let candidates: Vec<&Part> = if live.is_empty() {
            self.parts
                .iter()
                .filter(|p| !p.done && p.max.is_some())
                .collect()
        } else {
            live
        };
        if candidates.is_empty() {
            return None;
        }
        let mut least: Option<u64> = None;
        for p in candidates {
            // A live partition that has seen nothing holds event time back.
            let w = p
                .max?
                .checked_sub(self.out_of_orderness.saturating_add(1))?;
            least = Some(least.map_or(w, |l| l.min(w)));
        }
        let w = least?;
        if self.emitted.is_some_and(|e| w <= e) {
            return None;
        }
        self.emitted = Some(w);
        Some(Watermark(w))
    }

    /// The last watermark returned.
    pub fn current(&self) -> Option<Watermark> {
        self.emitted.map(Watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionWatermarks;
    use crate::stage::Watermark;
    use crate::window::ManualClock;
    use std::time::Duration;

    /// `n` partitions, no out-of-orderness, idle after `idle_ns` of the manual clock returned.
    fn idling(n: usize, idle_ns: u64) -> (PartitionWatermarks<ManualClock>, ManualClock) {
        let clock = ManualClock::new(0);
        let w = PartitionWatermarks::new(n, 0)
            .idle_after(Duration::from_nanos(idle_ns))
            .with_clock(clock.clone());
        (w, clock)
    }

    #[test]
    fn the_least_live_partition_leads_and_ended_ones_do_not_hold_back() {
        let mut w = PartitionWatermarks::new(3, 5).with_clock(ManualClock::new(0));
        w.observe(0, 100);
        w.observe(1, 30);
        assert_eq!(
            w.advance(),
            None,
            "partition 2 has nothing yet, and no idleness timeout"
        );
        w.observe(2, 60);
        assert_eq!(w.advance(), Some(Watermark(24)));
        assert_eq!(w.advance(), None, "unchanged: nothing new");
        w.finish(1);
        assert_eq!(w.advance(), Some(Watermark(54)));
        // Rising only: an old timestamp in a new partition does not move it back.
        w.observe(2, 10);
        assert_eq!(w.advance(), None);
        assert_eq!(w.current(), Some(Watermark(54)));
    }

    #[test]
    fn an_idle_partition_stops_holding_back_and_returns_when_it_has_events() {
        let (mut w, clock) = idling(2, 1_000);
        w.observe(0, 10);
        w.observe(1, 5);
        assert_eq!(w.advance(), Some(Watermark(4)));
        clock.advance(600);
        w.observe(0, 20);
        assert_eq!(
            w.advance(),
            None,
            "partition 1 is not idle yet (600 of 1000)"
        );
        clock.advance(400);
        assert_eq!(
            w.advance(),
            Some(Watermark(19)),
            "partition 1 idle: partition 0 leads"
        );
        // Partition 1 wakes with an event behind the watermark: it cannot move it back, and
        // it holds event time at its own watermark until it catches up.
        w.observe(1, 12);
        w.observe(0, 30);
        assert_eq!(w.advance(), None);
        w.observe(1, 40);
        assert_eq!(w.advance(), Some(Watermark(29)));
    }

    /// An empty partition goes idle, then the one with data goes idle too before the source
    /// looked again: event time still reaches what the data allows.
    #[test]
    fn when_every_partition_is_idle_the_ones_with_data_lead() {
        let (mut w, clock) = idling(2, 100);
        w.observe(1, 50);
        assert_eq!(
            w.advance(),
            None,
            "partition 0 has nothing and is not idle yet"
        );
        clock.advance(1_000);
        assert_eq!(w.advance(), Some(Watermark(49)));
    }

    #[test]
    fn every_partition_idle_or_ended_leaves_event_time_where_it_is() {
        let (mut w, clock) = idling(1, 10);
        w.observe(0, 7);
        assert_eq!(w.advance(), Some(Watermark(6)));
        clock.advance(10);
        assert_eq!(w.advance(), None);
        assert_eq!(w.current(), Some(Watermark(6)));
    }
}
