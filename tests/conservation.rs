//! Conservation under every backpressure strategy: with concurrent producers, a slow consumer
//! and a tiny queue, every event offered is delivered or counted as dropped — exactly.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use eventflux::prelude::*;
use eventflux::queue::{EventQueue, Message, QueueOptions, QueueReceiver};

const PRODUCERS: usize = 3;
const PER_PRODUCER: u32 = 20_000;

type Item = (usize, u32);

fn options(backpressure: Backpressure, slots: usize, batch_size: usize) -> QueueOptions {
    QueueOptions {
        name: format!("{backpressure:?}"),
        slots,
        batch_size,
        backpressure,
        ..QueueOptions::default()
    }
}

/// Drains `rx` to end of stream; `slow` burns time per batch to keep the queue full.
fn drain(rx: &mut QueueReceiver<Item>, slow: bool) -> Vec<Item> {
    let mut got = Vec::new();
    loop {
        match rx.recv().expect("no abort in this test") {
            Message::Batch(b) => {
                got.extend_from_slice(b.items());
                rx.recycle(b);
                if slow {
                    for _ in 0..2_000 {
                        std::hint::spin_loop();
                    }
                    thread::yield_now();
                }
            }
            Message::End => return got,
            Message::Watermark(_) | Message::Barrier(_) => {}
        }
    }
}

/// Per producer, the delivered sequence numbers, checking they are strictly increasing.
fn per_producer(got: &[Item]) -> HashMap<usize, Vec<u32>> {
    let mut by: HashMap<usize, Vec<u32>> = HashMap::new();
    for &(p, seq) in got {
        let v = by.entry(p).or_default();
        if let Some(&last) = v.last() {
            assert!(seq > last, "producer {p}: {seq} delivered after {last}");
        }
        v.push(seq);
    }
    by
}

fn run_concurrent(backpressure: Backpressure, batch_size: usize) -> (Vec<Item>, u64, u64, u64) {
    let (mut tx, mut rx) = EventQueue::<Item>::channel(options(backpressure, 2, batch_size));
    let consumer = thread::spawn(move || {
        let got = drain(&mut rx, true);
        let m = rx.metrics();
        (got, m.pushed(), m.delivered(), m.dropped())
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let mut tx = tx.clone();
            thread::spawn(move || {
                let mut buf = tx.acquire_buffer();
                for seq in 0..PER_PRODUCER {
                    buf.push((p, seq));
                    if buf.len() == tx.batch_size() {
                        let full = std::mem::replace(&mut buf, tx.acquire_buffer());
                        tx.send_items(full).expect("consumer alive");
                    }
                }
                tx.send_items(buf).expect("consumer alive");
                tx.end().expect("consumer alive");
            })
        })
        .collect();
    // The original sender produced nothing: end its (empty) stream. Dropping it would abandon
    // the queue, which the consumer must treat as a failure.
    tx.end().expect("consumer alive");
    for p in producers {
        p.join().expect("producer panicked");
    }
    consumer.join().expect("consumer panicked")
}

fn check_conservation(backpressure: Backpressure, batch_size: usize) -> (Vec<Item>, u64) {
    let (got, pushed, delivered, dropped) = run_concurrent(backpressure, batch_size);
    let produced = (PRODUCERS as u64) * u64::from(PER_PRODUCER);
    assert_eq!(pushed, produced, "{backpressure:?}: pushed");
    assert_eq!(
        delivered,
        got.len() as u64,
        "{backpressure:?}: delivered count"
    );
    assert_eq!(
        delivered + dropped,
        produced,
        "{backpressure:?}: conservation"
    );
    per_producer(&got);
    (got, dropped)
}

#[test]
fn block_loses_nothing_and_keeps_order() {
    for batch_size in [1, 16] {
        let (got, dropped) = check_conservation(Backpressure::Block, batch_size);
        assert_eq!(dropped, 0);
        let by = per_producer(&got);
        for p in 0..PRODUCERS {
            assert_eq!(
                by[&p],
                (0..PER_PRODUCER).collect::<Vec<_>>(),
                "producer {p}"
            );
        }
    }
}

#[test]
fn unbounded_loses_nothing() {
    let (got, dropped) = check_conservation(Backpressure::Unbounded, 8);
    assert_eq!(dropped, 0);
    assert_eq!(got.len(), PRODUCERS * PER_PRODUCER as usize);
}

#[test]
fn drop_oldest_conserves_under_contention() {
    for batch_size in [1, 16] {
        let (got, dropped) = check_conservation(Backpressure::DropOldest, batch_size);
        assert!(dropped > 0, "a slow consumer and 2 slots must evict");
        assert!(!got.is_empty());
    }
}

#[test]
fn drop_newest_conserves_under_contention() {
    for batch_size in [1, 16] {
        let (got, dropped) = check_conservation(Backpressure::DropNewest, batch_size);
        assert!(dropped > 0, "a slow consumer and 2 slots must reject");
        assert!(!got.is_empty());
    }
}

/// Producers race into a 2-slot queue whose consumer has not started; then it drains.
fn survivors(backpressure: Backpressure) -> (Vec<Item>, u64) {
    let (mut tx, mut rx) = EventQueue::<Item>::channel(options(backpressure, 2, 1));
    let start = Arc::new(Barrier::new(PRODUCERS));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let mut tx = tx.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for seq in 0..1000 {
                    let mut b = tx.acquire_buffer();
                    b.push((p, seq));
                    tx.send_items(b).expect("receiver alive");
                }
                tx.end().expect("receiver alive");
            })
        })
        .collect();
    // The original sender produced nothing: end its (empty) stream. Dropping it would abandon
    // the queue, which the consumer must treat as a failure.
    tx.end().expect("consumer alive");
    for p in producers {
        p.join().expect("producer panicked");
    }
    let got = drain(&mut rx, false);
    let dropped = rx.metrics().dropped();
    (got, dropped)
}

#[test]
fn drop_oldest_keeps_the_newest() {
    let (got, dropped) = survivors(Backpressure::DropOldest);
    assert_eq!(got.len(), 2);
    assert_eq!(dropped, (PRODUCERS * 1000 - 2) as u64);
    // The two survivors are the last two pushes overall: each is its producer's last or
    // second-to-last event.
    for (p, seq) in got {
        assert!(seq >= 998, "producer {p}: old event {seq} survived");
    }
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let (got, dropped) = survivors(Backpressure::DropNewest);
    assert_eq!(got.len(), 2);
    assert_eq!(dropped, (PRODUCERS * 1000 - 2) as u64);
    for (p, seq) in got {
        assert!(seq < 2, "producer {p}: new event {seq} survived");
    }
}

/// The same law through a whole pipeline: sources' events = sinks' events + drops.
#[test]
fn pipeline_report_conserves_with_a_lossy_queue() {
    let config = PipelineConfig::builder()
        .queue_capacity(4)
        .batch_size(2)
        .backpressure(Backpressure::DropNewest)
        .build()
        .expect("valid config");
    let mut p = PipelineBuilder::new(config);
    let (tx, rx) = p.queue::<u32>("lossy");
    let sink = CollectSink::new();
    let got = sink.handle();
    let out = p.sink("out", sink);
    p.add_source(
        "numbers",
        IterSource::new(0..50_000u32),
        Identity,
        QueueOutput::new(tx),
    );
    let slow = map(|x: u32| {
        for _ in 0..200 {
            std::hint::spin_loop();
        }
        x
    });
    p.add_queue_segment("slow", rx, slow, out);
    let report = p.build().expect("valid").run().expect("runs");
    let got = got.take();
    assert_eq!(report.events_in, 50_000);
    assert_eq!(report.events_out, got.len() as u64);
    assert_eq!(report.events_out + report.dropped, 50_000);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order preserved");
}
