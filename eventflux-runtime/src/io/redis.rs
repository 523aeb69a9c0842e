//! Redis Streams sources and sinks (cargo feature `redis`); see [`RedisStream`].

use std::collections::{BTreeMap, VecDeque};
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, SinkError, SourceError};
use crate::io::DeadLetter;
use crate::sink::Sink;
use crate::source::{PartitionWatermarks, Source, SourceContext, SourcePoll};
use crate::stage::{CheckpointId, Emit};

/// Attempts per command before a connection error is reported.
const ATTEMPTS: u32 = 6;

/// A logical stream of `partitions` Redis streams on the server at `url`.
///
/// Redis Streams as a partitioned log (cargo feature `redis`): a source that reads a worker's
/// partitions from positions kept in checkpoints, and a sink that writes exactly once through
/// a two-phase commit.
///
/// A logical stream `NAME` of `P` partitions is the Redis streams `NAME:{0}` … `NAME:{P-1}`.
/// Each entry has one field, `data`: the event as JSON (or `postcard`, see [`Codec`]). Worker `w` of `W` reads the
/// partitions `p` with `p % W == w`.
///
/// - **Source** ([`RedisStream::source`]): reads with `XREAD` from the entry ids after the
///   last ones it emitted. Its [`position`](Source::position) holds one entry id per
///   partition, so a checkpoint records exactly what was read, and recovery replays from there.
///   A *bounded* source ([`RedisStreamSource::bounded`]) ends at the entries present when it
///   opened (batch jobs and tests). An unbounded one follows the streams, waiting for entries
///   with `XREAD BLOCK`: no polling. An entry that does not decode is a dead letter naming the
///   stream, the entry id and the reason.
/// - **Sink** ([`RedisStream::sink`]): hashes each event's key to a partition. With
///   checkpoints, the events of a checkpoint are first staged in a Redis list (phase one, at
///   the barrier) and then moved into the streams by one Lua script when the checkpoint
///   completes (phase two). The script also records the checkpoint as committed for this sink,
///   so committing twice (after a crash) writes nothing twice. Without checkpoints, events are
///   written when the sink flushes (at least once).
/// - **Connection loss**: every command is retried on a new connection with backoff (6 attempts over about 1.5 s),
///   which rides out a server restart,
///   then fails with an error naming the URL. A source never moves its position past what it
///   emitted.
///
/// Standalone Redis only: the commit script writes several partitions' streams at once, which
/// a Redis Cluster would refuse across hash slots.
///
/// ```
/// use eventflux_runtime::io::RedisStream;
/// let s = RedisStream::new("redis://127.0.0.1:6379", "trades", 6)?;
/// assert_eq!(s.partition_key(2), "trades:{2}");
/// assert_eq!(s.owned(1, 3), [1, 4]);
/// assert!(RedisStream::new("http://x", "trades", 6).is_err());
/// # Ok::<(), eventflux_runtime::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RedisStream {
    url: String,
    name: String,
    partitions: u32,
    codec: Codec,
}

/// How events are encoded in an entry's `data` field.
///
/// ```
/// use eventflux_runtime::io::{Codec, RedisStream};
/// let s = RedisStream::new("redis://127.0.0.1:6379", "trades", 6)?.codec(Codec::Postcard);
/// assert_eq!(s.encoding(), Codec::Postcard);
/// # Ok::<(), eventflux_runtime::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// JSON text (the default): readable with `redis-cli`, any language can produce it.
    #[default]
    Json,
    /// `postcard`, a compact binary serde format: smaller entries, faster to encode and
    /// decode, readable only with the same Rust types.
    Postcard,
}

impl Codec {
    fn encode<T: Serialize>(self, item: &T) -> Result<Vec<u8>, String> {
        match self {
            Codec::Json => serde_json::to_vec(item).map_err(|e| e.to_string()),
            Codec::Postcard => postcard::to_allocvec(item).map_err(|e| e.to_string()),
        }
    }

    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::Postcard => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        }
    }
}

fn bad(field: &'static str, value: impl Into<String>, allowed: &str) -> ConfigError {
    ConfigError::OutOfRange {
        field,
        value: value.into(),
        allowed: allowed.into(),
    }
}

impl RedisStream {
    /// The stream `name` of `partitions` partitions on `url` (`redis://host:port[/db]`).
    pub fn new(
        url: impl Into<String>,
        name: impl Into<String>,
        partitions: u32,
    ) -> Result<Self, ConfigError> {
        let url = url.into();
        let name = name.into();
        if redis::Client::open(url.as_str()).is_err() {
            return Err(bad(
                "url",
                url,
                "a Redis URL such as redis://127.0.0.1:6379",
            ));
        }
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(bad("name", name, "a non-empty stream name without braces"));
        }
        if partitions == 0 {
            return Err(bad("partitions", "0", "1 or more"));
        }
        Ok(Self {
            url,
            name,
            partitions,
            codec: Codec::Json,
        })
    }

    /// Encodes events with `codec` (JSON by default). Producers and consumers of a stream
    /// must agree.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The codec of the entries.
    pub fn encoding(&self) -> Codec {
        self.codec
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The logical stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The Redis stream of partition `p`: `NAME:{p}`.
    pub fn partition_key(&self, p: u32) -> String {
        format!("{}:{{{p}}}", self.name)
    }

    /// The partitions worker `worker` of `workers` owns: `p % workers == worker`.
    pub fn owned(&self, worker: usize, workers: usize) -> Vec<u32> {
        (0..self.partitions)
            .filter(|&p| workers > 0 && p as usize % workers == worker)
            .collect()
    }

    /// The partition of `key` (the same hash as keyed edges use, stable across processes).
    pub fn partition_of<K: Hash + ?Sized>(&self, key: &K) -> u32 {
        crate::exec::key_group(key, self.partitions as usize) as u32
    }

    /// A source reading worker `worker` of `workers`'s partitions from the start.
    pub fn source<T>(
        &self,
        worker: usize,
        workers: usize,
    ) -> Result<RedisStreamSource<T>, ConfigError> {
        if workers == 0 || worker >= workers {
            return Err(bad(
                "worker",
                format!("{worker} of {workers}"),
                "a worker below the number of workers (at least 1)",
            ));
        }
        let owned = self.owned(worker, workers);
        Ok(RedisStreamSource {
            stream: self.clone(),
            positions: owned.iter().map(|_| "0-0".to_string()).collect(),
            owned,
            end: None,
            bounded: false,
            link: Link::new(&self.url),
            buffered: VecDeque::new(),
            event_time: None,
            lag_at: None,
            _item: PhantomData,
        })
    }

    /// A sink named `id` (unique per sink writing to this stream: its staged checkpoints and
    /// commit marker are kept under that name) that writes each event to the partition of
    /// `key(&event)`.
    pub fn sink<T, K: Hash, F: Fn(&T) -> K>(
        &self,
        id: impl Into<String>,
        key: F,
    ) -> RedisStreamSink<T, F> {
        RedisStreamSink {
            stream: self.clone(),
            id: id.into(),
            key,
            link: Link::new(&self.url),
            pending: Vec::new(),
            staged: Vec::new(),
            transactional: false,
            checkpointed: false,
            recovered: false,
            _item: PhantomData,
        }
    }
}

/// A connection to the server that re-establishes itself: a command that fails for a
/// transient reason (connection refused, dropped or timed out, the server still loading its
/// data after a restart) is retried on a new connection, waiting 50, 100, 200, 400, 800 ms
/// between attempts; after [`ATTEMPTS`] the error names the URL.
struct Link {
    url: String,
    conn: Option<redis::Connection>,
}

fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain
        )
}

impl Link {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            conn: None,
        }
    }

    fn connection(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            let client = redis::Client::open(self.url.as_str())?;
            self.conn = Some(client.get_connection_with_timeout(Duration::from_secs(2))?);
        }
        self.conn.as_mut().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::ClientError, "no connection"))
        })
    }

    /// Runs `f` on the connection, with retries on new connections.
    fn query<R>(
        &mut self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<R>,
    ) -> Result<R, String> {
        let mut wait = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            let result = self.connection().and_then(&mut f);
            match result {
                Ok(r) => return Ok(r),
                Err(e) => {
                    // A connection that failed once is not trusted again.
                    self.conn = None;
                    if attempt < ATTEMPTS && transient(&e) {
                        std::thread::sleep(wait);
                        wait *= 2;
                        attempt += 1;
                        continue;
                    }
                    return Err(format!(
                        "Redis at {}: {e} (after {attempt} attempt{})",
                        self.url,
                        if attempt == 1 { "" } else { "s" }
                    ));
                }
            }
        }
    }
}

/// An entry id `ms-seq` as a pair, for comparisons.
fn id_pair(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Reads the partitions of one worker. See [`RedisStream`].
pub struct RedisStreamSource<T> {
    stream: RedisStream,
    owned: Vec<u32>,
    /// The last entry id emitted (or dead-lettered) per owned partition.
    positions: Vec<String>,
    /// Bounded: the last entry id per owned partition when the source opened.
    end: Option<Vec<String>>,
    bounded: bool,
    link: Link,
    /// Entries read but not yet emitted: (owned index, id, data).
    buffered: VecDeque<(usize, String, Result<Vec<u8>, String>)>,
    /// Event time: each event's timestamp, and the partitions' watermarks.
    event_time: Option<EventTime<T>>,
    /// When the partitions' lag was last published.
    lag_at: Option<std::time::Instant>,
    _item: PhantomData<fn() -> T>,
}

/// A Redis source's event time: the timestamp of an event, and per-partition watermarks.
struct EventTime<T> {
    ts: Box<dyn Fn(&T) -> u64 + Send>,
    watermarks: PartitionWatermarks,
}

impl<T> std::fmt::Debug for RedisStreamSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSource")
            .field("stream", &self.stream.name)
            .field("partitions", &self.owned)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl<T> RedisStreamSource<T> {
    /// Ends at the entries present when the source opens, instead of following the streams.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Event time: `ts` gives each event's timestamp, at most `out_of_orderness` out of order
    /// within a partition. The source then emits watermarks itself: each partition's
    /// watermark trails its largest timestamp, and the source's is the least over its
    /// partitions (see [`PartitionWatermarks`]), so windows downstream close only once every
    /// partition is past them. A partition that has ended (bounded reads) does not hold
    /// event time back.
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

    /// With [`event_time`](Self::event_time): a partition with no entries for `timeout` stops
    /// holding event time back until it has entries again (Flink's idleness).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        if let Some(et) = self.event_time.take() {
            self.event_time = Some(EventTime {
                ts: et.ts,
                watermarks: et.watermarks.idle_after(timeout),
            });
        }
        self
    }

    /// Publishes each partition's lag, once a second at most: how far, in the entry ids'
    /// milliseconds, the last entry read is behind the partition's newest entry
    /// (`eventflux_source_partition_lag_seconds{stream, partition}` through the `metrics`
    /// facade).
    fn publish_lag(&mut self) {
        if self
            .lag_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.lag_at = Some(std::time::Instant::now());
        let keys: Vec<String> = self
            .owned
            .iter()
            .map(|&p| self.stream.partition_key(p))
            .collect();
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("XREVRANGE")
                .arg(key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
        }
        let Ok(newest) = self
            .link
            .query(|c| pipe.query::<Vec<Vec<(String, redis::Value)>>>(c))
        else {
            return;
        };
        for ((p, at), newest) in self.owned.iter().zip(&self.positions).zip(newest) {
            let newest = newest.first().map_or(0, |e| id_pair(&e.0).0);
            let lag_ms = newest.saturating_sub(id_pair(at).0);
            metrics::gauge!(
                "eventflux_source_partition_lag_seconds",
                "stream" => self.stream.name.clone(),
                "partition" => p.to_string()
            )
            .set(lag_ms as f64 / 1e3);
        }
    }

    /// Whether every owned partition reached its end (bounded sources).
    fn at_end(&self) -> bool {
        match &self.end {
            Some(end) => self
                .positions
                .iter()
                .zip(end)
                .all(|(at, end)| id_pair(at) >= id_pair(end)),
            None => false,
        }
    }

    /// Reads what follows the positions into the buffer (at most `count` per partition),
    /// waiting up to `block` for entries when `block` is set.
    fn read(&mut self, count: usize, block: Option<Duration>) -> Result<(), SourceError> {
        let keys: Vec<String> = self
            .owned
            .iter()
            .map(|&p| self.stream.partition_key(p))
            .collect();
        let ids = self.positions.clone();
        let mut opts = StreamReadOptions::default().count(count);
        if let Some(b) = block {
            opts = opts.block(b.as_millis().max(1) as usize);
        }
        let reply: Option<StreamReadReply> = self
            .link
            .query(|c| {
                redis::cmd("XREAD")
                    .arg(&opts)
                    .arg("STREAMS")
                    .arg(&keys)
                    .arg(&ids)
                    .query(c)
            })
            .map_err(SourceError::Other)?;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(i) = keys.iter().position(|k| *k == key.key) else {
                continue;
            };
            for entry in key.ids {
                let data = match entry.map.get("data") {
                    Some(v) => redis::from_redis_value::<Vec<u8>>(v)
                        .map_err(|e| format!("the `data` field is not a string: {e}")),
                    None => Err("the entry has no `data` field".to_string()),
                };
                self.buffered.push_back((i, entry.id, data));
            }
        }
        Ok(())
    }
}

impl<T: DeserializeOwned + Send> Source for RedisStreamSource<T> {
    type Item = T;

    fn open(&mut self) -> Result<(), SourceError> {
        if !self.bounded {
            return self
                .link
                .query(|c| redis::cmd("PING").query::<String>(c))
                .map(drop)
                .map_err(SourceError::Other);
        }
        let keys: Vec<String> = self
            .owned
            .iter()
            .map(|&p| self.stream.partition_key(p))
            .collect();
        let url = self.stream.url.clone();
        let stream = self.stream.clone();
        // Redis creates a partition's stream with its first entry: a partition nothing was
        // written to is empty, but a stream none of whose partitions exists was never produced
        // (or is misnamed).
        let all: Vec<String> = (0..stream.partitions)
            .map(|p| stream.partition_key(p))
            .collect();
        let existing: u64 = self
            .link
            .query(|c| redis::cmd("EXISTS").arg(&all).query(c))
            .map_err(SourceError::Other)?;
        if existing == 0 {
            return Err(SourceError::Other(format!(
                "Redis at {url}: the stream `{}` does not exist: none of its {} partitions \
                 (`{}` …) has an entry (was it produced, with this name?)",
                stream.name, stream.partitions, all[0]
            )));
        }
        let mut end = Vec::with_capacity(keys.len());
        for key in &keys {
            let last: Vec<(String, redis::Value)> = self
                .link
                .query(|c| {
                    redis::cmd("XREVRANGE")
                        .arg(key)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query(c)
                })
                .map_err(SourceError::Other)?;
            end.push(
                last.first()
                    .map_or_else(|| "0-0".to_string(), |e| e.0.clone()),
            );
        }
        self.end = Some(end);
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
            let Some((i, id, data)) = self.buffered.pop_front() else {
                break;
            };
            if let Some(end) = &self.end
                && id_pair(&id) > id_pair(&end[i])
            {
                // Past the bounded end: this partition is done.
                continue;
            }
            let key = self.stream.partition_key(self.owned[i]);
            let decoded = match data {
                Ok(d) => self
                    .stream
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
                Err((reason, raw)) => {
                    cx.dead_letter(DeadLetter::new(
                        format!("{} stream {key} entry {id}", self.stream.url),
                        None,
                        reason,
                        raw,
                    ));
                }
            }
            self.positions[i] = id;
        }
        self.publish_lag();
        if let Some(et) = &mut self.event_time {
            if let Some(end) = &self.end {
                for (i, (at, end)) in self.positions.iter().zip(end).enumerate() {
                    if id_pair(at) >= id_pair(end) {
                        et.watermarks.finish(i);
                    }
                }
            }
            if let Some(w) = et.watermarks.advance() {
                out.emit_watermark(w);
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
        Some(serde_json::json!({ "stream": self.stream.name, "partitions": map }))
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<(), SourceError> {
        if position["stream"] != self.stream.name.as_str() {
            return Err(SourceError::seek(
                position,
                format!("not a position in stream `{}`", self.stream.name),
            ));
        }
        for (i, p) in self.owned.iter().enumerate() {
            let id = position["partitions"][p.to_string()].as_str().ok_or_else(|| {
                SourceError::seek(position, format!("it has no entry id for partition {p} (were the partitions or workers changed?)"))
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
        // Wait in Redis for entries (read into the buffer): no polling. A failure here comes
        // back from the next poll, which reads again.
        if self.read(1024, Some(bound)).is_err() {
            std::thread::park_timeout(bound);
        }
    }
}

/// The commit script: if checkpoint ARGV[1] is newer than the sink's marker (KEYS[2]), move
/// every staged entry of KEYS[1] (`partition \t json`) into `ARGV[2]:{partition}` with XADD,
/// set the marker, and delete the staged list; either way return the marker.
const COMMIT: &str = r"
local c = tonumber(ARGV[1])
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
if c > done then
  local entries = redis.call('LRANGE', KEYS[1], 0, -1)
  for _, e in ipairs(entries) do
    local tab = string.find(e, '\t', 1, true)
    local p = string.sub(e, 1, tab - 1)
    redis.call('XADD', ARGV[2] .. ':{' .. p .. '}', '*', 'data', string.sub(e, tab + 1))
  end
  redis.call('SET', KEYS[2], c)
  done = c
end
redis.call('DEL', KEYS[1])
return done
";

/// The tail script: unless KEYS[2] already holds this write's token ARGV[1] (a retry after a
/// lost reply), XADD each (key, json) pair of ARGV[2..] and record `key id` in the list
/// KEYS[1]; returns the number written.
const TAIL: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return 0
end
for i = 2, #ARGV, 2 do
  local id = redis.call('XADD', ARGV[i], '*', 'data', ARGV[i + 1])
  redis.call('RPUSH', KEYS[1], ARGV[i] .. ' ' .. id)
end
redis.call('SET', KEYS[2], ARGV[1])
return (#ARGV - 1) / 2
";

/// Deletes the entries a tail record (KEYS[1]) lists, then the record and its token (KEYS[2]);
/// returns how many.
const DROP_TAIL: &str = r"
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
for _, e in ipairs(entries) do
  local sp = string.find(e, ' ', 1, true)
  redis.call('XDEL', string.sub(e, 1, sp - 1), string.sub(e, sp + 1))
end
redis.call('DEL', KEYS[1], KEYS[2])
return #entries
";

/// Writes events into the partitions of a [`RedisStream`]. See [`RedisStream`].
pub struct RedisStreamSink<T, F> {
    stream: RedisStream,
    id: String,
    key: F,
    link: Link,
    /// Accepted since the last barrier: (partition, JSON).
    pending: Vec<(u32, Vec<u8>)>,
    /// Checkpoints staged and not yet committed.
    staged: Vec<u64>,
    /// Exactly once ([`transactional`](Self::transactional)): events are written only when
    /// their checkpoint commits (or at the end of the stream), never by `flush`.
    transactional: bool,
    /// Whether this run takes part in checkpoints: recovered, or pre-committed once.
    checkpointed: bool,
    /// Whether this run resumed from a checkpoint (else its first barrier discards what an
    /// earlier job of the same sink left in Redis: markers, staged lists, tail records).
    recovered: bool,
    _item: PhantomData<fn(T)>,
}

impl<T, F> std::fmt::Debug for RedisStreamSink<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSink")
            .field("stream", &self.stream.name)
            .field("id", &self.id)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<T, F> RedisStreamSink<T, F> {
    /// Exactly once, for pipelines that checkpoint: events are staged in Redis at each
    /// checkpoint's barrier and moved into the streams when the checkpoint completes (and
    /// the rest at the end of the stream), so a crash never leaves an event written twice or
    /// not at all. Without this, events are written whenever the pipeline flushes the sink:
    /// at least once after a crash. Between two checkpoints a transactional sink keeps its
    /// events in memory.
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    fn staged_key(&self, checkpoint: u64) -> String {
        format!("{}:staged:{}:{checkpoint}", self.stream.name, self.id)
    }

    fn marker_key(&self) -> String {
        format!("{}:committed:{}", self.stream.name, self.id)
    }

    /// The entries (`key id` lines) written at the end of a checkpointed run after its last
    /// checkpoint: a run that resumes from that checkpoint deletes them (it writes them again).
    fn tail_key(&self) -> String {
        format!("{}:tail:{}", self.stream.name, self.id)
    }

    /// The staged checkpoints of this sink found in Redis, in order.
    fn staged_in_redis(&mut self) -> Result<Vec<u64>, SinkError> {
        let pattern = format!("{}:staged:{}:*", self.stream.name, self.id);
        let (keys,): (Vec<String>,) = self.run(|| {
            let mut pipe = redis::pipe();
            pipe.cmd("KEYS").arg(&pattern);
            pipe
        })?;
        let prefix = format!("{}:staged:{}:", self.stream.name, self.id);
        let mut staged: Vec<u64> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.parse().ok())
            .collect();
        staged.sort_unstable();
        Ok(staged)
    }

    /// A fresh run's first barrier: forgets what an earlier job of this sink left (its commit
    /// marker, staged lists, tail record), so this job's checkpoint ids start over cleanly.
    /// What that job committed stays in the streams.
    fn start_fresh(&mut self) -> Result<(), SinkError> {
        let mut keys: Vec<String> = self
            .staged_in_redis()?
            .into_iter()
            .map(|c| self.staged_key(c))
            .collect();
        keys.push(self.marker_key());
        keys.push(self.tail_key());
        keys.push(format!("{}:written", self.tail_key()));
        self.run::<()>(|| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&keys).ignore();
            pipe
        })
    }

    /// Runs the pipeline `f` builds, with retries on new connections.
    fn run<R: redis::FromRedisValue>(
        &mut self,
        f: impl Fn() -> redis::Pipeline,
    ) -> Result<R, SinkError> {
        self.link.query(|c| f().query(c)).map_err(SinkError::Other)
    }

    /// Commits staged checkpoint `c` (idempotent: the script checks the marker).
    fn commit_staged(&mut self, c: u64) -> Result<(), SinkError> {
        let (staged, marker, name) = (
            self.staged_key(c),
            self.marker_key(),
            self.stream.name.clone(),
        );
        let script = redis::Script::new(COMMIT);
        self.link
            .query(|conn| {
                script
                    .key(&staged)
                    .key(&marker)
                    .arg(c)
                    .arg(&name)
                    .invoke::<u64>(conn)
            })
            .map(drop)
            .map_err(SinkError::Other)
    }
}

impl<T: Serialize + Send, K: Hash, F: Fn(&T) -> K + Send> Sink<T> for RedisStreamSink<T, F> {
    fn open(&mut self) -> Result<(), SinkError> {
        self.link
            .query(|c| redis::cmd("PING").query::<String>(c))
            .map(drop)
            .map_err(SinkError::Other)
    }

    fn send(&mut self, item: T) -> Result<(), SinkError> {
        let p = self.stream.partition_of(&(self.key)(&item));
        let data = self
            .stream
            .codec
            .encode(&item)
            .map_err(SinkError::Serialize)?;
        self.pending.push((p, data));
        Ok(())
    }

    fn may_block(&self) -> bool {
        true
    }

    /// Writes what was accepted straight into the streams; a transactional sink writes only
    /// when a checkpoint commits (see [`transactional`](RedisStreamSink::transactional)).
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.transactional || self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        let keys: Vec<String> = entries
            .iter()
            .map(|(p, _)| self.stream.partition_key(*p))
            .collect();
        let written: Result<(), SinkError> = self.run(|| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for ((_, json), key) in entries.iter().zip(&keys) {
                pipe.cmd("XADD")
                    .arg(key)
                    .arg("*")
                    .arg("data")
                    .arg(json)
                    .ignore();
            }
            pipe
        });
        if written.is_err() {
            self.pending = entries;
        }
        written
    }

    /// End of stream. Without checkpoints, writes what is left. With them, commits every
    /// staged checkpoint (the stream ended: all of it is final) and writes the rest as the
    /// run's *tail*, recording its entry ids in the same transaction: a later run that
    /// resumes from this run's last checkpoint (after a graceful stop) deletes the tail
    /// before writing it again.
    fn close(&mut self) -> Result<(), SinkError> {
        if !self.transactional {
            return self.flush();
        }
        let staged = std::mem::take(&mut self.staged);
        for c in staged {
            self.commit_staged(c)?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        let keys: Vec<String> = entries
            .iter()
            .map(|(p, _)| self.stream.partition_key(*p))
            .collect();
        let (tail, written) = (self.tail_key(), format!("{}:written", self.tail_key()));
        // A token for this write, so a retry after a lost reply writes nothing twice.
        let token = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let script = redis::Script::new(TAIL);
        self.link
            .query(|conn| {
                let mut inv = script.key(&tail);
                inv.key(&written).arg(&token);
                for ((_, json), key) in entries.iter().zip(&keys) {
                    inv.arg(key).arg(json);
                }
                inv.invoke::<u64>(conn)
            })
            .map(drop)
            .map_err(SinkError::Other)
    }

    fn abort(&mut self) {
        self.pending.clear();
    }

    /// Phase one: stages the checkpoint's events in a Redis list (durable, not yet visible).
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        if !self.transactional {
            return self.flush();
        }
        if !self.checkpointed && !self.recovered {
            self.start_fresh()?;
        }
        self.checkpointed = true;
        let c = checkpoint.0;
        let key = self.staged_key(c);
        let entries = std::mem::take(&mut self.pending);
        let staged: Result<(), SinkError> = self.run(|| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&key).ignore();
            for chunk in entries.chunks(1024) {
                let lines: Vec<Vec<u8>> = chunk
                    .iter()
                    .map(|(p, data)| {
                        let mut line = format!("{p}\t").into_bytes();
                        line.extend_from_slice(data);
                        line
                    })
                    .collect();
                pipe.cmd("RPUSH").arg(&key).arg(lines).ignore();
            }
            pipe
        });
        match staged {
            Ok(()) => {
                self.staged.push(c);
                Ok(())
            }
            Err(e) => {
                self.pending = entries;
                Err(e)
            }
        }
    }

    /// Phase two: moves the staged events of every checkpoint up to `checkpoint` into the
    /// streams, atomically per checkpoint.
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let ready: Vec<u64> = self
            .staged
            .iter()
            .copied()
            .filter(|&c| c <= checkpoint.0)
            .collect();
        for c in ready {
            self.commit_staged(c)?;
            self.staged.retain(|&s| s != c);
        }
        Ok(())
    }

    /// After a crash: commits what was staged up to `checkpoint` and not yet committed,
    /// deletes what was staged after it (it will be produced again).
    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        if !self.transactional {
            return Ok(());
        }
        self.recovered = true;
        self.checkpointed = true;
        if checkpoint.0 == 0 {
            // A fresh start: what an earlier job of this sink left is not ours to finish.
            return self.start_fresh();
        }
        for c in self.staged_in_redis()? {
            if c <= checkpoint.0 {
                self.commit_staged(c)?;
            } else {
                let key = self.staged_key(c);
                self.run::<()>(|| {
                    let mut pipe = redis::pipe();
                    pipe.cmd("DEL").arg(&key).ignore();
                    pipe
                })?;
            }
        }
        self.staged.clear();
        // The previous run's tail came after its last checkpoint, this one: it is produced
        // again, so it goes (atomically with forgetting it).
        let (tail, written) = (self.tail_key(), format!("{}:written", self.tail_key()));
        let script = redis::Script::new(DROP_TAIL);
        self.link
            .query(|conn| script.key(&tail).key(&written).invoke::<u64>(conn))
            .map(drop)
            .map_err(SinkError::Other)
    }
}
