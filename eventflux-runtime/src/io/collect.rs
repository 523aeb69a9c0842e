//! `CollectSink`: gathers events into a `Vec` readable after (or during) the run.

use std::sync::{Arc, Mutex, PoisonError};

use crate::error::SinkError;
use crate::sink::Sink;

/// Collects events. Events are buffered on the sink's thread and published to the shared
/// [`CollectHandle`] at every flush (so no lock is taken per event).
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut sink = CollectSink::new();
/// let handle = sink.handle();
/// sink.send(1).unwrap();
/// sink.send(2).unwrap();
/// sink.flush().unwrap();
/// assert_eq!(handle.take(), [1, 2]);
/// ```
#[derive(Debug)]
pub struct CollectSink<T> {
    local: Vec<T>,
    shared: Arc<Mutex<Vec<T>>>,
}

/// Reads what a [`CollectSink`] collected.
#[derive(Debug)]
pub struct CollectHandle<T> {
    shared: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectHandle<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> CollectSink<T> {
    /// An empty collector.
    pub fn new() -> Self {
        Self {
            local: Vec::new(),
            shared: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A handle to read the collected events.
    pub fn handle(&self) -> CollectHandle<T> {
        CollectHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> CollectHandle<T> {
    /// Takes everything collected (and flushed) so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.shared.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Number of events collected (and flushed) so far.
    pub fn len(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing has been collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Send> Sink<T> for CollectSink<T> {
    #[inline]
    fn send(&mut self, item: T) -> Result<(), SinkError> {
        self.local.push(item);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if !self.local.is_empty() {
            self.shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(&mut self.local);
        }
        Ok(())
    }
}
