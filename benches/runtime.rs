//! Criterion benchmarks of the runtime's building blocks.
//!
//! - `queue/*`: one push and one pop on one thread, per backpressure strategy, for single
//!   events (batch of 1) and for 1024-event batches (throughput is per event).
//! - `chain/*`: filter → map → sum over 1 M trades, the runtime's fused chain against the same
//!   hand-written loop.
//! - `pipeline/two_thread`: source thread ⇒ queue ⇒ processing thread over 1 M trades.
//!
//! `cargo bench` runs them all; `cargo bench -- queue` filters.

#[path = "../examples/common/trades.rs"]
mod trades;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventflux::prelude::*;
use eventflux::queue::{EventQueue, Message, QueueOptions};
use trades::{SYMBOLS, Trade};

const EVENTS: usize = 1_000_000;

fn queues(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    for strategy in [
        Backpressure::Block,
        Backpressure::DropOldest,
        Backpressure::DropNewest,
        Backpressure::Unbounded,
    ] {
        for batch in [1usize, 1024] {
            let (mut tx, mut rx) = EventQueue::<u64>::channel(QueueOptions {
                slots: 64,
                batch_size: batch,
                backpressure: strategy,
                timing: false,
                ..QueueOptions::default()
            });
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("{strategy:?}/batch_{batch}"), |b| {
                b.iter(|| {
                    let mut buf = tx.acquire_buffer();
                    buf.extend(0..batch as u64);
                    tx.send_items(buf).expect("receiver alive");
                    match rx.try_recv() {
                        Ok(Some(Message::Batch(batch))) => {
                            black_box(batch.items().last());
                            rx.recycle(batch);
                        }
                        other => panic!("expected a batch, got {other:?}"),
                    }
                });
            });
        }
    }
    g.finish();
}

fn chain(c: &mut Criterion) {
    let data = trades::generate(EVENTS);
    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("handwritten", |b| {
        b.iter(|| {
            let mut sums = [0.0f64; SYMBOLS];
            for t in &data {
                if t.volume > 100 {
                    sums[t.symbol as usize] += t.price * f64::from(t.volume);
                }
            }
            black_box(sums)
        });
    });
    g.bench_function("fused", |b| {
        b.iter(|| {
            let mut sums = [0.0f64; SYMBOLS];
            {
                let mut chain = filter(|t: &Trade| t.volume > 100)
                    .then(map(|t: Trade| (t.symbol, t.price * f64::from(t.volume))))
                    .then(inspect(|&(s, v): &(u32, f64)| sums[s as usize] += v));
                let mut sink = Discard;
                for t in &data {
                    chain.process(*t, &mut sink);
                }
            }
            black_box(sums)
        });
    });
    g.finish();
}

/// An emitter that drops everything (the chain's last stage already did the work).
struct Discard;

impl<T> Emit<T> for Discard {
    #[inline(always)]
    fn emit(&mut self, _: T) {}
    fn fail(&mut self, error: StageError) {
        panic!("{error}");
    }
}

fn pipeline(c: &mut Criterion) {
    let data = Arc::new(trades::generate(EVENTS));
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(10);
    g.bench_function("two_thread", |b| {
        b.iter_batched(
            || data.as_ref().clone(),
            |input| {
                let mut p = PipelineBuilder::new(PipelineConfig::default());
                let (tx, rx) = p.queue::<Trade>("q");
                let out = p.sink(
                    "sum",
                    CallbackSink::new(|(_s, v): (u32, f64)| {
                        black_box(v);
                        Ok(())
                    }),
                );
                p.add_source(
                    "feed",
                    IterSource::new(input),
                    Identity,
                    QueueOutput::new(tx),
                );
                let work = filter(|t: &Trade| t.volume > 100)
                    .then(map(|t: Trade| (t.symbol, t.price * f64::from(t.volume))));
                p.add_queue_segment("work", rx, work, out);
                p.build().and_then(|p| p.run()).expect("pipeline runs")
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = queues, chain, pipeline
}
criterion_main!(benches);
