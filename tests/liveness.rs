//! Liveness: results reach sinks while the stream is live, not only at its end.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eventflux::prelude::*;
use eventflux::window::Clock;

/// A sink that, like a buffered file writer, makes rows visible only on `flush`.
#[derive(Clone, Default)]
struct Visible(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Visible {
    /// A sink whose rows become visible here when it is flushed.
    fn sink(&self) -> Buffered {
        Buffered {
            pending: Vec::new(),
            visible: self.clone(),
        }
    }

    /// Waits until `n` rows are visible or `bound` passes; returns the rows and the wait.
    fn wait_for(&self, n: usize, bound: Duration) -> (Vec<String>, Duration) {
        let t0 = Instant::now();
        let (rows, cv) = &*self.0;
        let mut rows = rows.lock().unwrap();
        while rows.len() < n {
            let left = bound.saturating_sub(t0.elapsed());
            if left.is_zero() {
                break;
            }
            rows = cv.wait_timeout(rows, left).unwrap().0;
        }
        (rows.clone(), t0.elapsed())
    }
}

/// Waits (bounded) until node `node` of a running pipeline has taken in `n` events.
fn wait_for_events(handle: &PipelineHandle, node: &str, n: u64) {
    let t0 = Instant::now();
    while handle.metrics().node(node).map_or(0, |m| m.events_in) < n {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "`{node}` never saw {n} events"
        );
        std::thread::yield_now();
    }
}

struct Buffered {
    pending: Vec<String>,
    visible: Visible,
}

impl<T: std::fmt::Debug> Sink<T> for Buffered {
    fn send(&mut self, item: T) -> Result<(), SinkError> {
        self.pending.push(format!("{item:?}"));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        let (rows, cv) = &*self.visible.0;
        rows.lock().unwrap().append(&mut self.pending);
        cv.notify_all();
        Ok(())
    }
}

/// channel → watermarks → `=>` → window → sink, input idle after one window closes: the row is
/// visible in the sink within 100 ms (before the fix it stayed buffered until the end of the
/// stream, because a watermark followed every batch and only a batch triggered a flush).
#[test]
fn a_closed_window_reaches_the_sink_while_the_input_is_idle() {
    let visible = Visible::default();
    let (source, tx) =
        channel_source::<(u64, u32)>(1024, Backpressure::Block, IdleStrategy::balanced());
    let sink = visible.sink();
    let app = pipeline! {
        source readings = source;
        stage  marks    = watermarks(|r: &(u64, u32)| r.0, 0);
        stage  per_10   = tumbling(10, |r: &(u64, u32)| r.0).aggregate(count());
        sink   out      = sink;
        readings -> marks => per_10 -> out;
    };
    let handle = app.spawn().expect("starts");
    for ts in 0..10 {
        assert_eq!(tx.send((ts, 1)), Ok(SendOutcome::Sent));
    }
    assert_eq!(tx.send((15, 1)), Ok(SendOutcome::Sent)); // closes [0, 10); then the input goes quiet
    let (rows, waited) = visible.wait_for(1, Duration::from_secs(5));
    assert_eq!(
        rows,
        ["Row { key: (), window: Bounds { start: 0, end: 10 }, values: 10 }"]
    );
    assert!(
        waited < Duration::from_millis(100),
        "the row took {waited:?} to become visible"
    );
    drop(tx);
    handle.join().expect("ends cleanly");
    let (rows, _) = visible.wait_for(2, Duration::ZERO);
    assert_eq!(
        rows.len(),
        2,
        "the last window flushes at the end: {rows:?}"
    );
}

/// An open but quiet channel does not stall event time: with `idle_timeout`, once the input has
/// been idle for the timeout (by the pipeline's clock, a manual one here), the watermark moves
/// with processing time and the session closes — while the channel is still open, across `=>`.
#[test]
fn an_idle_input_closes_its_session_while_the_channel_is_open() {
    let visible = Visible::default();
    let clock = ManualClock::new(0);
    let (source, tx) =
        channel_source::<(u64, u32)>(1024, Backpressure::Block, IdleStrategy::balanced());
    let sink = visible.sink();
    let marks = watermarks(|r: &(u64, u32)| r.0, 0)
        .idle_timeout_with_clock(Duration::from_millis(100), clock.clone());
    let app = pipeline! {
        source readings = source;
        stage  marks    = marks;
        stage  sessions = session(50, |r: &(u64, u32)| r.0, |r: &(u64, u32)| r.1).aggregate(count());
        sink   out      = sink;
        readings -> marks => sessions -> out;
    };
    let handle = app.spawn().expect("starts");
    assert_eq!(tx.send((100, 7)), Ok(SendOutcome::Sent));
    assert_eq!(tx.send((140, 7)), Ok(SendOutcome::Sent)); // one session [100, 190)
    wait_for_events(&handle, "sessions", 2);
    // Not idle yet (the clock has not moved): the session stays open.
    let (rows, _) = visible.wait_for(1, Duration::from_millis(50));
    assert!(
        rows.is_empty(),
        "closed before the input was idle: {rows:?}"
    );
    // 100 ms of quiet: the watermark becomes 140 − 0 − 1 + 100 = 239 ≥ 189.
    clock.advance(100_000_000);
    let (rows, _) = visible.wait_for(1, Duration::from_secs(5));
    assert_eq!(
        rows,
        ["Row { key: 7, window: Bounds { start: 100, end: 190 }, values: 2 }"],
        "the session closed while the channel was open"
    );
    drop(tx);
    handle.join().expect("ends cleanly");
    assert_eq!(
        visible.wait_for(2, Duration::ZERO).0.len(),
        1,
        "nothing more"
    );
}

/// Holds events and releases them once its clock has moved `quiet` past the last one.
struct Debounce {
    clock: ManualClock,
    quiet: u64,
    last: u64,
    held: Vec<u32>,
}
impl Debounce {
    fn new(clock: ManualClock, quiet: u64) -> Self {
        Self {
            clock,
            quiet,
            last: 0,
            held: Vec::new(),
        }
    }
}

impl Stage<u32> for Debounce {
    type Out = Vec<u32>;
    fn process<E: Emit<Vec<u32>>>(&mut self, x: u32, _: &mut E) {
        self.held.push(x);
        self.last = self.clock.now();
    }
    fn next_timer(&self) -> Option<Duration> {
        let due = self.last + self.quiet;
        (!self.held.is_empty()).then(|| Duration::from_nanos(due.saturating_sub(self.clock.now())))
    }
    fn on_timer<E: Emit<Vec<u32>>>(&mut self, out: &mut E) {
        if self.clock.now() >= self.last + self.quiet && !self.held.is_empty() {
            out.emit(std::mem::take(&mut self.held));
        }
    }
}

/// A custom stage's processing-time timer fires while its input is quiet: a debounce that
/// releases what it holds once its clock has moved `quiet` past the last event.
#[test]
fn a_custom_stage_timer_fires_on_a_quiet_input() {
    let visible = Visible::default();
    let clock = ManualClock::new(0);
    let (source, tx) = channel_source::<u32>(1024, Backpressure::Block, IdleStrategy::balanced());
    let sink = visible.sink();
    let debounce = Debounce::new(clock.clone(), 1_000_000);
    let app = pipeline! {
        source input = source;
        stage  calm  = debounce;
        sink   out   = sink;
        input => calm -> out;
    };
    let handle = app.spawn().expect("starts");
    for x in [1, 2, 3] {
        assert_eq!(tx.send(x), Ok(SendOutcome::Sent));
    }
    wait_for_events(&handle, "calm", 3);
    let (rows, _) = visible.wait_for(1, Duration::from_millis(50));
    assert!(
        rows.is_empty(),
        "released before the quiet period: {rows:?}"
    );
    clock.advance(1_000_000);
    let (rows, _) = visible.wait_for(1, Duration::from_secs(5));
    assert_eq!(rows, ["[1, 2, 3]"], "released while the channel is open");
    drop(tx);
    handle.join().expect("ends cleanly");
}

/// At a fan-in the minimum watermark rules, so one quiet input holds every window back; with
/// `idle_timeout` its watermark moves on with processing time and the busy input's windows close.
#[test]
fn an_idle_input_stops_holding_back_a_fan_in() {
    let visible = Visible::default();
    let clock = ManualClock::new(0);
    let channel =
        || channel_source::<(u64, u32)>(4096, Backpressure::Block, IdleStrategy::balanced());
    let ((busy, busy_tx), (quiet, quiet_tx)) = (channel(), channel());
    let marks = || {
        watermarks(|r: &(u64, u32)| r.0, 0)
            .idle_timeout_with_clock(Duration::from_millis(100), clock.clone())
    };
    let (mb, mq) = (marks(), marks());
    let sink = visible.sink();
    let app = pipeline! {
        source busy  = busy;
        source quiet = quiet;
        stage  mb    = mb;
        stage  mq    = mq;
        stage  win   = tumbling(1000, |r: &(u64, u32)| r.0).group_by(|r: &(u64, u32)| r.1).aggregate(count());
        sink   out   = sink;
        busy -> mb => win -> out;
        quiet -> mq => win;
    };
    let handle = app.spawn().expect("starts");
    assert_eq!(quiet_tx.send((0, 1)), Ok(SendOutcome::Sent));
    for ts in (0..=2000).step_by(10) {
        assert_eq!(busy_tx.send((ts, 0)), Ok(SendOutcome::Sent));
    }
    wait_for_events(&handle, "win", 202);
    let (rows, _) = visible.wait_for(1, Duration::from_millis(50));
    assert!(
        rows.is_empty(),
        "the quiet input (watermark < 0) holds [0, 1000): {rows:?}"
    );
    // One second of quiet for both: the quiet input's watermark is 0 − 1 + 1000 = 999.
    clock.advance(1_000_000_000);
    let (mut rows, _) = visible.wait_for(2, Duration::from_secs(5));
    rows.sort(); // the two inputs race into the window: first-appearance order varies
    assert_eq!(
        rows,
        [
            "Row { key: 0, window: Bounds { start: 0, end: 1000 }, values: 100 }",
            "Row { key: 1, window: Bounds { start: 0, end: 1000 }, values: 1 }",
        ]
    );
    drop((busy_tx, quiet_tx));
    handle.join().expect("ends cleanly");
}

/// A timer in a fused branch after a fan-out (not the segment's main chain) fires too.
#[test]
fn a_timer_in_a_fan_out_branch_fires() {
    let visible = Visible::default();
    let clock = ManualClock::new(0);
    let (source, tx) = channel_source::<u32>(1024, Backpressure::Block, IdleStrategy::balanced());
    let sink = visible.sink();
    let debounce = Debounce::new(clock.clone(), 1_000_000);
    let copies = CollectSink::new();
    let copied = copies.handle();
    let app = pipeline! {
        source input = source;
        stage  calm  = debounce;
        sink   out   = sink;
        sink   copy  = copies;
        input -> calm -> out;
        input -> copy;
    };
    let handle = app.spawn().expect("starts");
    for x in [4, 5] {
        assert_eq!(tx.send(x), Ok(SendOutcome::Sent));
    }
    // The copy sink is flushed after the poll that fed both branches: the debounce has both.
    let t0 = Instant::now();
    while copied.len() < 2 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::yield_now();
    }
    clock.advance(1_000_000);
    let (rows, _) = visible.wait_for(1, Duration::from_secs(5));
    assert_eq!(rows, ["[4, 5]"]);
    drop(tx);
    handle.join().expect("ends cleanly");
    assert_eq!(copied.take(), [4, 5]);
}
