//! Failure paths: a failure is never an end of stream. When anything fails, no stage sees
//! `on_end` (windows do not flush partial rows), no sink sees `close()`, and every opened sink
//! gets `abort()` exactly once — whichever thread failed. A sink whose `send` failed receives
//! nothing more. Errors name the node that failed. Settings that cannot run are an `Err`.
//!
//! Every test that could hang runs under `within`.

use std::fmt::Debug;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use eventflux::prelude::*;

mod common;
use common::{BOUND, within};

/// What a sink was asked to do, in order (flushes are not logged: they depend on timing).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn count(&self, what: &str) -> usize {
        self.entries().iter().filter(|e| *e == what).count()
    }
    fn sends(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter_map(|e| e.strip_prefix("send ").map(str::to_string))
            .collect()
    }
}

/// A sink that logs every call; `fail_at` makes the n-th send (1-based) fail.
struct Recorder {
    log: Log,
    fail_at: Option<usize>,
    sends: usize,
}

fn recorder(log: &Log) -> Recorder {
    Recorder {
        log: log.clone(),
        fail_at: None,
        sends: 0,
    }
}

impl<T: Debug> Sink<T> for Recorder {
    fn open(&mut self) -> Result<(), SinkError> {
        self.log.push("open".into());
        Ok(())
    }
    fn send(&mut self, item: T) -> Result<(), SinkError> {
        self.sends += 1;
        self.log.push(format!("send {item:?}"));
        if Some(self.sends) == self.fail_at {
            return Err(SinkError::Other(format!("rejected send #{}", self.sends)));
        }
        Ok(())
    }
    fn close(&mut self) -> Result<(), SinkError> {
        self.log.push("close".into());
        Ok(())
    }
    fn abort(&mut self) {
        self.log.push("abort".into());
    }
}

#[derive(Clone, Copy)]
enum How {
    Error,
    Panic,
}

/// Counts 0, 1, 2, … and fails (or panics) when it reaches `fail_at`.
struct FailsAfter {
    next: u64,
    fail_at: u64,
    how: How,
}

impl Source for FailsAfter {
    type Item = u64;
    fn poll<E: Emit<u64>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        for _ in 0..cx.max_items() {
            if self.next == self.fail_at {
                match self.how {
                    How::Error => return Err(SourceError::Other("the disk is on fire".into())),
                    How::Panic => panic!("source panicked at {}", self.next),
                }
            }
            out.emit(self.next);
            self.next += 1;
        }
        Ok(SourcePoll::Ready)
    }
}

/// The case: a source failing after 1 500 events into
/// `=> length_batch(1000).aggregate(count()) -> sink`. The complete window `[0, 1000)` may be
/// delivered; the partial `[1000, 1500)` never is, and the sink is aborted, never closed.
fn failing_source_into_window(how: How) -> (PipelineError, Log) {
    let log = Log::default();
    let sink_log = log.clone();
    let err = within(BOUND, move || {
        let app = pipeline! {
            config { queue_capacity: 4096, batch_size: 256 }
            source src = FailsAfter { next: 0, fail_at: 1500, how };
            stage  win = length_batch(1000).aggregate(count());
            sink   out = recorder(&sink_log);
            src => win -> out;
        };
        app.run().expect_err("the source failed")
    });
    (err, log)
}

#[test]
fn a_failing_source_never_flushes_windows_or_closes_sinks() {
    for round in 0..20 {
        for how in [How::Error, How::Panic] {
            let (err, log) = failing_source_into_window(how);
            match (how, &err) {
                (How::Error, PipelineError::Source { segment, .. }) => assert_eq!(segment, "src"),
                (How::Panic, PipelineError::Panicked { node, message, .. }) => {
                    assert_eq!(node, "src");
                    assert_eq!(message, "source panicked at 1500");
                }
                _ => panic!("round {round}: unexpected error {err}"),
            }
            let entries = log.entries();
            assert_eq!(entries.first().map(String::as_str), Some("open"));
            assert_eq!(
                log.count("close"),
                0,
                "round {round}: closed a failed run: {entries:?}"
            );
            assert_eq!(log.count("abort"), 1, "round {round}: {entries:?}");
            assert_eq!(entries.last().map(String::as_str), Some("abort"));
            let sends = log.sends();
            assert!(
                sends.iter().all(|s| s.contains("values: 1000")),
                "round {round}: a partial window leaked: {sends:?}"
            );
            assert!(sends.len() <= 1, "round {round}: {sends:?}");
        }
    }
}

/// A stage calling `Emit::fail` on the source's own thread: the consumer behind `=>` sees a
/// failure, not an end of stream.
#[test]
fn a_failing_source_side_stage_is_not_an_end_of_stream() {
    let log = Log::default();
    let sink_log = log.clone();
    let err = within(BOUND, move || {
        let app = pipeline! {
            config { batch_size: 64 }
            source src = IterSource::new(0..10_000u64);
            stage  check = Reject(|x: &u64| (*x == 700).then(|| format!("{x} is not allowed")));
            stage  win = length_batch(100).aggregate(count());
            sink   out = recorder(&sink_log);
            src -> check => win -> out;
        };
        app.run().expect_err("the stage failed")
    });
    match &err {
        PipelineError::Stage {
            node,
            segment,
            source,
        } => {
            assert_eq!((node.as_str(), segment.as_str()), ("check", "src"));
            assert_eq!(source.message(), "700 is not allowed");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(log.count("close"), 0, "{:?}", log.entries());
    assert_eq!(log.count("abort"), 1);
    assert!(
        log.sends().iter().all(|s| s.contains("values: 100")),
        "{:?}",
        log.sends()
    );
    assert!(
        log.sends().len() <= 7,
        "at most the 7 complete windows below 700"
    );
}

/// Passes events through, and reports `Emit::fail` with the message `why` returns for an event
/// it rejects.
struct Reject<F>(F);

impl<T, F: Fn(&T) -> Option<String>> Stage<T> for Reject<F> {
    type Out = T;
    fn process<E: Emit<T>>(&mut self, x: T, out: &mut E) {
        match (self.0)(&x) {
            Some(why) => out.fail(StageError::new(why)),
            None => out.emit(x),
        }
    }
}

/// A sink whose `send` fails at the 1000th event of a 1024-event batch receives nothing more,
/// and is aborted (not closed) — here the failure is on the sink's own thread.
#[test]
fn a_sink_that_failed_receives_nothing_more() {
    for crossing in [false, true] {
        let log = Log::default();
        let sink_log = log.clone();
        let err = within(BOUND, move || {
            let mut sink = recorder(&sink_log);
            sink.fail_at = Some(1000);
            let app = if crossing {
                pipeline! {
                    config { batch_size: 1024 }
                    source src = IterSource::new(1..=5000u64);
                    sink   out = sink;
                    src => out;
                }
            } else {
                pipeline! {
                    config { batch_size: 1024 }
                    source src = IterSource::new(1..=5000u64);
                    sink   out = sink;
                    src -> out;
                }
            };
            app.run().expect_err("the sink failed")
        });
        assert_eq!(err.to_string(), "sink `out` failed: rejected send #1000");
        let sends = log.sends();
        assert_eq!(
            sends.len(),
            1000,
            "sent after the failure: {:?}",
            &sends[990..]
        );
        assert_eq!(sends.last().map(String::as_str), Some("1000"));
        assert_eq!(log.count("close"), 0);
        assert_eq!(log.count("abort"), 1);
    }
}

/// Every opened sink of a failed run is aborted once, on whichever thread the failure was:
/// here one sink is fused with the failing source and another is behind a queue.
#[test]
fn every_sink_is_aborted_whichever_thread_failed() {
    let (near, far) = (Log::default(), Log::default());
    let (n2, f2) = (near.clone(), far.clone());
    within(BOUND, move || {
        let app = pipeline! {
            config { batch_size: 16 }
            source src   = FailsAfter { next: 0, fail_at: 100, how: How::Error };
            stage  pass  = map(|x: u64| x);
            sink   near  = recorder(&n2);
            sink   far   = recorder(&f2);
            src -> near;
            src -> pass => far;
        };
        app.run().expect_err("the source failed")
    });
    for log in [near, far] {
        assert_eq!(log.count("abort"), 1, "{:?}", log.entries());
        assert_eq!(log.count("close"), 0);
    }
}

/// A panic in the second stage of a keyed worker segment names that stage (and the worker's
/// segment), not the segment's first node.
#[test]
fn errors_name_the_node_not_its_segment() {
    let err = within(BOUND, || {
        let app = pipeline! {
            source src = IterSource::new(0..1000u64);
            stage  pre = map(|x: u64| x + 1);
            stage  win = map(|x: u64| if x == 500 { panic!("win broke on {x}") } else { x });
            sink   out = CollectSink::new();
            src =>[workers = 2, key = |x: &u64| *x % 2] pre -> win => out;
        };
        app.run().expect_err("win panicked")
    });
    match &err {
        PipelineError::Panicked {
            node,
            segment,
            message,
        } => {
            assert_eq!(node, "win");
            assert!(segment == "pre#0" || segment == "pre#1", "{segment}");
            assert_eq!(message, "win broke on 500");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().starts_with("node `win` (segment `pre#"),
        "{err}"
    );

    // Without stage metrics, stages are still named.
    let err = within(BOUND, || {
        let app = pipeline! {
            config { metrics: false }
            source src = IterSource::new(0..10i64);
            stage  a   = map(|x: i64| x - 5);
            stage  b   = Reject(|x: &i64| (*x < 0).then(|| format!("{x} is negative")));
            sink   out = CollectSink::new();
            src -> a -> b -> out;
        };
        app.run().expect_err("b failed")
    });
    assert_eq!(
        err.to_string(),
        "stage `b` (segment `src`) failed: -5 is negative"
    );
}

/// A sink that says when it is inside `send`, then blocks there until released.
struct Stuck {
    entered: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
}

impl Sink<u64> for Stuck {
    fn send(&mut self, _: u64) -> Result<(), SinkError> {
        let _ = self.entered.send(());
        let _ = self.release.recv();
        Ok(())
    }

    /// It waits on the outside world, and says so.
    fn may_block(&self) -> bool {
        true
    }
}

/// `stop()` on a segment stuck in a fused sink that may block names the sink.
#[test]
fn a_stuck_fused_sink_is_named_by_stop() {
    let (release_tx, release) = mpsc::channel::<()>();
    let (entered, in_send) = mpsc::channel::<()>();
    let err = within(BOUND, move || {
        let app = pipeline! {
            config { stop_timeout_ms: 50 }
            source src = IterSource::new(0..10u64);
            stage  pass = map(|x: u64| x);
            sink   out = Stuck { entered, release };
            src -> pass -> out;
        };
        let handle = app.spawn().expect("starts");
        in_send.recv().expect("the sink is entered");
        handle.stop().expect_err("the sink never returns")
    });
    let release = release_tx;
    drop(release); // lets the detached thread finish
    assert_eq!(
        err.to_string().split("; ").nth(1).unwrap_or_default(),
        "still running: src (blocked in sink `out`)"
    );
}

/// A configuration whose queues cannot be allocated is an `Err` naming the setting, before
/// anything large is allocated.
#[test]
fn settings_that_cannot_run_are_errors() {
    let err = PipelineConfig::builder()
        .queue_capacity(268_435_456)
        .batch_size(1)
        .build()
        .expect_err("2^28 slots");
    assert!(err.to_string().starts_with("invalid `batch_size`"), "{err}");

    // Within the slot bound but 16 GiB of 64-byte events: `build` says which setting.
    let config = PipelineConfig::builder()
        .queue_capacity(1 << 28)
        .batch_size(1 << 12)
        .build()
        .expect("slots are fine");
    let mut p = PipelineBuilder::new(config);
    let (tx, rx) = p.queue::<[u64; 8]>("big");
    let out = p.sink("out", CollectSink::new());
    p.add_source(
        "src",
        IterSource::new(std::iter::empty::<[u64; 8]>()),
        Identity,
        QueueOutput::new(tx),
    );
    p.add_queue_segment("use", rx, Identity, out);
    let err = p.build().expect_err("too much memory");
    assert!(
        err.to_string()
            .starts_with("invalid `queue_capacity`: 268435456 is out of range"),
        "{err}"
    );
}

/// The built-in JSON-lines sink discards what it buffered when the run fails: a failed run
/// leaves only lines that were written out while the stream was live — here none (before, the
/// file's buffered writer wrote all 100 lines when it was dropped).
#[test]
fn a_failed_run_leaves_no_buffered_lines_in_a_file() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("out.jsonl");
    let file = JsonLinesSink::<u64>::create(&path)?;
    let err = within(BOUND, move || {
        let app = pipeline! {
            config { batch_size: 1000 }
            source src  = FailsAfter { next: 0, fail_at: 100, how: How::Error };
            sink   file = file;
            src -> file;
        };
        app.run().expect_err("the source failed")
    });
    assert!(matches!(err, PipelineError::Source { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path)?, "");
    Ok(())
}

/// A stage that panics *after* its downstream stage and sink have run for the same event is
/// named, not the downstream node that ran last; a sink that panics in `send` is named too.
#[test]
fn a_panic_after_emitting_names_the_stage_that_panicked() {
    let node_of = |err: PipelineError| match err {
        PipelineError::Panicked { node, .. } => node,
        other => panic!("unexpected {other}"),
    };
    let err = within(BOUND, || {
        let app = pipeline! {
            source src  = IterSource::new(0..1000u64);
            stage  pair = flat_map(|x: u64| (0..2u64).map(move |i| {
                if x == 500 && i == 1 { panic!("pair broke after emitting {x}") }
                x * 2 + i
            }));
            stage  down = map(|x: u64| x + 1);
            sink   out  = CollectSink::new();
            src -> pair -> down -> out;
        };
        app.run().expect_err("pair panicked")
    });
    assert_eq!(node_of(err), "pair");

    let err = within(BOUND, || {
        let app = pipeline! {
            source src  = IterSource::new(0..1000u64);
            stage  down = map(|x: u64| x + 1);
            sink   out  = CallbackSink::new(|x: u64| {
                if x == 700 { panic!("sink broke on {x}") }
                Ok(())
            });
            src -> down -> out;
        };
        app.run().expect_err("the sink panicked")
    });
    assert_eq!(node_of(err), "out");
}

/// In a fused chain run as one loop (a source's whole batch through pulled stages into a
/// window), a panic is blamed on the node whose code panicked: the source's iterator, a pulled
/// `filter` or `map`, the window pulling them, or the sink.
#[test]
fn a_panic_in_a_fused_run_names_the_node_whose_code_panicked() {
    let node_of = |err: PipelineError| match err {
        PipelineError::Panicked { node, .. } => node,
        other => panic!("unexpected {other}"),
    };
    let boom = |at: &str, here: &str, x: u64| {
        if at == here && x == 500 {
            panic!("{here} broke at {x}");
        }
    };
    for at in ["src", "big", "value", "stats", "out"] {
        let err = within(BOUND, move || {
            let app = pipeline! {
                source src   = IterSource::new((0..1000u64).inspect(move |x| boom(at, "src", *x)));
                stage  big   = filter(move |x: &u64| { boom(at, "big", *x); x % 7 != 4 });
                stage  value = map(move |x: u64| { boom(at, "value", x); (x, x % 4) });
                stage  stats = tumbling(100, move |e: &(u64, u64)| { boom(at, "stats", e.0); e.0 })
                    .group_by(|e: &(u64, u64)| e.1)
                    .aggregate(count());
                sink   out   = CallbackSink::new(move |r: Row<u64, u64>| {
                    boom(at, "out", r.window.start);
                    Ok(())
                });
                src -> big -> value -> stats -> out;
            };
            app.run().expect_err("a node panicked")
        });
        assert_eq!(node_of(err), at);
    }
}
