//! Metrics: exact counts per node and queue, percentiles of a known latency distribution within
//! the histogram's precision, and readable, serialisable snapshots.

use eventflux::metrics::{Histogram, HistogramSnapshot, MetricsRegistry, NodeKind};
use eventflux::prelude::*;

#[test]
fn counts_are_exact_per_stage_queue_and_sink() {
    let mut p = PipelineBuilder::new(
        PipelineConfig::builder()
            .queue_capacity(64)
            .batch_size(16)
            .build()
            .expect("valid"),
    );
    let (tx, rx) = p.queue::<u32>("odd");
    let sink = CollectSink::new();
    let out = p.sink("out", sink);
    let odd = p.stage("odd", filter(|x: &u32| x % 2 == 1));
    let triple = p.stage("triple", flat_map(|x: u32| [x, x, x]));
    p.add_source(
        "numbers",
        IterSource::new(0..1000u32),
        odd,
        QueueOutput::new(tx),
    );
    p.add_queue_segment("expand", rx, triple, out);
    let report = p.build().expect("valid").run().expect("runs");
    let m = &report.metrics;
    let io = |name: &str| m.node(name).map(|n| (n.events_in, n.events_out));
    assert_eq!(io("numbers"), Some((1000, 1000)));
    assert_eq!(io("odd"), Some((1000, 500)));
    assert_eq!(io("triple"), Some((500, 1500)));
    assert_eq!(io("out"), Some((1500, 1500)));
    let q = m.queue("odd").expect("queue metered");
    assert_eq!(
        (
            q.pushed,
            q.delivered,
            q.dropped_evicted + q.dropped_rejected,
            q.depth
        ),
        (500, 500, 0, 0)
    );
    assert_eq!(q.capacity_events, 64);
    assert!(q.high_water >= 16 && q.high_water <= 64, "{}", q.high_water);
    assert_eq!(
        m.node("out").map(|n| n.latency.count),
        Some(1500),
        "every delivered event timed"
    );
    assert_eq!(
        (report.events_in, report.events_out, report.dropped),
        (1000, 1500, 0)
    );
}

fn within_precision(got: u64, want: u64) {
    let err = (got as f64 - want as f64).abs() / want as f64;
    assert!(err <= 1.0 / 32.0, "got {got}, want {want} (error {err:.4})");
}

#[test]
fn percentiles_of_a_uniform_distribution() {
    let h = Histogram::new();
    for ns in 1..=1_000_000u64 {
        h.record(ns);
    }
    let s = h.snapshot();
    assert_eq!(s.count(), 1_000_000);
    assert_eq!(s.max(), 1_000_000);
    within_precision(s.percentile(0.50), 500_000);
    within_precision(s.percentile(0.99), 990_000);
    within_precision(s.percentile(0.999), 999_000);
    within_precision(s.mean() as u64, 500_000);
}

#[test]
fn percentiles_merge_across_threads() {
    // Two "threads" with different latency profiles: 990 fast events and 10 slow ones.
    let fast = Histogram::new();
    let slow = Histogram::new();
    fast.record_n(2_000, 990);
    slow.record_n(5_000_000, 10);
    let mut merged = HistogramSnapshot::empty();
    merged.merge_from(&fast);
    merged.merge_from(&slow);
    within_precision(merged.percentile(0.5), 2_000);
    within_precision(merged.percentile(0.99), 2_000);
    within_precision(merged.percentile(0.995), 5_000_000);
    within_precision(merged.percentile(0.999), 5_000_000);
}

#[test]
fn snapshot_serialises_and_prints() {
    let reg = MetricsRegistry::new();
    let n = reg.node("parse", NodeKind::Stage);
    n.publish(10, 9, 1);
    n.record_latency(1_500, 9);
    let q = reg.queue("q", 1024);
    let _ = q;
    let snap = reg.snapshot();
    let json = serde_json::to_value(&snap).expect("serialisable");
    assert_eq!(json["nodes"][0]["name"], "parse");
    assert_eq!(json["nodes"][0]["events_out"], 9);
    assert_eq!(json["nodes"][0]["errors"], 1);
    assert_eq!(json["nodes"][0]["latency"]["count"], 9);
    assert_eq!(json["queues"][0]["capacity_events"], 1024);
    let text = snap.to_string();
    assert!(text.contains("parse"), "{text}");
    assert!(text.contains("1.5µs"), "{text}");
}

#[test]
fn throughput_is_over_the_last_interval() {
    let reg = MetricsRegistry::new();
    let n = reg.node("s", NodeKind::Sink);
    n.publish(100, 100, 0);
    let first = reg.snapshot();
    let second = reg.snapshot();
    assert!(first.nodes[0].throughput_per_sec > 0.0);
    assert_eq!(
        second.nodes[0].throughput_per_sec, 0.0,
        "nothing happened since the last read"
    );
    assert!(second.nodes[0].average_per_sec > 0.0);
}

#[test]
fn fan_out_branches_count_their_own_deliveries() {
    let all = CollectSink::new();
    let big = CollectSink::new();
    let (all_h, big_h) = (all.handle(), big.handle());
    let mut p = PipelineBuilder::new(
        PipelineConfig::builder()
            .batch_size(8)
            .queue_capacity(32)
            .build()
            .expect("valid"),
    );
    let (tx, rx) = p.queue::<u32>("q");
    let outputs = FanOut::new(
        p.sink("all", all),
        Then::new(
            p.stage("big", filter(|x: &u32| *x >= 90)),
            p.sink("big_sink", big),
        ),
    );
    p.add_source(
        "numbers",
        IterSource::new(0..100u32),
        Identity,
        QueueOutput::new(tx),
    );
    p.add_queue_segment("split", rx, map(|x: u32| x), outputs);
    let report = p.build().expect("valid").run().expect("runs");
    assert_eq!(all_h.take(), (0..100).collect::<Vec<_>>());
    assert_eq!(big_h.take(), (90..100).collect::<Vec<_>>());
    let m = &report.metrics;
    assert_eq!(m.node("all").map(|n| n.events_in), Some(100));
    assert_eq!(
        m.node("big").map(|n| (n.events_in, n.events_out)),
        Some((100, 10))
    );
    assert_eq!(m.node("big_sink").map(|n| n.events_in), Some(10));
    assert_eq!(report.events_out, 110);
}
