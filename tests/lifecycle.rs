//! Lifecycle: end of stream drains every queue; `stop()` is graceful and bounded; a panic or an
//! error anywhere ends every thread and comes back as `Err` — never a hang.
//!
//! Every test that could hang runs under `within`, which fails the test after a bound instead.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use eventflux::backpressure::SendFailure;
use eventflux::prelude::*;

mod common;
use common::{BOUND, within};

fn small_queues() -> PipelineConfig {
    PipelineConfig::builder()
        .queue_capacity(8)
        .batch_size(4)
        .stop_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config")
}

/// source ⇒ a ⇒ b ⇒ sink, with tiny queues: every event arrives, in order.
#[test]
fn end_of_stream_drains_every_queue() {
    let got = within(BOUND, || {
        let mut p = PipelineBuilder::new(small_queues());
        let (t1, r1) = p.queue::<u64>("q1");
        let (t2, r2) = p.queue::<u64>("q2");
        let sink = CollectSink::new();
        let got = sink.handle();
        let out = p.sink("out", sink);
        p.add_source(
            "src",
            IterSource::new(0..10_001u64),
            Identity,
            QueueOutput::new(t1),
        );
        p.add_queue_segment("a", r1, map(|x: u64| x + 1), QueueOutput::new(t2));
        p.add_queue_segment("b", r2, filter(|x: &u64| x % 2 == 1), out);
        let report = p.build().expect("valid").run().expect("runs");
        assert_eq!(report.events_in, 10_001);
        assert_eq!(
            report
                .metrics
                .queue("q1")
                .map(|q| (q.pushed, q.delivered, q.depth)),
            Some((10_001, 10_001, 0))
        );
        assert_eq!(
            report
                .metrics
                .queue("q2")
                .map(|q| (q.pushed, q.delivered, q.depth)),
            Some((10_001, 10_001, 0))
        );
        got.take()
    });
    assert_eq!(got, (1..=10_001u64).step_by(2).collect::<Vec<_>>());
}

/// Fan-in: two sources into one queue; end of stream waits for both.
#[test]
fn fan_in_ends_after_every_producer() {
    let mut got = within(BOUND, || {
        let mut p = PipelineBuilder::new(small_queues());
        let (tx, rx) = p.queue::<u64>("merge");
        let sink = CollectSink::new();
        let got = sink.handle();
        let out = p.sink("out", sink);
        p.add_source(
            "low",
            IterSource::new(0..500u64),
            Identity,
            QueueOutput::new(tx.clone()),
        );
        p.add_source(
            "high",
            IterSource::new(1000..1500u64),
            Identity,
            QueueOutput::new(tx),
        );
        p.add_queue_segment("sink", rx, Identity, out);
        p.build().expect("valid").run().expect("runs");
        got.take()
    });
    let low: Vec<u64> = got.iter().copied().filter(|x| *x < 1000).collect();
    assert_eq!(low, (0..500).collect::<Vec<_>>(), "per-source order holds");
    got.sort_unstable();
    assert_eq!(got, (0..500).chain(1000..1500).collect::<Vec<_>>());
}

/// A source that is never ready: only `stop()` ends it.
struct Stalled;

impl Source for Stalled {
    type Item = u64;
    fn poll<E: Emit<u64>>(
        &mut self,
        _: &mut SourceContext<'_>,
        _: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        Ok(SourcePoll::Pending)
    }
}

#[test]
fn stop_returns_promptly_while_sources_stall() {
    within(BOUND, || {
        let config = small_queues();
        let (channel, handle) = ChannelSource::<u64>::with_config(&config);
        let mut p = PipelineBuilder::new(config);
        let (tx, rx) = p.queue::<u64>("q");
        let sink = CollectSink::new();
        let got = sink.handle();
        let out = p.sink("out", sink);
        p.add_source("stalled", Stalled, Identity, QueueOutput::new(tx.clone()));
        p.add_source("channel", channel, Identity, QueueOutput::new(tx));
        p.add_queue_segment("sink", rx, Identity, out);
        let running = p.build().expect("valid").spawn().expect("starts");
        for x in 0..3 {
            assert_eq!(handle.send(x).expect("running"), SendOutcome::Sent);
        }
        let t0 = Instant::now();
        let report = running.stop().expect("graceful stop");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "stop took {took:?}");
        // Events the channel already accepted are delivered: the stop is a drain, not a drop.
        let mut got = got.take();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(report.events_out, 3);
        // After the stop, sends are refused and the event is handed back.
        let refused = handle.send(7).expect_err("the pipeline stopped");
        assert_eq!((refused.item, refused.reason), (7, SendFailure::Closed));
    });
}

/// A source stuck inside `poll` (ignoring stop): `stop()` still returns within its bound, with
/// an error naming the stuck segment.
struct StuckInPoll {
    entered: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

impl Source for StuckInPoll {
    type Item = u64;
    fn poll<E: Emit<u64>>(
        &mut self,
        _: &mut SourceContext<'_>,
        _: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        let _ = self.entered.send(());
        let _ = self.release.recv();
        Ok(SourcePoll::Done)
    }
}

#[test]
fn stop_is_bounded_even_when_a_source_ignores_it() {
    within(BOUND, || {
        let config = PipelineConfig::builder()
            .stop_timeout(Duration::from_millis(200))
            .build()
            .expect("valid");
        let (release, stuck) = mpsc::channel::<()>();
        let (entered_tx, entered) = mpsc::channel::<()>();
        let mut p = PipelineBuilder::new(config);
        let (tx, rx) = p.queue::<u64>("q");
        let out = p.sink("out", CollectSink::new());
        let source = StuckInPoll {
            entered: entered_tx,
            release: stuck,
        };
        p.add_source("stuck", source, Identity, QueueOutput::new(tx));
        p.add_queue_segment("sink", rx, Identity, out);
        let running = p.build().expect("valid").spawn().expect("starts");
        entered.recv().expect("the source is polled");
        let t0 = Instant::now();
        let err = running
            .stop()
            .expect_err("cannot stop a source stuck in poll");
        assert!(t0.elapsed() < Duration::from_secs(2));
        match err {
            PipelineError::StopTimeout { stuck, .. } => assert_eq!(stuck, ["stuck"]),
            other => panic!("unexpected {other}"),
        }
        // Let the detached thread finish so the test leaves nothing behind.
        let _ = release.send(());
    });
}

fn panics_at(n: u64) -> impl FnMut(u64) -> u64 + Send {
    move |x| {
        if x == n {
            panic!("boom at {x}");
        }
        x
    }
}

#[test]
fn a_panicking_stage_stops_every_thread() {
    let err = within(BOUND, || {
        // Tiny Block queues: the source is blocked on a full queue when the consumer dies.
        let mut p = PipelineBuilder::new(small_queues());
        let (t1, r1) = p.queue::<u64>("q1");
        let (t2, r2) = p.queue::<u64>("q2");
        let out = p.sink("out", CollectSink::new());
        p.add_source(
            "src",
            IterSource::new(0..u64::MAX),
            Identity,
            QueueOutput::new(t1),
        );
        p.add_queue_segment("fragile", r1, map(panics_at(1000)), QueueOutput::new(t2));
        p.add_queue_segment("tail", r2, Identity, out);
        p.build()
            .expect("valid")
            .run()
            .expect_err("the stage panicked")
    });
    match err {
        PipelineError::Panicked {
            node,
            segment,
            message,
        } => {
            // An unnamed stage (built by hand, not through `p.stage(..)`) is known by its segment.
            assert_eq!((node.as_str(), segment.as_str()), ("fragile", "fragile"));
            assert_eq!(message, "boom at 1000");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_panicking_sink_or_source_is_reported() {
    let err = within(BOUND, || {
        let mut p = PipelineBuilder::new(small_queues());
        let (tx, rx) = p.queue::<u64>("q");
        let out = p.sink(
            "bad_sink",
            CallbackSink::new(|x: u64| {
                assert!(x < 10, "sink cannot take {x}");
                Ok(())
            }),
        );
        p.add_source(
            "src",
            IterSource::new(0..100u64),
            Identity,
            QueueOutput::new(tx),
        );
        p.add_queue_segment("sink", rx, Identity, out);
        p.build().expect("valid").run().expect_err("sink panicked")
    });
    assert!(
        matches!(err, PipelineError::Panicked { ref node, ref segment, .. } if node == "bad_sink" && segment == "sink"),
        "{err}"
    );

    let err = within(BOUND, || {
        let mut p = PipelineBuilder::new(small_queues());
        let out = p.sink("out", CollectSink::new());
        let src = IterSource::new((0..100u64).map(panics_at(50)));
        p.add_source("src", src, Identity, out);
        p.build()
            .expect("valid")
            .run()
            .expect_err("source panicked")
    });
    assert!(
        matches!(err, PipelineError::Panicked { ref node, ref segment, .. } if node == "src" && segment == "src"),
        "{err}"
    );
}

/// A stage that reports an error through `Emit::fail`.
struct Validate;

impl Stage<i64> for Validate {
    type Out = i64;
    fn process<E: Emit<i64>>(&mut self, item: i64, out: &mut E) {
        if item < 0 {
            out.fail(StageError::new(format!("negative value {item}")));
        } else {
            out.emit(item);
        }
    }
}

#[test]
fn stage_and_sink_errors_stop_the_pipeline() {
    let err = within(BOUND, || {
        let mut p = PipelineBuilder::new(small_queues());
        let (tx, rx) = p.queue::<i64>("q");
        let out = p.sink("out", CollectSink::new());
        p.add_source(
            "src",
            IterSource::new([1, 2, -3, 4]),
            Identity,
            QueueOutput::new(tx),
        );
        p.add_queue_segment("check", rx, Validate, out);
        p.build().expect("valid").run().expect_err("stage failed")
    });
    assert_eq!(
        err.to_string(),
        "stage `check` (segment `check`) failed: negative value -3"
    );

    let err = within(BOUND, || {
        let mut p = PipelineBuilder::new(small_queues());
        let out = p.sink(
            "picky",
            CallbackSink::new(|x: u64| {
                if x == 7 {
                    Err(SinkError::Other("seven is not allowed".into()))
                } else {
                    Ok(())
                }
            }),
        );
        p.add_source("src", IterSource::new(0..100u64), Identity, out);
        p.build().expect("valid").run().expect_err("sink failed")
    });
    assert_eq!(err.to_string(), "sink `picky` failed: seven is not allowed");
}

struct FailsToOpen;

impl Sink<u64> for FailsToOpen {
    fn open(&mut self) -> Result<(), SinkError> {
        Err(SinkError::Other("no such device".into()))
    }
    fn send(&mut self, _: u64) -> Result<(), SinkError> {
        Ok(())
    }
}

#[test]
fn a_sink_that_cannot_open_stops_before_any_source_reads() {
    let (read, polled) = within(BOUND, || {
        let (counter_tx, counter_rx) = mpsc::channel::<u64>();
        let mut p = PipelineBuilder::new(small_queues());
        let (tx, rx) = p.queue::<u64>("q");
        let out = p.sink("device", FailsToOpen);
        let src = IterSource::new((0..100u64).inspect(move |x| {
            let _ = counter_tx.send(*x);
        }));
        p.add_source("src", src, Identity, QueueOutput::new(tx));
        p.add_queue_segment("sink", rx, Identity, out);
        let err = p.build().expect("valid").spawn().expect_err("open fails");
        (err.to_string(), counter_rx.try_iter().count())
    });
    assert_eq!(read, "sink `device` failed: no such device");
    assert_eq!(polled, 0);
}

#[test]
fn dropping_a_handle_stops_and_joins() {
    within(BOUND, || {
        let config = small_queues();
        let (channel, handle) = ChannelSource::<u64>::with_config(&config);
        let mut p = PipelineBuilder::new(config);
        let out = p.sink("out", CollectSink::new());
        p.add_source("channel", channel, Identity, out);
        let running = p.build().expect("valid").spawn().expect("starts");
        drop(running);
        // The source is gone: sends fail and hand the event back.
        let err = handle.send(5).expect_err("pipeline stopped");
        assert_eq!(err.item, 5);
    });
}

#[test]
fn metrics_are_readable_while_running() {
    within(BOUND, || {
        let config = small_queues();
        let (channel, handle) = ChannelSource::<u64>::with_config(&config);
        let mut p = PipelineBuilder::new(config);
        let sink = CollectSink::new();
        let got = sink.handle();
        let out = p.sink("out", sink);
        p.add_source("channel", channel, Identity, out);
        let running = p.build().expect("valid").spawn().expect("starts");
        for x in 0..100 {
            let _ = handle.send(x).expect("running");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 100 && Instant::now() < deadline {
            thread::yield_now();
        }
        let snap = running.metrics();
        assert_eq!(snap.node("out").map(|n| n.events_in), Some(100));
        assert!(!running.is_finished());
        drop(handle);
        let report = running.join().expect("ends when the handle is dropped");
        assert_eq!(report.events_out, 100);
    });
}
