//! Sources and sinks over a partitioned, append-only log, independent of the broker: the
//! broker is behind [`LogReader`] and [`LogWriter`] (Redis Streams implements them with the
//! feature `redis`; a Kafka adapter can follow), and [`LogSource`] and [`LogSink`] do the rest:
//! partition ownership, positions in checkpoints, decoding with dead letters, per-partition
//! event time, lag, and the sink's two-phase commit.

use std::collections::{BTreeMap, VecDeque};
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{SinkError, SourceError};
use crate::io::DeadLetter;
use crate::sink::Sink;
use crate::source::{PartitionWatermarks, Source, SourceContext, SourcePoll};
use crate::stage::{CheckpointId, Emit};

/// How events are encoded in a log's records.
///
/// ```
/// use eventflux_runtime::io::Codec;
/// assert_eq!(Codec::default(), Codec::Json);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// JSON text (the default): readable with the broker's own tools, any language can
    /// produce it.
    #[default]
    Json,
    /// `postcard`, a compact binary serde format: smaller records, faster to encode and
    /// decode, readable only with the same Rust types.
    Postcard,
}

impl Codec {
    /// Encodes `item`.
    pub fn encode<T: Serialize>(self, item: &T) -> Result<Vec<u8>, String> {
        match self {
            Codec::Json => serde_json::to_vec(item).map_err(|e| e.to_string()),
            Codec::Postcard => postcard::to_allocvec(item).map_err(|e| e.to_string()),
        }
    }

    /// Decodes a record's payload.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::Postcard => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        }
    }
}

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Which of the partitions asked for (an index into them).
    pub index: usize,
    /// Its offset in the partition (the broker's id).
    pub offset: String,
    /// The payload, or why the record has none usable (it is dead-lettered).
    pub payload: Result<Vec<u8>, String>,
}

/// Reading a partitioned log (the broker side of a [`LogSource`]). Offsets are the broker's
/// record ids, as text; errors are messages naming the broker (its URL) and what failed.
pub trait LogReader: Send {
    /// The log's name, recorded in positions (a position of another log is refused).
    fn log_name(&self) -> &str;

    /// The offset before the first record (reading after it reads from the start).
    fn start(&self) -> &str;

    /// Orders two offsets of one partition.
    fn compare(&self, a: &str, b: &str) -> std::cmp::Ordering;

    /// Connects; with `bounded`, returns each partition's last offset now ([`start`](Self::start)
    /// for an empty one), and fails if the log does not exist at all.
    fn open(&mut self, partitions: &[u32], bounded: bool) -> Result<Option<Vec<String>>, String>;

    /// The records after `after[i]` in each partition, at most `max` per partition, waiting
    /// up to `block` for some when there are none.
    fn read(
        &mut self,
        partitions: &[u32],
        after: &[String],
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<LogRecord>, String>;

    /// How far each partition's newest record is past `at[i]`, in seconds, when the broker
    /// can tell (for the lag metric).
    fn lag_seconds(&mut self, partitions: &[u32], at: &[String]) -> Option<Vec<f64>>;

    /// Where a record came from, for its dead letter.
    fn origin(&self, partition: u32, offset: &str) -> String;
}

/// Writing a partitioned log (the broker side of a [`LogSink`]). Each staging, commit and
/// tail operation must be atomic and idempotent (a retry after a lost reply changes nothing),
/// so that a crash at any point leaves every event written once.
pub trait LogWriter: Send {
    /// Connects.
    fn open(&mut self) -> Result<(), String>;
    /// Appends `(partition, payload)` records now (at least once).
    fn append(&mut self, records: &[(u32, Vec<u8>)]) -> Result<(), String>;
    /// Stores the records of `checkpoint` durably without making them visible (replacing
    /// any earlier staging of the same checkpoint).
    fn stage(&mut self, checkpoint: u64, records: &[(u32, Vec<u8>)]) -> Result<(), String>;
    /// Makes checkpoint `checkpoint`'s staged records visible and records it as committed;
    /// does nothing if it was committed already.
    fn commit(&mut self, checkpoint: u64) -> Result<(), String>;
    /// The checkpoints staged and not yet committed, in order.
    fn staged(&mut self) -> Result<Vec<u64>, String>;
    /// Drops a staged checkpoint's records.
    fn discard(&mut self, checkpoint: u64) -> Result<(), String>;
    /// At the end of the stream, makes a staged checkpoint's records visible *without*
    /// recording the checkpoint as committed (it may not have completed), remembering them
    /// under `checkpoint` so that [`drop_tail`](Self::drop_tail) can remove them. Staged
    /// records are gone afterwards, so a retry changes nothing.
    fn release_staged(&mut self, checkpoint: u64) -> Result<(), String>;
    /// Appends the end-of-stream tail (what followed the last checkpoint), remembering the
    /// records (after every checkpoint) so that [`drop_tail`](Self::drop_tail) can remove
    /// them.
    fn append_tail(&mut self, records: &[(u32, Vec<u8>)]) -> Result<(), String>;
    /// A run resumes from checkpoint `after`: removes the remembered end-of-stream records
    /// of later checkpoints and of the tail (it writes them again); those of `after` and
    /// before are final.
    fn drop_tail(&mut self, after: u64) -> Result<(), String>;
    /// A fresh start: forgets an earlier job's bookkeeping (commit marker, staged records,
    /// tail record); what it committed stays.
    fn forget(&mut self) -> Result<(), String>;
}

/// The event time of a [`LogSource`]: each event's timestamp, and per-partition watermarks.
struct EventTime<T> {
    ts: Box<dyn Fn(&T) -> u64 + Send>,
    watermarks: PartitionWatermarks,
}

/// Reads one worker's partitions of a log. See [`RedisStream`](crate::io::RedisStream) for
/// the Redis layout.
///
/// - Its [`position`](Source::position) holds one offset per partition (what it emitted), so
///   a checkpoint records exactly what was read and recovery replays from there.
/// - [`bounded`](Self::bounded): ends at the records present when it opened; otherwise it
///   follows the log, waiting in the broker (no polling).
/// - A record that does not decode is a dead letter naming the log, the partition, the offset
///   and the reason.
/// - [`event_time`](Self::event_time): per-partition watermarks, the least over the live
///   partitions, with an optional [idleness timeout](Self::idle_timeout).
/// - Each partition's lag is the gauge `eventflux_source_partition_lag_seconds{stream,
///   partition}`, published at most once a second.
pub struct LogSource<R, T> {
    reader: R,
    codec: Codec,
    owned: Vec<u32>,
    /// The last offset emitted (or dead-lettered) per owned partition.
    positions: Vec<String>,
    /// Bounded: the last offset per owned partition when the source opened.
    end: Option<Vec<String>>,
    bounded: bool,
    buffered: VecDeque<LogRecord>,
    event_time: Option<EventTime<T>>,
    lag_at: Option<std::time::Instant>,
    _item: PhantomData<fn() -> T>,
}

impl<R: LogReader, T> std::fmt::Debug for LogSource<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource")
            .field("log", &self.reader.log_name())
            .field("partitions", &self.owned)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl<R: LogReader, T> LogSource<R, T> {
    /// Reads partitions `owned` of the log behind `reader`, from the start.
    pub fn new(reader: R, owned: Vec<u32>, codec: Codec) -> Self {
        let start = reader.start().to_string();
        Self {
            positions: owned.iter().map(|_| start.clone()).collect(),
            reader,
            codec,
            owned,
            end: None,
            bounded: false,
            buffered: VecDeque::new(),
            event_time: None,
            lag_at: None,
            _item: PhantomData,
        }
    }

    /// Ends at the records present when the source opens, instead of following the log.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Event time: `ts` gives each event's timestamp, at most `out_of_orderness` out of order
    /// within a partition. The source then emits watermarks itself, the least over its
    /// partitions (see [`PartitionWatermarks`]), so windows downstream close only once every
    /// partition is past them. A partition that has ended (bounded reads) does not hold event
    /// time back.
    pub fn event_time(
        mut self,
        ts: impl Fn(&T) -> u64 + Send + 'static,
        out_of_orderness: u64,
    ) -> Self {
        self.event_time = Some(EventTime {
            ts: Box::new(ts),
            watermarks: PartitionWatermarks::new(self.owned.len(), out_of_orderness),
        });
        self
    }

    /// With [`event_time`](Self::event_time): a partition with no records for `timeout` stops
    /// holding event time back until it has records again (Flink's idleness).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        if let Some(et) = self.event_time.take() {
            self.event_time = Some(EventTime {
                ts: et.ts,
                watermarks: et.watermarks.idle_after(timeout),
            });
        }
        self
    }

    /// The partitions this source reads.
    pub fn partitions(&self) -> &[u32] {
        &self.owned
    }

    fn reached(&self, at: &str, end: &str) -> bool {
        self.reader.compare(at, end) != std::cmp::Ordering::Less
    }

    /// Whether every partition reached its end (bounded sources).
    fn at_end(&self) -> bool {
        match &self.end {
            Some(end) => self
                .positions
                .iter()
                .zip(end)
                .all(|(at, end)| self.reached(at, end)),
            None => false,
        }
    }

    fn read(&mut self, max: usize, block: Option<Duration>) -> Result<(), SourceError> {
        let records = self
            .reader
            .read(&self.owned, &self.positions, max, block)
            .map_err(SourceError::Other)?;
        self.buffered.extend(records);
        Ok(())
    }

    /// Publishes each partition's lag, at most once a second.
    fn publish_lag(&mut self) {
        if self
            .lag_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.lag_at = Some(std::time::Instant::now());
        let Some(lags) = self.reader.lag_seconds(&self.owned, &self.positions) else {
            return;
        };
        for (p, lag) in self.owned.iter().zip(lags) {
            metrics::gauge!(
                "eventflux_source_partition_lag_seconds",
                "stream" => self.reader.log_name().to_string(),
                "partition" => p.to_string()
            )
            .set(lag);
        }
    }
}

impl<R: LogReader, T: DeserializeOwned + Send> Source for LogSource<R, T> {
    type Item = T;

    fn open(&mut self) -> Result<(), SourceError> {
        let end = self
            .reader
            .open(&self.owned, self.bounded)
            .map_err(SourceError::Other)?;
        if self.bounded {
            self.end = end;
        }
        Ok(())
    }

    fn poll<E: Emit<T>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        if self.at_end() && self.buffered.is_empty() {
            return Ok(SourcePoll::Done);
        }
        if self.buffered.is_empty() {
            self.read(cx.max_items(), None)?;
        }
        let mut emitted = 0;
        while emitted < cx.max_items() {
            let Some(record) = self.buffered.pop_front() else {
                break;
            };
            let i = record.index;
            if let Some(end) = &self.end
                && self.reader.compare(&record.offset, &end[i]) == std::cmp::Ordering::Greater
            {
                // Past the bounded end: this partition is done.
                continue;
            }
            let decoded = match record.payload {
                Ok(d) => self
                    .codec
                    .decode::<T>(&d)
                    .map_err(|e| (e, String::from_utf8_lossy(&d).into_owned())),
                Err(why) => Err((why, String::new())),
            };
            match decoded {
                Ok(item) => {
                    if let Some(et) = &mut self.event_time {
                        et.watermarks.observe(i, (et.ts)(&item));
                    }
                    out.emit(item);
                    emitted += 1;
                }
                Err((reason, raw)) => cx.dead_letter(DeadLetter::new(
                    self.reader.origin(self.owned[i], &record.offset),
                    None,
                    reason,
                    raw,
                )),
            }
            self.positions[i] = record.offset;
        }
        self.publish_lag();
        if self.event_time.is_some() {
            let ended: Vec<usize> = match &self.end {
                Some(end) => (0..self.owned.len())
                    .filter(|&i| self.reached(&self.positions[i], &end[i]))
                    .collect(),
                None => Vec::new(),
            };
            if let Some(et) = &mut self.event_time {
                for i in ended {
                    et.watermarks.finish(i);
                }
                if let Some(w) = et.watermarks.advance() {
                    out.emit_watermark(w);
                }
            }
        }
        if emitted > 0 || !self.buffered.is_empty() {
            Ok(SourcePoll::Ready)
        } else if self.at_end() {
            Ok(SourcePoll::Done)
        } else {
            Ok(SourcePoll::Pending)
        }
    }

    fn emits_watermarks(&self) -> bool {
        self.event_time.is_some()
    }

    fn position(&self) -> Option<serde_json::Value> {
        let map: BTreeMap<String, &String> = self
            .owned
            .iter()
            .zip(&self.positions)
            .map(|(p, id)| (p.to_string(), id))
            .collect();
        Some(serde_json::json!({ "stream": self.reader.log_name(), "partitions": map }))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), SourceError> {
        let name = self.reader.log_name().to_string();
        if position["stream"] != name.as_str() {
            return Err(SourceError::seek(
                position,
                format!("not a position in stream `{name}`"),
            ));
        }
        for (i, p) in self.owned.iter().enumerate() {
            let id = position["partitions"][p.to_string()]
                .as_str()
                .ok_or_else(|| {
                    SourceError::seek(
                        position,
                        format!(
                            "it has no offset for partition {p} (were the partitions or \
                             workers changed?)"
                        ),
                    )
                })?;
            self.positions[i] = id.to_string();
        }
        self.buffered.clear();
        Ok(())
    }

    fn wait(&mut self, bound: Duration) {
        if self.bounded {
            std::thread::park_timeout(bound);
            return;
        }
        // Wait in the broker for records (read into the buffer): no polling. A failure here
        // comes back from the next poll, which reads again.
        if self.read(1024, Some(bound)).is_err() {
            std::thread::park_timeout(bound);
        }
    }
}

/// Writes events into the partitions of a log, each to the partition of its key.
///
/// By default events are appended whenever the pipeline flushes the sink (at least once after
/// a crash). [`transactional`](Self::transactional) makes it exactly once.
pub struct LogSink<W, T, F> {
    writer: W,
    codec: Codec,
    partitions: u32,
    key: F,
    /// Accepted since the last barrier: (partition, payload).
    pending: Vec<(u32, Vec<u8>)>,
    /// Checkpoints staged and not yet committed.
    staged: Vec<u64>,
    transactional: bool,
    /// Whether this run takes part in checkpoints: recovered, or pre-committed once.
    checkpointed: bool,
    _item: PhantomData<fn(T)>,
}

impl<W, T, F> std::fmt::Debug for LogSink<W, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink")
            .field("partitions", &self.partitions)
            .field("pending", &self.pending.len())
            .field("transactional", &self.transactional)
            .finish_non_exhaustive()
    }
}

impl<W: LogWriter, T, F> LogSink<W, T, F> {
    /// Writes through `writer` into `partitions` partitions, each event to the partition of
    /// `key(&event)` (the hash keyed edges use, stable across processes).
    pub fn new(writer: W, partitions: u32, codec: Codec, key: F) -> Self {
        Self {
            writer,
            codec,
            partitions: partitions.max(1),
            key,
            pending: Vec::new(),
            staged: Vec::new(),
            transactional: false,
            checkpointed: false,
            _item: PhantomData,
        }
    }

    /// Exactly once, for pipelines that checkpoint: the events of each checkpoint are staged
    /// at its barrier and made visible, atomically, when it completes; what follows the last
    /// checkpoint is written at the end of the stream and removed by a run that resumes from
    /// that checkpoint (it writes it again). Between two checkpoints the events are kept in
    /// memory.
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }
}

impl<W: LogWriter, T: Serialize + Send, K: Hash, F: Fn(&T) -> K + Send> Sink<T>
    for LogSink<W, T, F>
{
    fn open(&mut self) -> Result<(), SinkError> {
        self.writer.open().map_err(SinkError::Other)
    }

    fn send(&mut self, item: T) -> Result<(), SinkError> {
        let p = crate::exec::key_group(&(self.key)(&item), self.partitions as usize) as u32;
        let data = self.codec.encode(&item).map_err(SinkError::Serialize)?;
        self.pending.push((p, data));
        Ok(())
    }

    fn may_block(&self) -> bool {
        true
    }

    /// Appends what was accepted; a transactional sink writes only when a checkpoint commits.
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.transactional || self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        self.writer.append(&entries).map_err(|e| {
            self.pending = entries;
            SinkError::Other(e)
        })
    }

    /// End of stream: a transactional sink makes visible what is staged and appends the rest
    /// as the run's tail. Neither is recorded as committed: if the job does not get to mark
    /// itself finished, a run that resumes from an earlier checkpoint removes them (and
    /// commits its own checkpoints, whose ids follow that one, normally).
    fn close(&mut self) -> Result<(), SinkError> {
        if !self.transactional {
            return self.flush();
        }
        for c in std::mem::take(&mut self.staged) {
            self.writer.release_staged(c).map_err(SinkError::Other)?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        self.writer.append_tail(&entries).map_err(SinkError::Other)
    }

    fn abort(&mut self) {
        self.pending.clear();
    }

    /// Phase one: stages the checkpoint's events (durable, not yet visible).
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        if !self.transactional {
            return self.flush();
        }
        if !self.checkpointed {
            // Not recovered: a fresh start (or a sink that was never told).
            self.writer.forget().map_err(SinkError::Other)?;
            self.checkpointed = true;
        }
        let entries = std::mem::take(&mut self.pending);
        match self.writer.stage(checkpoint.0, &entries) {
            Ok(()) => {
                self.staged.push(checkpoint.0);
                Ok(())
            }
            Err(e) => {
                self.pending = entries;
                Err(SinkError::Other(e))
            }
        }
    }

    /// Phase two: makes every checkpoint staged up to `checkpoint` visible, atomically each.
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let ready: Vec<u64> = self
            .staged
            .iter()
            .copied()
            .filter(|&c| c <= checkpoint.0)
            .collect();
        for c in ready {
            self.writer.commit(c).map_err(SinkError::Other)?;
            self.staged.retain(|&s| s != c);
        }
        Ok(())
    }

    /// Settles what an earlier run left: commits what it staged up to `checkpoint`, discards
    /// what it staged after, and removes its tail. `checkpoint` 0 is a fresh start.
    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        if !self.transactional {
            return Ok(());
        }
        self.checkpointed = true;
        let w = &mut self.writer;
        if checkpoint.0 == 0 {
            return w.forget().map_err(SinkError::Other);
        }
        for c in w.staged().map_err(SinkError::Other)? {
            if c <= checkpoint.0 {
                w.commit(c)
            } else {
                w.discard(c)
            }
            .map_err(SinkError::Other)?;
        }
        self.staged.clear();
        w.drop_tail(checkpoint.0).map_err(SinkError::Other)
    }
}
