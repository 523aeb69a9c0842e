//! The manifest of a checkpoint: what it holds and how to check it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One state file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// The state's id (from node names: stable across builds).
    pub state: String,
    /// The file's name inside the checkpoint's directory.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The crc32c of the whole file.
    pub crc32c: u32,
}

/// A completed checkpoint, as recorded in its `MANIFEST.json` (written last: a checkpoint
/// directory without a valid manifest is not a checkpoint).
///
/// ```
/// use eventflux_runtime::state::Manifest;
/// let m = Manifest::new(7);
/// let json = serde_json::to_string(&m).unwrap();
/// assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpoint's id (increasing).
    pub id: u64,
    /// When it completed, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The snapshot format version its files were written in.
    pub format_version: u8,
    /// Each source's replay position, by source name (the source's own JSON form).
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Its state files.
    pub states: Vec<StateFile>,
    /// Each keyed parallel segment's number of workers when it was taken (absent in
    /// checkpoints of pipelines without one). Keyed state is saved by key group, so it restores
    /// into any number of workers; state a segment keeps per worker does not.
    #[serde(default)]
    pub workers: BTreeMap<String, usize>,
}

impl Manifest {
    /// An empty manifest for checkpoint `id`, stamped now.
    pub fn new(id: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Manifest {
            id,
            created_unix_ms: now,
            format_version: super::FORMAT_VERSION,
            sources: BTreeMap::new(),
            states: Vec::new(),
            workers: BTreeMap::new(),
        }
    }
}
