//! Workload `latency`: how long an event takes from its source to its sink across one `=>`
//! queue, with default settings, when the source runs at half the pipeline's peak rate.
//!
//! 1. **Peak**: the same pipeline (`source => sink`) with an unpaced source; events/s.
//! 2. **Half load**: a source paced at half that rate, in several rounds (each figure is the
//!    median over rounds, and the worst round's p99 is reported too). Event `i` carries its
//!    scheduled emit time (`i / rate` after the start); the source emits it once that time has
//!    come, so the stamp is never later than the real emit and the measured latency never
//!    flatters. The sink records `now − stamp` for every event; percentiles are exact (all
//!    samples of a round sorted).
//!
//! The source waits for its next due event by parking until shortly before it is due and then
//! spinning the last few microseconds (so pacing is even at tens of millions of events/s); the
//! sink's thread waits in the queue like any consumer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use eventflux::prelude::*;

use crate::{fail, median};

/// Nanoseconds from `origin` to `at`.
fn nanos(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

/// Emits `n` events, event `i` carrying its due time `i / rate` (ns after the start) as soon as
/// that time has come (`rate` ≤ 0: unpaced, every event at once).
struct PacedSource {
    n: u64,
    next: u64,
    /// Nanoseconds between events (0: unpaced).
    gap_ns: f64,
    origin: Arc<Mutex<Option<Instant>>>,
    start: Option<Instant>,
}

impl PacedSource {
    fn due(&self, i: u64) -> u64 {
        (i as f64 * self.gap_ns) as u64
    }
}

impl Source for PacedSource {
    type Item = u64;

    fn open(&mut self) -> Result<(), SourceError> {
        let now = Instant::now();
        self.start = Some(now);
        *self.origin.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        Ok(())
    }

    fn poll<E: Emit<u64>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        let Some(start) = self.start else {
            return Err(SourceError::Other("polled before open".into()));
        };
        let now = nanos(start, Instant::now());
        let limit = self.next + cx.max_items() as u64;
        while self.next < self.n && self.next < limit && self.due(self.next) <= now {
            out.emit(self.due(self.next));
            self.next += 1;
        }
        Ok(if self.next == self.n {
            SourcePoll::Done
        } else if self.next < limit && self.gap_ns > 0.0 {
            SourcePoll::Pending
        } else {
            SourcePoll::Ready
        })
    }

    fn wait(&mut self, bound: Duration) {
        let Some(start) = self.start else {
            return;
        };
        let now = start.elapsed();
        let deadline = Duration::from_nanos(self.due(self.next)).min(now + bound);
        // Park for all but the last 50 µs (a park can oversleep by that much), then spin.
        if let Some(park) = deadline
            .saturating_sub(now)
            .checked_sub(Duration::from_micros(50))
        {
            std::thread::park_timeout(park);
        }
        while start.elapsed() < deadline {
            std::hint::spin_loop();
        }
    }
}

/// Records every event's latency (ns) into a buffer reserved before the run.
struct LatencySink {
    origin: Arc<Mutex<Option<Instant>>>,
    start: Option<Instant>,
    samples: Vec<u64>,
    result: Arc<Mutex<Vec<u64>>>,
}

impl Sink<u64> for LatencySink {
    #[inline]
    fn send(&mut self, due: u64) -> Result<(), SinkError> {
        let start = match self.start {
            Some(s) => s,
            None => {
                let s = *self.origin.lock().unwrap_or_else(PoisonError::into_inner);
                let s = s.ok_or_else(|| {
                    SinkError::Other("an event arrived before its source opened".into())
                })?;
                self.start = Some(s);
                s
            }
        };
        self.samples
            .push(nanos(start, Instant::now()).saturating_sub(due));
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) =
            std::mem::take(&mut self.samples);
        Ok(())
    }
}

/// One run of `source => sink` with default settings: the samples (ns) and the run's seconds.
fn run(n: u64, gap_ns: f64) -> (Vec<u64>, f64) {
    let origin = Arc::new(Mutex::new(None));
    let result = Arc::new(Mutex::new(Vec::new()));
    let source = PacedSource {
        n,
        next: 0,
        gap_ns,
        origin: Arc::clone(&origin),
        start: None,
    };
    let sink = LatencySink {
        origin,
        start: None,
        samples: Vec::with_capacity(usize::try_from(n).unwrap_or(0)),
        result: Arc::clone(&result),
    };
    let began = Instant::now();
    let app = pipeline! {
        source feed = source;
        sink out = sink;
        feed => out;
    };
    if let Err(e) = app.run() {
        fail(&format!("latency pipeline failed: {e}"));
    }
    let secs = began.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *result.lock().unwrap_or_else(PoisonError::into_inner));
    if samples.len() as u64 != n {
        fail(&format!("latency: {} of {n} events arrived", samples.len()));
    }
    (samples, secs)
}

/// The `p`-th percentile (0–1) of sorted `v`, in µs.
fn percentile_us(v: &[u64], p: f64) -> f64 {
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).map_or(f64::NAN, |&ns| ns as f64 / 1e3)
}

/// What the `latency` workload measured: each figure is the median over the paced rounds
/// (as every other bench line is a median of rounds), plus the worst round's p99.
pub struct Latency {
    pub peak_events_per_sec: f64,
    pub paced_events_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub p99_us_worst_round: f64,
    pub events: u64,
    pub rounds: usize,
}

/// Measures the peak over `n` events (median of `rounds`), then `rounds` runs of `n` events
/// at half of it. A round lasts well under a second, so one stall of a thread (a shared
/// machine's scheduler taking a vCPU for a few ms) sets that round's p99 on its own: the
/// median over rounds is the pipeline's, the worst round's p99 is reported beside it.
pub fn measure(n: u64, rounds: usize) -> Latency {
    let rounds = rounds.max(1);
    let peak = median(
        &(0..rounds)
            .map(|_| {
                let (_, secs) = run(n, 0.0);
                n as f64 / secs
            })
            .collect::<Vec<_>>(),
    );
    let rate = peak / 2.0;
    let paced: Vec<(Vec<u64>, f64)> = (0..rounds)
        .map(|_| {
            let (mut samples, secs) = run(n, 1e9 / rate);
            samples.sort_unstable();
            (samples, secs)
        })
        .collect();
    let per_round = |p: f64| -> Vec<f64> {
        paced
            .iter()
            .map(|(samples, _)| percentile_us(samples, p))
            .collect()
    };
    Latency {
        peak_events_per_sec: peak,
        paced_events_per_sec: median(
            &paced
                .iter()
                .map(|(_, secs)| n as f64 / secs)
                .collect::<Vec<_>>(),
        ),
        p50_us: median(&per_round(0.50)),
        p99_us: median(&per_round(0.99)),
        p999_us: median(&per_round(0.999)),
        max_us: median(&per_round(1.0)),
        p99_us_worst_round: per_round(0.99).into_iter().fold(f64::NAN, f64::max),
        events: n,
        rounds,
    }
}
