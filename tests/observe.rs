//! Watching a pipeline: the progress line, per-worker samples for exporters' `worker` label,
//! watermarks and producers' blocked time in the metrics.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BOUND, within};
use eventflux::observe::Progress;
use eventflux::prelude::*;

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// With an interval longer than the run, the progress line is written exactly once, when the
/// pipeline ends, with its final values.
#[test]
fn the_last_progress_line_is_written_when_the_pipeline_ends() {
    within(BOUND, || {
        let buf = Shared::default();
        let app = pipeline! {
            source nums = IterSource::new(0..10_000u64);
            stage odd = filter(|x: &u64| x % 2 == 1);
            sink out = CollectSink::new();
            nums -> odd =>[capacity = 1024, batch_size = 64] out;
        };
        let report = app
            .progress(
                Progress::to_writer(buf.clone())
                    .every(Duration::from_secs(3600))
                    .named("odd"),
            )
            .run()
            .unwrap();
        assert_eq!(report.events_out, 5_000);
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "one line at the end: {text}");
        let line = lines[0];
        assert!(line.starts_with("[odd "), "{line}");
        assert!(line.contains(" in "), "{line}");
        // The queue into `out` drained: 0 % of its 1 024 events.
        assert!(
            line.ends_with("| queues out 0% | dropped 0 | dead letters 0"),
            "{line}"
        );
    });
}

/// A progress line counts what queues dropped and the dead letters so far, and reports the
/// least watermark and the last checkpoint.
#[test]
fn the_progress_line_reports_drops_dead_letters_watermarks_and_checkpoints() {
    use eventflux::metrics::{MetricsRegistry, NodeKind};
    use eventflux::observe::progress_line;
    let reg = MetricsRegistry::new();
    let src = reg.node("src", NodeKind::Source);
    src.publish(0, 100, 0);
    let a = reg.node("a", NodeKind::Stage);
    a.set_watermark(500);
    let b = reg.node("b", NodeKind::Stage);
    b.set_watermark(450);
    b.add_dropped(eventflux::metrics::DropReason::Late, 3);
    let q = reg.queue("b", 128);
    let _ = q;
    let mut snap = reg.snapshot();
    snap.checkpoints = Some(eventflux::exec::checkpoint::CheckpointStats {
        completed: 2,
        failed: 1,
        last: Some(eventflux::exec::checkpoint::CheckpointInfo {
            id: 2,
            duration: Duration::from_micros(12_500),
            bytes: 2048,
            alignment: Duration::ZERO,
        }),
        durations_ms: vec![10, 12],
        at_most_once: vec![],
    });
    let line = progress_line("job", &snap, 7);
    assert!(
        line.ends_with(
            "| queues b 0% | dropped 3 | dead letters 7 | watermark 450 | checkpoint #2 12.5ms 2.0KiB (1 failed)"
        ),
        "{line}"
    );
}

/// Nodes built while the builder is in a keyed worker carry the worker's label; the others
/// have none.
#[test]
fn nodes_built_in_a_worker_carry_its_label() {
    let mut p = PipelineBuilder::new(PipelineConfig::default());
    let registry = Arc::clone(p.registry());
    let out = p.sink("out", CollectSink::<u64>::new());
    p.set_worker(Some(1));
    let stage = p.stage("w1", map(|x: u64| x));
    p.set_worker(None);
    p.add_source("src", IterSource::new(0..10u64), stage, out);
    p.build().unwrap().run().unwrap();
    let samples = registry.worker_samples();
    let got: Vec<(&str, Option<u16>, u64)> = samples
        .iter()
        .map(|s| (s.name.as_str(), s.worker, s.events_out))
        .collect();
    assert_eq!(
        got,
        [("out", None, 10), ("w1", Some(1), 10), ("src", None, 10)]
    );
}

/// `pipeline!` labels the copies in keyed workers: every worker has a sample, and their
/// counts add up to the input.
#[test]
fn pipeline_macro_labels_keyed_copies_with_their_worker() {
    within(BOUND, || {
        let app = pipeline! {
            source nums = IterSource::new(0..4_000u64);
            stage double = map(|x: u64| x * 2);
            sink out = CollectSink::new();
            nums =>[workers = 3, key = |x: &u64| *x] double => out;
        };
        let handle = app.spawn().unwrap();
        let samples = handle.worker_samples();
        handle.join().unwrap();
        let mut workers: Vec<Option<u16>> = samples
            .iter()
            .filter(|s| s.name == "double")
            .map(|s| s.worker)
            .collect();
        workers.sort();
        assert_eq!(workers, [Some(0), Some(1), Some(2)]);
        let nums: Vec<Option<u16>> = samples
            .iter()
            .filter(|s| s.name == "nums")
            .map(|s| s.worker)
            .collect();
        assert_eq!(nums, [None]);
    });
}

/// Event-time stages and sinks report the latest watermark they passed on.
#[test]
fn nodes_report_their_watermarks() {
    within(BOUND, || {
        let app = pipeline! {
            source readings = IterSource::new((0..1_000u64).map(|i| (i * 10, i)));
            stage marks = watermarks(|r: &(u64, u64)| r.0, 100);
            stage plain = map(|r: (u64, u64)| r.1);
            sink out = CollectSink::new();
            readings -> marks => plain -> out;
        };
        let report = app.run().unwrap();
        let wm = |n: &str| report.metrics.node(n).unwrap().watermark;
        // The largest timestamp is 9 990; 100 of out-of-orderness hold the watermark back to
        // 9 889 (everything up to it is complete). The end of the stream is not a watermark.
        assert_eq!(wm("plain"), Some(9_889));
        assert_eq!(wm("out"), Some(9_889));
        assert_eq!(report.metrics.node("readings").unwrap().watermark, None);
    });
}

/// A producer blocked on a full `Block` queue has its wait counted.
#[test]
fn time_blocked_on_a_full_queue_is_counted() {
    use eventflux::queue::{EventQueue, QueueOptions};
    within(BOUND, || {
        let (mut tx, mut rx) = EventQueue::<u32>::channel(QueueOptions {
            name: "q".into(),
            slots: 1,
            batch_size: 1,
            backpressure: Backpressure::Block,
            idle: IdleStrategy::default(),
            timing: true,
        });
        let metrics = Arc::clone(tx.metrics());
        let producer = std::thread::spawn(move || {
            tx.send_items(vec![1]).unwrap();
            // The lane holds one batch: this send waits for the consumer.
            tx.send_items(vec![2]).unwrap();
            tx.end().unwrap();
        });
        // `pushed` counts the second batch before its send waits; only then take the first.
        while metrics.pushed() < 2 {
            std::thread::yield_now();
        }
        let mut got = Vec::new();
        while got.len() < 2 {
            if let eventflux::queue::Message::Batch(b) = rx.recv().unwrap() {
                got.extend(b.items().iter().copied());
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [1, 2]);
        assert!(metrics.blocked_ns() > 0, "the second send waited");
        assert_eq!(metrics.capacity_events(), 1);
    });
}
