//! Helpers shared by the integration tests that run whole pipelines (each test binary uses
//! some of them).
#![allow(dead_code)]

use std::process::Child;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a pipeline test may take before it counts as hung.
pub const BOUND: Duration = Duration::from_secs(20);

/// Runs `f` on a thread and fails the test if it takes longer than `bound`, so a hang is a
/// failure, never a stuck CI run.
pub fn within<T: Send + 'static>(bound: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(bound) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {bound:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked (above)"),
    }
}

/// Waits for `child` at most a minute (then kills it), and fails the test unless it exited
/// successfully; `what` names it in the failure.
pub fn wait_success(child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within a minute");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
