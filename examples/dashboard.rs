//! `dashboard`: a live web page of a running pipeline.
//!
//! Two paced trade feeds run through a fan-in, a keyed parallel edge and event-time windows
//! (see `examples/common/dashboard_demo.rs`); the page at the printed address draws the graph
//! and updates every second with each node's rate, each queue's fill and backpressure,
//! watermarks and checkpoints.
//!
//! Run: `cargo run --release --example dashboard [-- --listen ADDR] [--rate N] [--seconds S]`
//!
//! `--listen` defaults to `127.0.0.1:8080`, `--rate` (trades per second of each feed) to 200 000, and
//! the pipeline runs until interrupted (Ctrl-C) unless `--seconds` says how long.

#[path = "common/dashboard_demo.rs"]
mod dashboard_demo;
#[path = "common/logging.rs"]
mod logging;
#[path = "common/trades.rs"]
mod trades;

use std::time::Duration;

use eventflux::observe::Progress;
use eventflux::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init("info");
    let mut listen = "127.0.0.1:8080".to_string();
    let mut rate: u64 = 200_000;
    let mut seconds: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    let number = |name: &str, v: Option<String>| -> Result<u64, String> {
        let v = v.ok_or(format!("{name} needs a number"))?;
        v.replace('_', "")
            .parse()
            .map_err(|_| format!("{name}: not a number: {v}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--rate" => rate = number("--rate", args.next())?,
            "--seconds" => seconds = Some(number("--seconds", args.next())?),
            other => {
                return Err(
                    format!("unknown argument {other} (try --listen, --rate, --seconds)").into(),
                );
            }
        }
    }
    let state = std::env::temp_dir().join("eventflux-dashboard-demo");
    let handle = dashboard_demo::pipeline(rate)
        .progress(
            Progress::auto()
                .named("dashboard demo")
                .every(Duration::from_secs(5)),
        )
        .with_checkpoint_interval(Duration::from_secs(2))?
        .checkpoints(&state, Recovery::StartFresh)?
        .spawn()?;
    let addr = handle.serve_dashboard(listen.as_str())?;
    println!("dashboard: http://{addr}/");
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::park();
        },
    }
    let report = handle.stop()?;
    print!("{report}");
    Ok(())
}
