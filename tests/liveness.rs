//! Liveness: results reach sinks while the stream is live, not only at its end.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eventflux::prelude::*;

/// A sink that, like a buffered file writer, makes rows visible only on `flush`.
#[derive(Clone, Default)]
struct Visible(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Visible {
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
    let sink = Buffered {
        pending: Vec::new(),
        visible: visible.clone(),
    };
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
        ["Row { key: (), window: Some(Bounds { start: 0, end: 10 }), values: 10 }"]
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
