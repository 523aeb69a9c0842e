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

/// A state backend could not store or read a checkpoint.
///
/// ```
/// use eventflux_runtime::state::{LocalDir, StorageError};
/// let dir = tempfile::tempdir()?;
/// let _first = LocalDir::open(dir.path(), 3)?;
/// let second = LocalDir::open(dir.path(), 3);
/// assert!(matches!(second, Err(StorageError::Locked { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file-system operation failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `rename`, `sync`, `read`, `remove`, `list`).
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another process (or another backend in this one) holds the directory's lock.
    #[error(
        "state directory `{}` is in use by another process (its LOCK file is held); stop it or \
         use another directory",
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// A checkpoint's manifest does not list the state asked for.
    #[error("checkpoint {id} holds no state `{state}`")]
    MissingState {
        /// The checkpoint.
        id: u64,
        /// The state asked for.
        state: String,
    },
    /// A state file does not match its manifest.
    #[error("state file `{}` is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: std::path::PathBuf,
        /// What does not match.
        reason: String,
    },
}

/// No checkpoint in a directory could be used: each one that was tried, and why it was
/// rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no usable checkpoint in `{}`: {}", dir.display(), list(rejected))]
pub struct RecoveryError {
    /// The state directory.
    pub dir: std::path::PathBuf,
    /// Every checkpoint directory tried, newest first, with the reason it was rejected.
    pub rejected: Vec<(std::path::PathBuf, String)>,
}

fn list(rejected: &[(std::path::PathBuf, String)]) -> String {
    rejected
        .iter()
        .map(|(p, why)| format!("`{}`: {why}", p.display()))
        .collect::<Vec<_>>()
        .join("; ")
}
