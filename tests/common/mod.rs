//! Helpers shared by the integration tests that run whole pipelines.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

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
