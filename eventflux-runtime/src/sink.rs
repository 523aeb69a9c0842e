//! The [`Sink`] trait: where events leave a pipeline.
//!
//! Sinks are called on their segment's thread. `open` runs before any source starts; `send`
//! takes each event by value; `flush` is called when the upstream has nothing more to give for
//! now (and before checkpoints), `close` once at end of stream. An `Err` from any of them stops
//! the pipeline and is returned from `run()`/`join()`.
//!
//! # When the pipeline fails
//! A failure is never an end of stream. If anything fails — a source's or stage's error, a panic
//! anywhere, this or another sink's error, an abort or a `stop()` that timed out — every sink
//! that was opened gets [`abort`](Sink::abort) instead of `close`, exactly once, whichever thread
//! the failure happened on. After a `send` returns `Err`, that sink receives no further event.
//!
//! Events a sink accepted before the failure are **not flushed** by the runtime on abort: what
//! the sink already wrote out (at a `flush`, or because its buffer filled) stays, and what it
//! still buffers is the sink's to discard. The built-in JSON-lines and stdout sinks discard it,
//! so a failed run leaves only the output written while the stream was live; in-memory sinks
//! ([`CollectSink`](crate::io::CollectSink), [`CallbackSink`](crate::io::CallbackSink)) have
//! nothing to withdraw.

use crate::error::SinkError;

/// A destination for events. See the [module docs](self).
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// struct Sum(u64);
/// impl Sink<u64> for Sum {
///     fn send(&mut self, item: u64) -> Result<(), SinkError> {
///         self.0 = self.0.checked_add(item).ok_or_else(|| SinkError::Other("overflow".into()))?;
///         Ok(())
///     }
/// }
/// let mut s = Sum(0);
/// s.send(2).unwrap();
/// assert!(s.send(u64::MAX).is_err());
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot receive events of type `{T}`",
    label = "this sink does not accept `{T}`",
    note = "a sink's event type must equal the output type of the stage that feeds it"
)]
pub trait Sink<T>: Send {
    /// Prepares the sink (create files, connect). Called before any source starts.
    fn open(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Accepts one event.
    fn send(&mut self, item: T) -> Result<(), SinkError>;

    /// Makes every accepted event durable or visible.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once at end of stream; flushes by default.
    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }

    /// Called once instead of `close` when the pipeline fails (see the [module docs](self)):
    /// release resources, discard what is buffered, commit nothing. The default does nothing.
    fn abort(&mut self) {}
}

impl<T, S: Sink<T> + ?Sized> Sink<T> for Box<S> {
    fn open(&mut self) -> Result<(), SinkError> {
        (**self).open()
    }
    fn send(&mut self, item: T) -> Result<(), SinkError> {
        (**self).send(item)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush()
    }
    fn close(&mut self) -> Result<(), SinkError> {
        (**self).close()
    }
    fn abort(&mut self) {
        (**self).abort()
    }
}
