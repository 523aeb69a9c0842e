//! `prometheus`: a trades pipeline whose metrics Prometheus can scrape.
//!
//! The pipeline publishes its metrics through the `metrics` facade
//! ([`PublishMetrics`](eventflux::observe::PublishMetrics)); this program installs
//! `metrics-exporter-prometheus` as the recorder and serves its rendering at `/metrics`.
//! Point Prometheus at it:
//!
//! ```yaml
//! scrape_configs:
//!   - job_name: eventflux
//!     static_configs: [{ targets: ["127.0.0.1:9000"] }]
//! ```
//!
//! Run: `cargo run --release --example prometheus [-- --listen ADDR] [--trades N] [--once]`
//!
//! It serves while the pipeline runs, prints the final scrape's node counters, and keeps
//! serving the final values until interrupted (Ctrl-C); `--once` exits after printing. Set `RUST_LOG`
//! (for example `RUST_LOG=debug`) to see more of the pipeline's `tracing` events.

#[path = "common/logging.rs"]
mod logging;
#[path = "common/prometheus_server.rs"]
mod prometheus_server;
#[path = "common/trades.rs"]
mod trades;

use std::io::{Read, Write};
use std::time::Duration;

use eventflux::observe::{Progress, PublishMetrics};
use eventflux::prelude::*;
use trades::{Trade, TradeGen};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    logging::init("info");
    let mut listen = "127.0.0.1:9000".to_string();
    let mut n: usize = 20_000_000;
    let mut linger = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--trades" => {
                let v = args.next().ok_or("--trades needs a number")?;
                n = v
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("--trades: not a number: {v}"))?;
            }
            "--once" => linger = false,
            other => {
                return Err(
                    format!("unknown argument {other} (try --listen, --trades, --once)").into(),
                );
            }
        }
    }
    let handle = prometheus_server::install().map_err(|e| e.to_string())?;
    let server = prometheus_server::serve(&listen, handle)?;
    println!(
        "serving Prometheus metrics at http://{}/metrics",
        server.addr
    );

    let app = pipeline! {
        source trades: Trade = IterSource::new(TradeGen::new(7).with_disorder(50).take(n));
        stage  big    = filter(|t: &Trade| t.volume > 100);
        stage  marks  = watermarks(|t: &Trade| t.ts, 50);
        stage  value  = map(|t: Trade| (t.ts, t.symbol, t.price * f64::from(t.volume)));
        stage  totals = tumbling(100_000, |t: &(u64, u32, f64)| t.0)
                            .group_by_index(|t: &(u64, u32, f64)| t.1 as usize)
                            .aggregate((count(), sum(|t: &(u64, u32, f64)| t.2)))
                            .select(|symbol, window, (trades, notional)| (window.start, symbol, trades, notional));
        sink   rows   = CollectSink::new();

        trades -> big -> marks =>[workers = 2, key = |t: &Trade| t.symbol] value -> totals => rows;
    };
    let report = app
        .publish_metrics(PublishMetrics::new("trades").every(Duration::from_millis(500)))
        .progress(Progress::auto().named("trades"))
        .run()?;
    println!("{}", report.to_string().lines().next().unwrap_or_default());

    // What a scraper sees now: the final values.
    let mut stream = std::net::TcpStream::connect(server.addr)?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    println!("final scrape, node counters:");
    for line in body
        .lines()
        .filter(|l| l.starts_with("eventflux_node_events_out_total"))
    {
        println!("  {line}");
    }
    if linger {
        println!("serving the final values until interrupted (Ctrl-C)");
        loop {
            std::thread::park();
        }
    }
    Ok(())
}
