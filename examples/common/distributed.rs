//! The distributed trades job (shared by `examples/distributed_trades.rs` and
//! `tests/distributed.rs`): trades in a partitioned Redis stream, per-symbol event-time windows
//! computed by several worker processes, each on its partitions, rows written exactly once
//! into another partitioned stream.

use std::time::Duration;

use eventflux::io::RedisStream;
use eventflux::prelude::*;

use super::trades::{Trade, TradeGen};

/// Out-of-orderness of the generated trades (and of every partition's subsequence).
pub const DISORDER: u64 = 50;
/// Window size in ticks.
pub const WINDOW: u64 = 10_000;

/// One symbol's activity in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    pub window_start: u64,
    pub symbol: u32,
    pub trades: u64,
    pub volume: u64,
    pub notional: f64,
    pub low: f64,
    pub high: f64,
}

/// The trades of the job: `n` generated with seed 7, out of order by up to [`DISORDER`].
pub fn trades(n: usize) -> impl Iterator<Item = Trade> {
    TradeGen::new(7).with_disorder(DISORDER).take(n)
}

macro_rules! windows {
    () => {
        tumbling(WINDOW, |t: &Trade| t.ts)
            .group_by_index(|t: &Trade| t.symbol as usize)
            .aggregate((
                count(),
                sum(|t: &Trade| t.volume),
                sum(|t: &Trade| t.price * f64::from(t.volume)),
                min(|t: &Trade| t.price),
                max(|t: &Trade| t.price),
            ))
            .select(
                |symbol, window, (trades, volume, notional, low, high)| WindowRow {
                    window_start: window.start,
                    symbol: symbol as u32,
                    trades,
                    volume: volume as u64,
                    notional,
                    low,
                    high,
                },
            )
    };
}

/// Loads `n` trades into `stream`, keyed by symbol (its partitions are emptied first).
pub fn produce(stream: &RedisStream, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    clear(stream)?;
    let sink = stream.sink("producer", |t: &Trade| t.symbol);
    let app = pipeline! {
        source trades: Trade = IterSource::new(trades(n));
        sink   out = sink;
        trades -> out;
    };
    app.run()?;
    Ok(())
}

/// Deletes a stream's partitions and its sinks' bookkeeping (a fresh start).
pub fn clear(stream: &RedisStream) -> Result<(), Box<dyn std::error::Error>> {
    let client = redis::Client::open(stream.url())?;
    let mut conn = client.get_connection()?;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", stream.name()))
        .query(&mut conn)?;
    keys.retain(|k| k.starts_with(&format!("{}:", stream.name())));
    if !keys.is_empty() {
        redis::cmd("DEL").arg(keys).query::<()>(&mut conn)?;
    }
    Ok(())
}

/// Worker `worker` of `workers`: reads its partitions of `input` (to their end when the
/// worker started), computes the windows, and writes the rows into `output` exactly once,
/// checkpointing into `checkpoints` every `every` (a restart resumes from there).
/// `slow` holds each event back a little (to give a test time to kill the worker).
pub fn work(
    input: &RedisStream,
    output: &RedisStream,
    worker: usize,
    workers: usize,
    checkpoints: &std::path::Path,
    every: Duration,
    slow: bool,
) -> Result<RunReport, Box<dyn std::error::Error>> {
    let source = input
        .source::<Trade>(worker, workers)?
        .bounded()
        .event_time(|t: &Trade| t.ts, DISORDER);
    let sink = output
        .sink(format!("worker-{worker}"), |r: &WindowRow| r.symbol)
        .transactional();
    let mut seen = 0u64;
    let app = pipeline! {
        source trades: Trade = source;
        stage  pace    = inspect(move |_: &Trade| {
                             seen += 1;
                             if slow && seen.is_multiple_of(200) {
                                 std::thread::sleep(Duration::from_millis(2));
                             }
                         });
        stage  big     = filter(|t: &Trade| t.volume > 100);
        stage  windows = windows!();
        sink   rows    = sink;
        trades -> pace -> big -> windows => rows;
    };
    let report = app
        .with_checkpoint_interval(every)?
        .checkpoints(checkpoints, Recovery::ResumeOrStart)?
        .run()?;
    Ok(report)
}

/// The rows a single process computes from the same `n` trades, in memory.
pub fn expected(n: usize) -> Result<Vec<WindowRow>, Box<dyn std::error::Error>> {
    let rows = CollectSink::new();
    let got = rows.handle();
    let app = pipeline! {
        source trades: Trade = IterSource::new(trades(n));
        stage  big     = filter(|t: &Trade| t.volume > 100);
        stage  marks   = watermarks(|t: &Trade| t.ts, DISORDER);
        stage  windows = windows!();
        sink   rows    = rows;
        trades -> big -> marks -> windows -> rows;
    };
    app.run()?;
    let mut rows = got.take();
    sort(&mut rows);
    Ok(rows)
}

/// Every row in `output`, read to its end.
pub fn read_rows(output: &RedisStream) -> Result<Vec<WindowRow>, Box<dyn std::error::Error>> {
    let rows = CollectSink::new();
    let got = rows.handle();
    let source = output.source::<WindowRow>(0, 1)?.bounded();
    let app = pipeline! {
        source stored: WindowRow = source;
        sink   rows = rows;
        stored -> rows;
    };
    let report = app.run()?;
    if report.dead_letter_count > 0 {
        return Err(format!("{} rows could not be read", report.dead_letter_count).into());
    }
    let mut rows = got.take();
    sort(&mut rows);
    Ok(rows)
}

fn sort(rows: &mut [WindowRow]) {
    rows.sort_by_key(|r| (r.window_start, r.symbol));
}

/// Rows of `want` missing from `got`, and rows of `got` beyond `want` (duplicates or strays).
pub fn compare(want: &[WindowRow], got: &[WindowRow]) -> (usize, usize) {
    let (mut i, mut j, mut lost, mut extra) = (0, 0, 0, 0);
    while i < want.len() || j < got.len() {
        match (want.get(i), got.get(j)) {
            (Some(w), Some(g)) if w == g => {
                i += 1;
                j += 1;
            }
            (Some(w), Some(g)) if (w.window_start, w.symbol) <= (g.window_start, g.symbol) => {
                // `w` is not in `got` here: lost (or `got` holds a different value for it).
                lost += 1;
                i += 1;
            }
            (Some(_), Some(_)) | (None, Some(_)) => {
                extra += 1;
                j += 1;
            }
            (Some(_), None) => {
                lost += 1;
                i += 1;
            }
            (None, None) => break,
        }
    }
    (lost, extra)
}
