//! `trade_stats`: a realistic pipeline over 10 million generated trades.
//!
//! ```text
//! trades → big → value → marks ⇒ windows ─→ rows
//!                                        └─→ hot → alert_log
//! ```
//!
//! Declared with `pipeline!`. The source thread generates trades (timestamps out of order by up
//! to 50 ticks), keeps the big ones, projects them to notional values and generates event-time
//! watermarks; a bounded queue hands batches to the stats thread, which aggregates per-symbol
//! event-time tumbling windows of 10 000 ticks (count, volume, notional, low, high) and fans the
//! window rows out to two sinks. At the end it prints the busiest symbols of the last window, the
//! alerts, and the pipeline's metrics: events/s, queue depths, latency.
//!
//! Run: `cargo run --release --example trade_stats [-- <number of trades>] [--checkpoint-dir DIR]`
//!
//! While it runs, a progress line a second goes to stderr when stderr is a terminal.
//!
//! With `--checkpoint-dir DIR` the job checkpoints into `DIR/state` every second and writes its
//! rows and alerts as exactly-once part files (`DIR/rows`, `DIR/alerts`); stop it at any
//! instant (Ctrl-C, `kill -9`) and run the same command again: it resumes from its last
//! checkpoint and ends with exactly the output of a run that was never stopped.

#[path = "common/logging.rs"]
mod logging;
#[path = "common/trades.rs"]
mod trades;

use eventflux::prelude::*;
use trades::{SYMBOLS, Trade, TradeGen};

/// A trade's value.
#[derive(Clone, Copy, Debug)]
struct Notional {
    ts: u64,
    symbol: u32,
    price: f64,
    volume: u32,
    value: f64,
}

/// One symbol's activity in one window: what the window's `.select` makes of each row.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WindowRow {
    window_start: u64,
    window_end: u64,
    symbol: u32,
    trades: u64,
    volume: u64,
    notional: f64,
    vwap: f64,
    low: f64,
    high: f64,
}

/// Where the job writes, with `--checkpoint-dir`.
struct Durable {
    state: std::path::PathBuf,
    rows: std::path::PathBuf,
    alerts: std::path::PathBuf,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The pipeline's `tracing` events (warnings and errors; `RUST_LOG=info` for its lifecycle
    // and checkpoints) on stderr.
    logging::init("warn");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut n: usize = 10_000_000;
    let mut durable = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--checkpoint-dir" => {
                let dir = std::path::PathBuf::from(
                    args.get(i + 1)
                        .ok_or("--checkpoint-dir needs a directory")?,
                );
                durable = Some(Durable {
                    state: dir.join("state"),
                    rows: dir.join("rows"),
                    alerts: dir.join("alerts"),
                });
                i += 2;
            }
            a => {
                n = a
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("not a number of trades: {a}"))?;
                i += 1;
            }
        }
    }
    // A window row is an alert when its notional is 25 % over the expected per-window mean:
    // a window of 10 000 ticks holds ~6 667 trades (ticks rise by 1.5 on average), 90 % are
    // kept, spread over 64 symbols, each worth ~150 (price) × 550 (volume) on average.
    let threshold = 1.25 * (10_000.0 / 1.5) * 0.9 / SYMBOLS as f64 * 150.0 * 550.0;
    let rows = CollectSink::new();
    let alerts = CollectSink::new();
    let (rows_out, alerts_out) = (rows.handle(), alerts.handle());
    // In memory, or exactly-once part files when the job checkpoints.
    type Out = Box<dyn Sink<WindowRow>>;
    let (rows, alerts): (Out, Out) = match &durable {
        None => (Box::new(rows), Box::new(alerts)),
        Some(d) => (
            Box::new(JsonLinesParts::create(&d.rows)?),
            Box::new(JsonLinesParts::create(&d.alerts)?),
        ),
    };

    let app = pipeline! {
        config { queue_capacity: 65536, batch_size: 1024, backpressure: Block }

        source trades: Trade = IterSource::new(TradeGen::new(7).with_disorder(50).take(n));
        stage  big     = filter(|t: &Trade| t.volume > 100);
        stage  value   = map(|t: Trade| Notional {
                             ts: t.ts,
                             symbol: t.symbol,
                             price: t.price,
                             volume: t.volume,
                             value: t.price * f64::from(t.volume),
                         });
        stage  marks   = watermarks(|n: &Notional| n.ts, 50);
        stage  windows = tumbling(10_000, |n: &Notional| n.ts)
                             .out_of_orderness(50)
                             .group_by_index(|n: &Notional| n.symbol as usize)
                             .aggregate((
                                 count(),
                                 sum(|n: &Notional| n.volume),
                                 sum(|n: &Notional| n.value),
                                 min(|n: &Notional| n.price),
                                 max(|n: &Notional| n.price),
                             ))
                             .select(|symbol, window, (trades, volume, notional, low, high)| {
                                 WindowRow {
                                     window_start: window.start,
                                     window_end: window.end,
                                     symbol: symbol as u32,
                                     trades,
                                     volume: volume as u64,
                                     notional,
                                     vwap: notional / volume as f64,
                                     low,
                                     high,
                                 }
                             });
        stage  hot     = filter(move |r: &WindowRow| r.notional > threshold);
        sink   rows    = rows;
        sink   alert_log = alerts;

        trades -> big -> value -> marks => windows -> rows;   // `=>`: a second thread
        windows -> hot -> alert_log;                          // fan-out of window rows
    };
    println!("{}", app.graph().to_mermaid());
    // A progress line a second on stderr, when it is a terminal.
    let app = app.progress(eventflux::observe::Progress::auto().named("trade_stats"));
    let report = match &durable {
        None => app.run()?,
        Some(d) => {
            let app = app
                .with_checkpoint_interval(std::time::Duration::from_secs(1))?
                .checkpoints(&d.state, Recovery::ResumeOrStart)?;
            app.run()?
        }
    };

    let (rows, alerts) = match &durable {
        None => (rows_out.take(), alerts_out.take()),
        Some(d) => (read_rows(&d.rows)?, read_rows(&d.alerts)?),
    };
    let last_start = rows.last().map_or(0, |r| r.window_start);
    let mut last: Vec<&WindowRow> = rows
        .iter()
        .filter(|r| r.window_start == last_start)
        .collect();
    last.sort_by(|a, b| b.notional.total_cmp(&a.notional));
    println!(
        "eventflux trade_stats: {n} trades → {} window rows, {} alerts",
        rows.len(),
        alerts.len()
    );
    println!(
        "busiest symbols in the last window [{last_start}, {}):",
        last_start + 10_000
    );
    for r in last.iter().take(5) {
        println!(
            "  symbol {:>2}: {:>4} trades, volume {:>7}, notional {:>13.2}, vwap {:>7.2}, range {:.2}–{:.2}",
            r.symbol, r.trades, r.volume, r.notional, r.vwap, r.low, r.high
        );
    }
    if let Some(a) = alerts
        .iter()
        .max_by(|a, b| a.notional.total_cmp(&b.notional))
    {
        println!(
            "largest alert: symbol {} in [{}, {}) with notional {:.2} (threshold {:.2})",
            a.symbol, a.window_start, a.window_end, a.notional, threshold
        );
    }
    println!();
    print!("{report}");
    Ok(())
}

/// The committed rows of a part-file directory.
fn read_rows(dir: &std::path::Path) -> Result<Vec<WindowRow>, Box<dyn std::error::Error>> {
    JsonLinesParts::<WindowRow>::read_committed(dir)?
        .iter()
        .map(|line| Ok(serde_json::from_str(line)?))
        .collect()
}
