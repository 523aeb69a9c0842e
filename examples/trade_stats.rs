//! `trade_stats`: a realistic pipeline over 10 million generated trades.
//!
//! ```text
//! trades ─(filter volume > 100 → project to notional)─⇒ stats (per-symbol 10 000-tick windows)
//!                                                          ├─→ all window rows (collected)
//!                                                          └─→ alerts: rows over 2 × the mean
//! ```
//!
//! Declared with `pipeline!`. The source thread generates and filters trades and hands batches
//! through a bounded queue to the stats thread, which keeps per-symbol tumbling windows in a dense array (a user-written
//! stateful stage) and fans its rows out to two sinks. At the end it prints the busiest symbols
//! of the last window, the alerts, and the pipeline's metrics: events/s, queue depths, latency.
//!
//! Run: `cargo run --release --example trade_stats [-- <number of trades>]`

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

/// One symbol's activity in one window.
#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Copy)]
struct Acc {
    trades: u64,
    volume: u64,
    notional: f64,
    low: f64,
    high: f64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        trades: 0,
        volume: 0,
        notional: 0.0,
        low: f64::INFINITY,
        high: f64::NEG_INFINITY,
    };
}

/// Per-symbol tumbling windows of `size` ticks over in-order timestamps. Rows of a closed
/// window come out in order of each symbol's first trade in it; state is a dense array.
struct SymbolWindows {
    size: u64,
    current: Option<u64>,
    acc: [Acc; SYMBOLS],
    order: Vec<u32>,
}

impl SymbolWindows {
    fn new(size: u64) -> Self {
        Self {
            size,
            current: None,
            acc: [Acc::EMPTY; SYMBOLS],
            order: Vec::with_capacity(SYMBOLS),
        }
    }

    fn close<E: Emit<WindowRow>>(&mut self, out: &mut E) {
        let Some(w) = self.current else { return };
        for symbol in self.order.drain(..) {
            let a = std::mem::replace(&mut self.acc[symbol as usize], Acc::EMPTY);
            out.emit(WindowRow {
                window_start: w * self.size,
                window_end: (w + 1) * self.size,
                symbol,
                trades: a.trades,
                volume: a.volume,
                notional: a.notional,
                vwap: a.notional / a.volume as f64,
                low: a.low,
                high: a.high,
            });
        }
    }
}

impl Stage<Notional> for SymbolWindows {
    type Out = WindowRow;

    fn process<E: Emit<WindowRow>>(&mut self, n: Notional, out: &mut E) {
        let w = n.ts / self.size;
        if self.current != Some(w) {
            self.close(out);
            self.current = Some(w);
        }
        let a = &mut self.acc[n.symbol as usize];
        if a.trades == 0 {
            self.order.push(n.symbol);
        }
        a.trades += 1;
        a.volume += u64::from(n.volume);
        a.notional += n.value;
        a.low = a.low.min(n.price);
        a.high = a.high.max(n.price);
    }

    fn on_end<E: Emit<WindowRow>>(&mut self, out: &mut E) {
        self.close(out);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a
            .replace('_', "")
            .parse()
            .map_err(|_| format!("not a number of trades: {a}"))?,
        None => 10_000_000,
    };
    // A window row is an alert when its notional is 25 % over the expected per-window mean:
    // a window of 10 000 ticks holds ~6 667 trades (ticks rise by 1.5 on average), 90 % are
    // kept, spread over 64 symbols, each worth ~150 (price) × 550 (volume) on average.
    let threshold = 1.25 * (10_000.0 / 1.5) * 0.9 / SYMBOLS as f64 * 150.0 * 550.0;
    let rows = CollectSink::new();
    let alerts = CollectSink::new();
    let (rows_out, alerts_out) = (rows.handle(), alerts.handle());

    let app = pipeline! {
        config { queue_capacity: 65536, batch_size: 1024, backpressure: Block }

        source trades: Trade = IterSource::new(TradeGen::new(7).take(n));
        stage  big     = filter(|t: &Trade| t.volume > 100);
        stage  value   = map(|t: Trade| Notional {
                             ts: t.ts,
                             symbol: t.symbol,
                             price: t.price,
                             volume: t.volume,
                             value: t.price * f64::from(t.volume),
                         });
        stage  windows = SymbolWindows::new(10_000);
        stage  hot     = filter(move |r: &WindowRow| r.notional > threshold);
        sink   rows    = rows;
        sink   alert_log = alerts;

        trades -> big -> value => windows -> rows;   // `=>`: a queue and a second thread
        windows -> hot -> alert_log;                  // fan-out of window rows
    };
    println!("{}", app.graph().to_mermaid());
    let report = app.run()?;

    let rows = rows_out.take();
    let alerts = alerts_out.take();
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
