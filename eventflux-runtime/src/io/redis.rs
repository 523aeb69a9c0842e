//! Redis Streams sources and sinks (cargo feature `redis`); see [`RedisStream`].

use std::hash::Hash;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};

use crate::error::ConfigError;
use crate::io::log::{Codec, LogReader, LogRecord, LogSink, LogSource, LogWriter};

/// A source of a Redis stream's partitions (see [`RedisStream::source`]).
pub type RedisStreamSource<T> = LogSource<RedisReader, T>;

/// A sink into a Redis stream's partitions (see [`RedisStream::sink`]).
pub type RedisStreamSink<T, F> = LogSink<RedisWriter, T, F>;

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
///   last ones it emitted. Its [`position`](crate::Source::position) holds one entry id per
///   partition, so a checkpoint records exactly what was read, and recovery replays from there.
///   A *bounded* source ([`bounded`](LogSource::bounded)) ends at the entries present when it
///   opened (batch jobs and tests). An unbounded one follows the streams, waiting for entries
///   with `XREAD BLOCK`: no polling. An entry that does not decode is a dead letter naming the
///   stream, the entry id and the reason.
/// - **Sink** ([`RedisStream::sink`]): hashes each event's key to a partition. A
///   [`transactional`](LogSink::transactional) sink in a pipeline that checkpoints stages
///   each checkpoint's events in a Redis list (phase one, at the barrier), and one Lua script
///   moves them into the streams when the checkpoint completes (phase two). The script also
///   records the checkpoint as committed for this sink, so committing twice (after a crash)
///   writes nothing twice. At the end of the stream, checkpoints staged but not known to be
///   complete and the events after them are written with their entry ids recorded (the commit
///   marker is not moved), and a run that resumes from an earlier checkpoint deletes them
///   before writing them again. A sink that is not transactional writes whenever the
///   pipeline flushes it (at least once).
///
/// The source and sink are the broker-agnostic [`LogSource`] and [`LogSink`] over
/// [`RedisReader`] and [`RedisWriter`]; another broker implements
/// [`LogReader`](crate::io::LogReader) and [`LogWriter`](crate::io::LogWriter).
/// - **Connection loss**: every command is retried on a new connection with backoff (6
///   attempts over about 1.5 s, which rides out a server restart), then fails with an error
///   naming the URL. A source never moves its position past what it
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
        let reader = RedisReader {
            stream: self.clone(),
            link: Link::new(&self.url),
        };
        Ok(LogSource::new(reader, owned, self.codec))
    }

    /// A sink named `id` (unique per sink writing to this stream: its staged checkpoints and
    /// commit marker are kept under that name) that writes each event to the partition of
    /// `key(&event)`.
    pub fn sink<T, K: Hash, F: Fn(&T) -> K>(
        &self,
        id: impl Into<String>,
        key: F,
    ) -> RedisStreamSink<T, F> {
        let writer = RedisWriter {
            stream: self.clone(),
            id: id.into(),
            link: Link::new(&self.url),
        };
        LogSink::new(writer, self.partitions, self.codec, key)
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
  redis.call('RPUSH', KEYS[1], 'tail ' .. ARGV[i] .. ' ' .. id)
end
redis.call('SET', KEYS[2], ARGV[1])
return (#ARGV - 1) / 2
";

/// Releases a staged checkpoint at the end of the stream: XADD every staged entry of KEYS[1]
/// (`partition \t data`) into `ARGV[2]:{partition}`, record `ARGV[1] key id` in the tail
/// record KEYS[2], and delete the staged list (so a retry finds nothing to do). The commit
/// marker is left alone.
const RELEASE: &str = r"
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
for _, e in ipairs(entries) do
  local tab = string.find(e, '\t', 1, true)
  local key = ARGV[2] .. ':{' .. string.sub(e, 1, tab - 1) .. '}'
  local id = redis.call('XADD', key, '*', 'data', string.sub(e, tab + 1))
  redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. key .. ' ' .. id)
end
redis.call('DEL', KEYS[1])
return #entries
";

/// Deletes the entries a tail record (KEYS[1]) lists under a checkpoint after ARGV[1] or
/// under `tail` (each line `checkpoint|tail key id`), then the record and its token (KEYS[2]);
/// returns how many were deleted.
const DROP_TAIL: &str = r"
local after = tonumber(ARGV[1])
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local dropped = 0
for _, e in ipairs(entries) do
  local a = string.find(e, ' ', 1, true)
  local b = string.find(e, ' ', a + 1, true)
  local tag = string.sub(e, 1, a - 1)
  if tag == 'tail' or tonumber(tag) > after then
    redis.call('XDEL', string.sub(e, a + 1, b - 1), string.sub(e, b + 1))
    dropped = dropped + 1
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return dropped
";

/// The Redis side of a [`RedisStreamSource`]: `XREAD` from entry ids.
pub struct RedisReader {
    stream: RedisStream,
    link: Link,
}

impl LogReader for RedisReader {
    fn log_name(&self) -> &str {
        &self.stream.name
    }

    fn start(&self) -> &str {
        "0-0"
    }

    fn compare(&self, a: &str, b: &str) -> std::cmp::Ordering {
        id_pair(a).cmp(&id_pair(b))
    }

    fn open(&mut self, partitions: &[u32], bounded: bool) -> Result<Option<Vec<String>>, String> {
        self.link.query(|c| redis::cmd("PING").query::<String>(c))?;
        if !bounded {
            return Ok(None);
        }
        // Redis creates a partition's stream with its first entry: a partition nothing was
        // written to is empty, but a stream none of whose partitions exists was never produced
        // (or is misnamed).
        let all: Vec<String> = (0..self.stream.partitions)
            .map(|p| self.stream.partition_key(p))
            .collect();
        let existing: u64 = self
            .link
            .query(|c| redis::cmd("EXISTS").arg(&all).query(c))?;
        if existing == 0 {
            return Err(format!(
                "Redis at {}: the stream `{}` does not exist: none of its {} partitions \
                 (`{}` …) has an entry (was it produced, with this name?)",
                self.stream.url, self.stream.name, self.stream.partitions, all[0]
            ));
        }
        let newest = self.newest(partitions)?;
        Ok(Some(
            newest
                .into_iter()
                .map(|id| id.unwrap_or_else(|| "0-0".to_string()))
                .collect(),
        ))
    }

    fn read(
        &mut self,
        partitions: &[u32],
        after: &[String],
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<LogRecord>, String> {
        let keys: Vec<String> = partitions
            .iter()
            .map(|&p| self.stream.partition_key(p))
            .collect();
        let mut opts = StreamReadOptions::default().count(max);
        if let Some(b) = block {
            opts = opts.block(b.as_millis().max(1) as usize);
        }
        let reply: Option<StreamReadReply> = self.link.query(|c| {
            redis::cmd("XREAD")
                .arg(&opts)
                .arg("STREAMS")
                .arg(&keys)
                .arg(after)
                .query(c)
        })?;
        let mut records = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(index) = keys.iter().position(|k| *k == key.key) else {
                continue;
            };
            for entry in key.ids {
                let payload = match entry.map.get("data") {
                    Some(v) => redis::from_redis_value::<Vec<u8>>(v)
                        .map_err(|e| format!("the `data` field is not a string: {e}")),
                    None => Err("the entry has no `data` field".to_string()),
                };
                records.push(LogRecord {
                    index,
                    offset: entry.id,
                    payload,
                });
            }
        }
        Ok(records)
    }

    fn lag_seconds(&mut self, partitions: &[u32], at: &[String]) -> Option<Vec<f64>> {
        let newest = self.newest(partitions).ok()?;
        Some(
            newest
                .iter()
                .zip(at)
                .map(|(newest, at)| {
                    let newest = newest.as_deref().map_or(0, |id| id_pair(id).0);
                    newest.saturating_sub(id_pair(at).0) as f64 / 1e3
                })
                .collect(),
        )
    }

    fn origin(&self, partition: u32, offset: &str) -> String {
        format!(
            "{} stream {} entry {offset}",
            self.stream.url,
            self.stream.partition_key(partition)
        )
    }
}

impl RedisReader {
    /// Each partition's newest entry id (`None`: empty), in one round trip.
    fn newest(&mut self, partitions: &[u32]) -> Result<Vec<Option<String>>, String> {
        let keys: Vec<String> = partitions
            .iter()
            .map(|&p| self.stream.partition_key(p))
            .collect();
        let newest: Vec<Vec<(String, redis::Value)>> = self.link.query(|c| {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1);
            }
            pipe.query(c)
        })?;
        Ok(newest
            .into_iter()
            .map(|e| e.into_iter().next().map(|(id, _)| id))
            .collect())
    }
}

/// The Redis side of a [`RedisStreamSink`]: staged lists, a commit marker and a tail record
/// per sink id, moved and checked by Lua scripts (atomic on the server).
pub struct RedisWriter {
    stream: RedisStream,
    id: String,
    link: Link,
}

impl RedisWriter {
    fn staged_key(&self, checkpoint: u64) -> String {
        format!("{}:staged:{}:{checkpoint}", self.stream.name, self.id)
    }

    fn marker_key(&self) -> String {
        format!("{}:committed:{}", self.stream.name, self.id)
    }

    /// The entries (`key id` lines) written at the end of a checkpointed run after its last
    /// checkpoint.
    fn tail_key(&self) -> String {
        format!("{}:tail:{}", self.stream.name, self.id)
    }

    fn tail_token_key(&self) -> String {
        format!("{}:tail:{}:written", self.stream.name, self.id)
    }

    /// Runs `script` (`COMMIT` or `RELEASE`) on checkpoint `checkpoint`'s staged entries, with
    /// `second` as its second key (the commit marker, or the tail record).
    fn move_staged(&mut self, script: &str, checkpoint: u64, second: &str) -> Result<(), String> {
        let (staged, name) = (self.staged_key(checkpoint), self.stream.name.clone());
        let script = redis::Script::new(script);
        self.link
            .query(|c| {
                script
                    .key(&staged)
                    .key(second)
                    .arg(checkpoint)
                    .arg(&name)
                    .invoke::<u64>(c)
            })
            .map(drop)
    }
}

impl LogWriter for RedisWriter {
    fn open(&mut self) -> Result<(), String> {
        self.link
            .query(|c| redis::cmd("PING").query::<String>(c))
            .map(drop)
    }

    fn append(&mut self, records: &[(u32, Vec<u8>)]) -> Result<(), String> {
        let keys: Vec<String> = records
            .iter()
            .map(|(p, _)| self.stream.partition_key(*p))
            .collect();
        self.link.query(|c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for ((_, data), key) in records.iter().zip(&keys) {
                pipe.cmd("XADD")
                    .arg(key)
                    .arg("*")
                    .arg("data")
                    .arg(data)
                    .ignore();
            }
            pipe.query::<()>(c)
        })
    }

    fn stage(&mut self, checkpoint: u64, records: &[(u32, Vec<u8>)]) -> Result<(), String> {
        let key = self.staged_key(checkpoint);
        self.link.query(|c| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&key).ignore();
            for chunk in records.chunks(1024) {
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
            pipe.query::<()>(c)
        })
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), String> {
        let marker = self.marker_key();
        self.move_staged(COMMIT, checkpoint, &marker)
    }

    fn staged(&mut self) -> Result<Vec<u64>, String> {
        let prefix = format!("{}:staged:{}:", self.stream.name, self.id);
        let pattern = format!("{prefix}*");
        // SCAN, not KEYS: KEYS walks the whole keyspace in one command and stalls every other
        // client of the server meanwhile. A failed step fails the whole listing (and the link
        // retries it), so a partial list never passes for the staged checkpoints.
        let keys: Vec<String> = self.link.query(|c| {
            let (mut cursor, mut keys) = (0u64, Vec::new());
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                keys.extend(batch);
                if next == 0 {
                    return Ok(keys);
                }
                cursor = next;
            }
        })?;
        let mut staged: Vec<u64> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix)?.parse().ok())
            .collect();
        staged.sort_unstable();
        Ok(staged)
    }

    fn discard(&mut self, checkpoint: u64) -> Result<(), String> {
        let key = self.staged_key(checkpoint);
        self.link
            .query(|c| redis::cmd("DEL").arg(&key).query::<()>(c))
    }

    fn append_tail(&mut self, records: &[(u32, Vec<u8>)]) -> Result<(), String> {
        let keys: Vec<String> = records
            .iter()
            .map(|(p, _)| self.stream.partition_key(*p))
            .collect();
        let (tail, written) = (self.tail_key(), self.tail_token_key());
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
            .query(|c| {
                let mut inv = script.key(&tail);
                inv.key(&written).arg(&token);
                for ((_, data), key) in records.iter().zip(&keys) {
                    inv.arg(key).arg(data);
                }
                inv.invoke::<u64>(c)
            })
            .map(drop)
    }

    fn drop_tail(&mut self, after: u64) -> Result<(), String> {
        let (tail, written) = (self.tail_key(), self.tail_token_key());
        let script = redis::Script::new(DROP_TAIL);
        self.link
            .query(|c| script.key(&tail).key(&written).arg(after).invoke::<u64>(c))
            .map(drop)
    }

    fn release_staged(&mut self, checkpoint: u64) -> Result<(), String> {
        let tail = self.tail_key();
        self.move_staged(RELEASE, checkpoint, &tail)
    }

    fn forget(&mut self) -> Result<(), String> {
        let mut keys: Vec<String> = self
            .staged()?
            .into_iter()
            .map(|c| self.staged_key(c))
            .collect();
        keys.extend([self.marker_key(), self.tail_key(), self.tail_token_key()]);
        self.link
            .query(|c| redis::cmd("DEL").arg(&keys).query::<()>(c))
    }
}
