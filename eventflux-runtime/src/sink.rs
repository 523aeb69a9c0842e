//! The [`Sink`] trait: where events leave a pipeline.
//!
//! Sinks are called on their segment's thread. `open` runs before any source starts; `send`
//! takes each event by value; `flush` is called when the upstream has nothing more to give for
//! now (and before checkpoints), `close` once at end of stream. An `Err` from any of them stops
//! the pipeline and is returned from `run()`/`join()`.

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
}
