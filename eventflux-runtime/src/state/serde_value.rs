//! Saves any serde type as one value: use it as `#[checkpoint(with = serde_value)]` on a field
//! whose type implements `Serialize` and `Deserialize` but not [`Checkpoint`](super::Checkpoint)
//! (a type from another crate, say).
//!
//! ```
//! use eventflux_runtime::state::{self, Checkpoint, Compression, serde_value};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
//! struct Quote { bid: f64, ask: f64 }
//!
//! #[derive(Checkpoint)]
//! #[checkpoint(crate = eventflux_runtime)]
//! struct Book {
//!     #[checkpoint(with = serde_value)]
//!     best: Option<Quote>,
//! }
//!
//! let book = Book { best: Some(Quote { bid: 1.0, ask: 1.5 }) };
//! let back: Book = state::from_bytes(&state::to_bytes(&book, Compression::None)?)?;
//! assert_eq!(back.best, book.best);
//! # Ok::<(), state::StateError>(())
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StateError, StateReader, StateWriter};

/// Writes `value` with serde.
pub fn save<T: Serialize>(value: &T, w: &mut StateWriter) -> Result<(), StateError> {
    w.put(value)
}

/// Reads a value written by [`save`].
pub fn load<T: DeserializeOwned>(r: &mut StateReader<'_>) -> Result<T, StateError> {
    r.take()
}
