//! [`StateError`]: why a state could not be saved or restored.

/// A state could not be saved or restored: the bytes are damaged, from an unknown schema
/// version, or a value could not be encoded.
///
/// Every variant names what was wrong, so a rejected checkpoint file can be reported with its
/// reason.
///
/// ```
/// use eventflux_runtime::state::{self, StateError};
/// let err = state::from_bytes::<u64>(b"not a checkpoint").unwrap_err();
/// assert!(matches!(err, StateError::Frame { .. }), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The frame around a snapshot (magic, format, checksum, compression) is not valid.
    #[error("damaged state file: {reason}")]
    Frame {
        /// What is wrong, in words.
        reason: String,
    },
    /// The snapshot ended before a value was complete.
    #[error("state ends early: `{ty}` needs more bytes")]
    Truncated {
        /// The type being restored.
        ty: &'static str,
    },
    /// A value could not be decoded (or encoded) by the codec.
    #[error("cannot {action} `{ty}`: {reason}")]
    Codec {
        /// `encode` or `decode`.
        action: &'static str,
        /// The type being saved or restored.
        ty: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// A snapshot was written by a schema version this type cannot read.
    #[error(
        "`{ty}` cannot restore schema version {found}: it reads versions {oldest} to {newest} \
         (add a migration with `#[checkpoint(version = N, from = OldType)]`)"
    )]
    Version {
        /// The type being restored.
        ty: &'static str,
        /// The version found in the snapshot.
        found: u32,
        /// The oldest version the type (through its migrations) reads.
        oldest: u32,
        /// The type's current version.
        newest: u32,
    },
    /// An enum's snapshot names a variant the enum does not have.
    #[error("`{ty}` has no variant number {index}")]
    Variant {
        /// The enum being restored.
        ty: &'static str,
        /// The variant index found.
        index: u32,
    },
    /// A snapshot held more bytes than its value used: it belongs to another type or is
    /// damaged.
    #[error("state of `{ty}` has {extra} unread bytes at its end")]
    TrailingBytes {
        /// The type restored.
        ty: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// A user's `with` function or a custom `Checkpoint` implementation failed.
    #[error("{0}")]
    Custom(String),
}

impl StateError {
    /// A failure of a user's own `save`/`load` code, with its message.
    ///
    /// ```
    /// use eventflux_runtime::state::StateError;
    /// assert_eq!(StateError::custom("no clock").to_string(), "no clock");
    /// ```
    pub fn custom(message: impl Into<String>) -> Self {
        StateError::Custom(message.into())
    }
}
