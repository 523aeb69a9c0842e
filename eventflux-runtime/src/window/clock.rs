//! Processing-time clocks: the system's, or a manual one for exact tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A source of processing time, in nanoseconds from an arbitrary origin.
pub trait Clock: Send {
    /// The current time.
    fn now(&self) -> u64;
}

/// The system's monotonic clock (nanoseconds since the clock was created).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// A clock that moves only when told to: clones share the same time.
///
/// ```
/// use eventflux_runtime::window::{Clock, ManualClock};
/// let clock = ManualClock::new(0);
/// let seen_by_window = clock.clone();
/// clock.advance(1_500);
/// assert_eq!(seen_by_window.now(), 1_500);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start)))
    }

    /// Sets the time.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: u64) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
