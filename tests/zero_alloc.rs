//! Zero allocation per event in steady state, counted by a global allocator.
//!
//! Each pipeline's sink reads the process-wide allocation counter when the first event after a
//! warm-up arrives and again when the last one arrives; between the two, hundreds of thousands
//! of events pass through every stage, queue and pool, and the count must not move at all.

use std::alloc::System;
use std::sync::{Arc, Mutex};

use eventflux::prelude::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Tests in one binary run in parallel and would count each other's allocations.
static SERIAL: Mutex<()> = Mutex::new(());

const EVENTS: u64 = 1_000_000;
const WARM_UP: u64 = 100_000;

#[derive(Clone, Copy, Debug)]
struct Trade {
    ts: u64,
    symbol: u32,
    price: f64,
    volume: u32,
}

fn trades() -> Vec<Trade> {
    (0..EVENTS)
        .map(|i| Trade {
            ts: i,
            symbol: (i % 64) as u32,
            price: 100.0 + (i % 17) as f64,
            volume: (i * 7919 % 500) as u32,
        })
        .collect()
}

/// A sink that sums notional per symbol and samples the allocation counter.
struct Probe {
    seen: u64,
    sums: [f64; 64],
    at_warm: Arc<Mutex<Option<usize>>>,
    at_last: Arc<Mutex<Option<usize>>>,
    last: u64,
}

impl Sink<(u32, f64, u64)> for Probe {
    fn send(&mut self, (symbol, value, ts): (u32, f64, u64)) -> Result<(), SinkError> {
        self.seen += 1;
        self.sums[symbol as usize] += value;
        if ts >= WARM_UP && self.at_warm.lock().map(|g| g.is_none()).unwrap_or(false) {
            *self.at_warm.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(GLOBAL.stats().allocations);
        }
        if ts == self.last {
            *self.at_last.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(GLOBAL.stats().allocations);
        }
        Ok(())
    }
}

type Samples = (Arc<Mutex<Option<usize>>>, Arc<Mutex<Option<usize>>>);

fn probe(data: &[Trade]) -> (Probe, Samples) {
    let at_warm = Arc::new(Mutex::new(None));
    let at_last = Arc::new(Mutex::new(None));
    let last = data
        .iter()
        .rev()
        .find(|t| t.volume > 100)
        .map(|t| t.ts)
        .expect("some trade passes the filter");
    (
        Probe {
            seen: 0,
            sums: [0.0; 64],
            at_warm: Arc::clone(&at_warm),
            at_last: Arc::clone(&at_last),
            last,
        },
        (at_warm, at_last),
    )
}

fn steady_state_allocations((at_warm, at_last): Samples) -> usize {
    let warm = at_warm
        .lock()
        .map(|g| *g)
        .ok()
        .flatten()
        .expect("warm-up sampled");
    let last = at_last
        .lock()
        .map(|g| *g)
        .ok()
        .flatten()
        .expect("last event sampled");
    last - warm
}

fn chain() -> impl Stage<Trade, Out = (u32, f64, u64)> + Send {
    filter(|t: &Trade| t.volume > 100).then(map(|t: Trade| {
        (t.symbol, t.price * f64::from(t.volume), t.ts)
    }))
}

#[test]
fn fused_chain_allocates_nothing_per_event() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = trades();
    let (sink, samples) = probe(&data);
    let mut p = PipelineBuilder::new(PipelineConfig::default());
    let out = p.sink("sum", sink);
    let stage = p.stage("value", chain());
    p.add_source("trades", IterSource::new(data), stage, out);
    let report = p.build().expect("valid").run().expect("runs");
    assert_eq!(report.events_in, EVENTS);
    assert_eq!(steady_state_allocations(samples), 0);
}

#[test]
fn two_thread_pipeline_allocates_nothing_per_event() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for backpressure in [
        Backpressure::Block,
        Backpressure::DropOldest,
        Backpressure::DropNewest,
    ] {
        let data = trades();
        let (sink, samples) = probe(&data);
        let config = PipelineConfig::builder()
            .queue_capacity(16 * 1024)
            .batch_size(1024)
            .backpressure(backpressure)
            .build()
            .expect("valid");
        let mut p = PipelineBuilder::new(config);
        let (tx, rx) = p.queue::<Trade>("trades");
        let out = p.sink("sum", sink);
        p.add_source(
            "feed",
            IterSource::new(data),
            Identity,
            QueueOutput::new(tx),
        );
        p.add_queue_segment("process", rx, chain(), out);
        let report = p.build().expect("valid").run().expect("runs");
        assert_eq!(report.events_in, EVENTS);
        if backpressure == Backpressure::Block {
            assert_eq!(report.dropped, 0);
            let passing = report.metrics.node("sum").map(|n| n.events_in);
            assert_eq!(
                passing,
                Some(trades().iter().filter(|t| t.volume > 100).count() as u64)
            );
        }
        let sampled = matches!(
            (samples.0.lock().map(|g| *g), samples.1.lock().map(|g| *g)),
            (Ok(Some(_)), Ok(Some(_)))
        );
        if sampled {
            assert_eq!(steady_state_allocations(samples), 0, "{backpressure:?}");
        } else {
            // A lossy strategy may drop the sampled events; only Block must deliver them.
            assert_ne!(backpressure, Backpressure::Block);
        }
    }
}

/// An event-time window with five aggregates (the `W` workload), grouped by index and by a
/// hashed key: once every symbol has appeared and a few windows have closed, windows open and
/// close and rows flow without allocating.
macro_rules! windowed_allocates_nothing {
    ($name:ident, $key:ty, $($group:tt)*) => {
        #[test]
        fn $name() {
            let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
            let data: Vec<Trade> = trades()
                .into_iter()
                .enumerate()
                .map(|(i, t)| Trade {
                    ts: i as u64 - (i as u64 * 31 % 50).min(i as u64), // out of order by up to 49
                    ..t
                })
                .collect();
            type Stats = (u64, f64, f64, f64, f64);
            struct RowProbe {
                rows: u64,
                at_warm: Arc<Mutex<Option<usize>>>,
            }
            impl Sink<eventflux::window::Row<$key, Stats>> for RowProbe {
                fn send(&mut self, _: eventflux::window::Row<$key, Stats>) -> Result<(), SinkError> {
                    self.rows += 1;
                    if self.rows == 64 * 50 {
                        *self.at_warm.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(GLOBAL.stats().allocations);
                    }
                    Ok(())
                }
            }
            let at_warm = Arc::new(Mutex::new(None));
            let at_end = Arc::new(Mutex::new(None));
            let probe = RowProbe {
                rows: 0,
                at_warm: Arc::clone(&at_warm),
            };
            let end_mark = Arc::clone(&at_end);
            let last_ts = data.len() as u64 - 60;
            let app = pipeline! {
                source feed = IterSource::new(data);
                stage big = filter(|t: &Trade| t.volume > 100);
                stage marker = inspect(move |t: &Trade| {
                    if t.ts == last_ts {
                        *end_mark.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(GLOBAL.stats().allocations);
                    }
                });
                stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
                stage stats = tumbling(1_000, |n: &(u32, f64, u64)| n.2)
                    .out_of_orderness(50)
                    .$($group)*
                    .aggregate((
                        count(),
                        sum(|n: &(u32, f64, u64)| n.1),
                        min(|n: &(u32, f64, u64)| n.1),
                        max(|n: &(u32, f64, u64)| n.1),
                        avg(|n: &(u32, f64, u64)| n.1),
                    ));
                sink out = probe;
                feed -> big -> marker -> value -> stats -> out;
            };
            app.run().expect("runs");
            assert_eq!(
                steady_state_allocations((at_warm, at_end)),
                0,
                "allocations between window 50 and the end of the input"
            );
        }
    };
}

windowed_allocates_nothing!(
    windowed_pipeline_allocates_nothing_per_event,
    usize,
    group_by_index(|n: &(u32, f64, u64)| n.0 as usize)
);
windowed_allocates_nothing!(
    hashed_windowed_pipeline_allocates_nothing_per_event,
    u32,
    group_by(|n: &(u32, f64, u64)| n.0)
);
