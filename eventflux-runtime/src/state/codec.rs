//! The encoding of snapshots: values through serde and [postcard] (compact varints, no field
//! names), inside a frame with a magic number, a format version, optional lz4 compression and
//! a crc32c of everything before it.
//!
//! ```text
//! frame := "EFST" format:u8 flags:u8 body crc32c:u32le
//! body  := payload            (flags bit 0 clear)
//!        | lz4(payload)       (flags bit 0 set; lz4 block with its size prepended)
//! ```
//!
//! [postcard]: https://docs.rs/postcard

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Checkpoint, StateError};

const MAGIC: &[u8; 4] = b"EFST";
/// Version of the frame and of the built-in encodings; a reader rejects any other.
pub const FORMAT_VERSION: u8 = 1;
const FLAG_LZ4: u8 = 1;
const HEADER: usize = MAGIC.len() + 2;
const TRAILER: usize = 4;

/// Whether a snapshot's bytes are compressed.
///
/// ```
/// use eventflux_runtime::state::{self, Compression};
/// let keys: Vec<u64> = vec![7; 10_000];
/// let plain = state::to_bytes(&keys, Compression::None)?;
/// let small = state::to_bytes(&keys, Compression::Lz4)?;
/// assert!(small.len() < plain.len() / 10);
/// assert_eq!(state::from_bytes::<Vec<u64>>(&small)?, keys);
/// # Ok::<(), state::StateError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as encoded.
    #[default]
    None,
    /// lz4 (fast; worth it for large, repetitive state).
    Lz4,
}

/// Where a [`Checkpoint`] writes its state.
///
/// ```
/// use eventflux_runtime::state::{Checkpoint, StateReader, StateWriter};
/// let mut w = StateWriter::new();
/// (1u32, String::from("a")).save(&mut w)?;
/// let bytes = w.into_bytes();
/// let mut r = StateReader::new(&bytes);
/// assert_eq!(<(u32, String)>::load(&mut r)?, (1, "a".to_string()));
/// # Ok::<(), eventflux_runtime::state::StateError>(())
/// ```
#[derive(Debug, Default)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one serde value (a leaf of the state: a number, a string, a user's serde type).
    pub fn put<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.buf = postcard::to_extend(value, std::mem::take(&mut self.buf)).map_err(|e| {
            StateError::Codec {
                action: "encode",
                ty: std::any::type_name::<T>(),
                reason: e.to_string(),
            }
        })?;
        Ok(())
    }

    /// Writes a checkpointable value.
    pub fn save<T: Checkpoint>(&mut self, value: &T) -> Result<(), StateError> {
        value.save(self)
    }

    /// Writes a collection's length.
    pub fn len_prefix(&mut self, len: usize) -> Result<(), StateError> {
        self.put(&(len as u64))
    }

    /// Writes a derived type's schema version.
    pub fn version(&mut self, version: u32) -> Result<(), StateError> {
        self.put(&version)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded state (unframed: see [`to_bytes`](super::to_bytes) for a file's bytes).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Where a [`Checkpoint`] reads its state back. See [`StateWriter`].
#[derive(Debug)]
pub struct StateReader<'a> {
    rest: &'a [u8],
}

impl<'a> StateReader<'a> {
    /// Reads the encoded state in `bytes` (unframed).
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Reads one serde value written by [`StateWriter::put`].
    pub fn take<T: DeserializeOwned>(&mut self) -> Result<T, StateError> {
        match postcard::take_from_bytes::<T>(self.rest) {
            Ok((value, rest)) => {
                self.rest = rest;
                Ok(value)
            }
            Err(postcard::Error::DeserializeUnexpectedEnd) => Err(StateError::Truncated {
                ty: std::any::type_name::<T>(),
            }),
            Err(e) => Err(StateError::Codec {
                action: "decode",
                ty: std::any::type_name::<T>(),
                reason: e.to_string(),
            }),
        }
    }

    /// Reads a checkpointable value.
    pub fn load<T: Checkpoint>(&mut self) -> Result<T, StateError> {
        T::load(self)
    }

    /// Reads a collection's length, written by [`StateWriter::len_prefix`].
    pub fn len_prefix(&mut self) -> Result<usize, StateError> {
        let len: u64 = self.take()?;
        usize::try_from(len).map_err(|_| StateError::Codec {
            action: "decode",
            ty: "usize",
            reason: format!("length {len} does not fit this platform"),
        })
    }

    /// A capacity to reserve for `len` elements: never more than the bytes left, so a damaged
    /// length cannot make a restore allocate without bound.
    pub fn capacity_for(&self, len: usize) -> usize {
        len.min(self.rest.len())
    }

    /// Reads a derived type's schema version.
    pub fn version(&mut self) -> Result<u32, StateError> {
        self.take()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
}

/// Wraps an encoded state in a frame: magic, format version, flags, body, crc32c.
pub fn frame(payload: &[u8], compression: Compression) -> Vec<u8> {
    let body: Cow<'_, [u8]> = match compression {
        Compression::None => Cow::Borrowed(payload),
        Compression::Lz4 => Cow::Owned(lz4_flex::compress_prepend_size(payload)),
    };
    let flags = match compression {
        Compression::None => 0,
        Compression::Lz4 => FLAG_LZ4,
    };
    let mut out = Vec::with_capacity(HEADER + body.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(flags);
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The encoded state inside a frame, after checking its magic, format, checksum and
/// (de)compression.
pub fn unframe(bytes: &[u8]) -> Result<Cow<'_, [u8]>, StateError> {
    let bad = |reason: String| StateError::Frame { reason };
    if bytes.len() < HEADER + TRAILER {
        return Err(bad(format!(
            "{} bytes is shorter than the smallest frame ({})",
            bytes.len(),
            HEADER + TRAILER
        )));
    }
    let (framed, crc) = bytes.split_at(bytes.len() - TRAILER);
    if &framed[..MAGIC.len()] != MAGIC {
        return Err(bad(
            "it does not start with the eventflux state magic `EFST`".into(),
        ));
    }
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32c::crc32c(framed);
    if stored != actual {
        return Err(bad(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        )));
    }
    let (format, flags) = (framed[MAGIC.len()], framed[MAGIC.len() + 1]);
    if format != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {format}, this build reads {FORMAT_VERSION}"
        )));
    }
    let body = &framed[HEADER..];
    match flags {
        0 => Ok(Cow::Borrowed(body)),
        FLAG_LZ4 => {
            // lz4 expands at most ~255×: a larger declared size is damage, not data.
            let declared = body
                .get(..4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
            if declared.is_none_or(|n| n > body.len().saturating_mul(256)) {
                return Err(bad("lz4 body declares an impossible size".into()));
            }
            lz4_flex::decompress_size_prepended(body)
                .map(Cow::Owned)
                .map_err(|e| bad(format!("lz4: {e}")))
        }
        other => Err(bad(format!("unknown flags {other:#04x}"))),
    }
}
