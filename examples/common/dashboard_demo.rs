//! The pipeline the `dashboard` example shows (and the dashboard's browser test drives): two
//! paced trade feeds, a fan-in, a fan-out, a keyed parallel edge and event-time windows.
//!
//! ```text
//! lit → big → lit_time ⇒ merged ⇒[2 workers, by symbol] value → windows ⇒ rows
//!       big → audit                                              windows → hot ⇒ alerts
//! dark → dark_time ⇒ merged
//! ```
//!
//! Each feed makes its own watermarks; the fan-in passes on the least of the two, so the
//! windows close only once both feeds are past them.

use std::time::{Duration, Instant};

use eventflux::prelude::*;

use super::trades::{SYMBOLS, Trade, TradeGen};

/// Yields `inner`'s items at about `per_sec` a second (sleeping between runs of 256).
pub struct Paced<I> {
    inner: I,
    per_sec: f64,
    start: Instant,
    n: u64,
}

impl<I> Paced<I> {
    /// Paces `inner` at `per_sec` items a second.
    pub fn new(inner: I, per_sec: u64) -> Self {
        Self {
            inner,
            per_sec: per_sec.max(1) as f64,
            start: Instant::now(),
            n: 0,
        }
    }
}

impl<I: Iterator> Iterator for Paced<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        if self.n.is_multiple_of(256) {
            let due = self.start + Duration::from_secs_f64(self.n as f64 / self.per_sec);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.n += 1;
        self.inner.next()
    }
}

/// One symbol's window.
#[derive(Clone, Debug)]
pub struct Row {
    /// The window's start tick.
    pub start: u64,
    /// The symbol.
    pub symbol: u32,
    /// Trades in the window.
    pub trades: u64,
    /// Their total notional.
    pub notional: f64,
}

/// The demo pipeline: each feed at `per_sec` trades a second.
pub fn pipeline(per_sec: u64) -> App<'static> {
    // An alert is a window 10 % over the mean notional per symbol and window: a window of
    // 10 000 ticks holds ~6 667 trades of each feed (ticks rise by 1.5 on average), 90 % of
    // the lit ones are big, each worth ~150 (price) × 550 (volume) on average.
    let threshold = 1.1 * (10_000.0 / 1.5) * 1.9 / SYMBOLS as f64 * 150.0 * 550.0;
    pipeline! {
        config { queue_capacity: 8192, batch_size: 256 }

        source lit: Trade  = IterSource::new(Paced::new(TradeGen::new(1).with_disorder(50), per_sec));
        source dark: Trade = IterSource::new(Paced::new(TradeGen::new(2).with_disorder(50), per_sec));
        stage  big     = filter(|t: &Trade| t.volume > 100);
        stage  lit_time  = watermarks(|t: &Trade| t.ts, 50);
        stage  dark_time = watermarks(|t: &Trade| t.ts, 50);
        stage  merged  = inspect(|_: &Trade| {});
        stage  value   = map(|t: Trade| (t.ts, t.symbol, t.price * f64::from(t.volume)));
        stage  windows = tumbling(10_000, |v: &(u64, u32, f64)| v.0)
                             .group_by_index(|v: &(u64, u32, f64)| v.1 as usize)
                             .aggregate((count(), sum(|v: &(u64, u32, f64)| v.2)))
                             .select(|symbol, window, (trades, notional)| Row {
                                 start: window.start,
                                 symbol: symbol as u32,
                                 trades,
                                 notional,
                             });
        stage  hot     = filter(move |r: &Row| r.notional > threshold);
        sink   audit   = CallbackSink::new(|_: Trade| Ok(()));
        sink   rows    = CallbackSink::new(|_: Row| Ok(()));
        sink   alerts  = CallbackSink::new(|r: Row| {
                             tracing::debug!(symbol = r.symbol, window = r.start, trades = r.trades, notional = r.notional, "alert");
                             Ok(())
                         });

        lit -> big -> lit_time => merged;                         // fan-in from two threads
        big -> audit;                                             // fan-out
        dark -> dark_time => merged;
        merged =>[workers = 2, key = |t: &Trade| t.symbol] value -> windows;
        windows =>[capacity = 1024, batch_size = 64] rows;
        windows -> hot => alerts;
    }
}
