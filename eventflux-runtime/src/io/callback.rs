//! `CallbackSink`: hands each event to a closure.

use crate::error::SinkError;
use crate::sink::Sink;

/// Calls `f(event)` for every event; an `Err` stops the pipeline.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut total = 0u64;
/// {
///     let mut sink = CallbackSink::new(|x: u64| { total += x; Ok(()) });
///     sink.send(4).unwrap();
///     sink.send(5).unwrap();
/// }
/// assert_eq!(total, 9);
/// ```
#[derive(Debug, Clone)]
pub struct CallbackSink<F> {
    f: F,
}

impl<F> CallbackSink<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<T, F> Sink<T> for CallbackSink<F>
where
    F: FnMut(T) -> Result<(), SinkError> + Send,
{
    /// Writes (or user code) can wait: marked so a stuck stop names this sink.
    fn may_block(&self) -> bool {
        true
    }

    #[inline]
    fn send(&mut self, item: T) -> Result<(), SinkError> {
        (self.f)(item)
    }
}
