//! Shared run state of a pipeline: stop and abort flags, the first error, running segments.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::PipelineError;

#[derive(Default)]
struct State {
    error: Option<PipelineError>,
    running: Vec<String>,
    threads: Vec<Thread>,
}

/// Stop/abort signalling and completion tracking shared by a pipeline's threads.
pub(crate) struct Lifecycle {
    stop: AtomicBool,
    pub(crate) abort: Arc<AtomicBool>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Self {
            stop: AtomicBool::new(false),
            abort: Arc::new(AtomicBool::new(false)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Asks sources to end their streams (a graceful drain follows).
    pub(crate) fn request_stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            tracing::info!("stop requested: sources end their streams, queues drain");
        }
        self.unpark_all();
    }

    /// Makes every wait give up and every segment return.
    pub(crate) fn abort(&self) {
        if !self.abort.swap(true, Ordering::SeqCst) {
            tracing::warn!("aborting: every segment stops without draining");
        }
        self.unpark_all();
    }

    fn unpark_all(&self) {
        for t in &self.state().threads {
            t.unpark();
        }
    }

    /// Records `error` (the first real one wins) and aborts.
    pub(crate) fn fail(&self, error: PipelineError) {
        {
            let mut s = self.state();
            if s.error.is_none() && !error.is_aborted() {
                tracing::error!(error = %error, "a segment failed");
                s.error = Some(error);
            }
        }
        self.abort();
    }

    /// Marks `segment` as running (before its thread exists, so waits cannot miss it).
    pub(crate) fn starting(&self, segment: &str) {
        self.state().running.push(segment.to_string());
    }

    /// Registers a segment thread to be unparked on stop and abort.
    pub(crate) fn register_thread(&self, thread: Thread) {
        let mut s = self.state();
        s.threads.push(thread);
        let aborting = self.aborted() || self.stop_requested();
        drop(s);
        if aborting {
            self.unpark_all();
        }
    }

    pub(crate) fn finished(&self, segment: &str) {
        let mut s = self.state();
        if let Some(i) = s.running.iter().position(|n| n == segment) {
            s.running.remove(i);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Waits until no segment runs, at most `timeout`. Returns the ones still running.
    pub(crate) fn wait_finished(&self, timeout: Option<Duration>) -> Vec<String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.state();
        while !s.running.is_empty() {
            match deadline {
                None => s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    s = self
                        .changed
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        s.running.clone()
    }

    /// How many segments are running.
    #[cfg(feature = "dashboard")]
    pub(crate) fn running_count(&self) -> usize {
        self.state().running.len()
    }

    pub(crate) fn take_error(&self) -> Option<PipelineError> {
        self.state().error.take()
    }
}
