//! `distributed_trades`: the trades job scaled out over several processes (or machines) on a
//! partitioned Redis stream. Needs a Redis server (`redis-server`) and the feature `redis`
//! (on for the examples).
//!
//! ```text
//! # 1. load 1 000 000 trades into `trades` (6 partitions, keyed by symbol)
//! cargo run --release --example distributed_trades -- produce --trades 1000000
//! # 2. three workers, each on its partitions (p % 3 == w), in three terminals or machines
//! cargo run --release --example distributed_trades -- work --worker 0 --workers 3 --checkpoint-dir /tmp/w0
//! cargo run --release --example distributed_trades -- work --worker 1 --workers 3 --checkpoint-dir /tmp/w1
//! cargo run --release --example distributed_trades -- work --worker 2 --workers 3 --checkpoint-dir /tmp/w2
//! # 3. the merged rows equal a single-process run over the same trades
//! cargo run --release --example distributed_trades -- check --trades 1000000
//! ```
//!
//! Common options: `--redis URL` (default `redis://127.0.0.1:6379`, or `$REDIS_URL`),
//! `--input NAME` (`trades`), `--output NAME` (`trade_rows`), `--partitions P` (6). A worker
//! killed at any instant (even with `kill -9`) and started again with the same command resumes
//! from its checkpoint directory: its rows are still written exactly once. On several
//! machines, point `--redis` at the shared server and give each worker its own checkpoint
//! directory.

#[path = "common/distributed.rs"]
mod distributed;
#[path = "common/logging.rs"]
mod logging;
#[path = "common/trades.rs"]
mod trades;

use std::time::Duration;

use eventflux::io::RedisStream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init("warn");
    let mut args = std::env::args().skip(1);
    let role = args
        .next()
        .ok_or("give a role: produce, work or check (see the file's docs)")?;
    let mut redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let (mut input, mut output) = ("trades".to_string(), "trade_rows".to_string());
    let (mut partitions, mut trades, mut worker, mut workers) =
        (6u32, 1_000_000usize, 0usize, 1usize);
    let mut checkpoint_dir: Option<std::path::PathBuf> = None;
    let mut slow = false;
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, v: String| -> Result<usize, String> {
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--redis" => redis = value("--redis")?,
            "--input" => input = value("--input")?,
            "--output" => output = value("--output")?,
            "--partitions" => partitions = number("--partitions", value("--partitions")?)? as u32,
            "--trades" => trades = number("--trades", value("--trades")?)?,
            "--worker" => worker = number("--worker", value("--worker")?)?,
            "--workers" => workers = number("--workers", value("--workers")?)?,
            "--checkpoint-dir" => checkpoint_dir = Some(value("--checkpoint-dir")?.into()),
            "--slow" => slow = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let input = RedisStream::new(&redis, input, partitions)?;
    let output = RedisStream::new(&redis, output, partitions)?;
    match role.as_str() {
        "produce" => {
            distributed::produce(&input, trades)?;
            distributed::clear(&output)?;
            println!(
                "produced {trades} trades into {} partitions of `{}`",
                partitions,
                input.name()
            );
        }
        "work" => {
            let dir = checkpoint_dir.ok_or("work needs --checkpoint-dir DIR")?;
            let report = distributed::work(
                &input,
                &output,
                worker,
                workers,
                &dir,
                Duration::from_millis(500),
                slow,
            )?;
            println!(
                "worker {worker} of {workers}: {} trades in, {} rows out",
                report.events_in, report.events_out
            );
        }
        "check" => {
            let want = distributed::expected(trades)?;
            let got = distributed::read_rows(&output)?;
            let (lost, extra) = distributed::compare(&want, &got);
            println!(
                "{} rows expected, {} read: lost {lost}, duplicated or wrong {extra}",
                want.len(),
                got.len()
            );
            if let Some((w, g)) = want.iter().zip(&got).find(|(w, g)| w != g) {
                println!("first difference:\n  expected {w:?}\n  read     {g:?}");
            }
            if lost > 0 || extra > 0 {
                return Err("the merged output differs from a single-process run".into());
            }
        }
        other => return Err(format!("unknown role {other}: produce, work or check").into()),
    }
    Ok(())
}
