//! `graph`: prints the Mermaid (and, with `--dot`, Graphviz) graph of a non-trivial pipeline —
//! fan-out, fan-in, thread boundaries and a keyed parallel edge — then runs it.
//!
//! Run: `cargo run --example graph` (paste the output into any Mermaid renderer).

#[path = "common/trades.rs"]
mod trades;

use eventflux::prelude::*;
use trades::{Trade, TradeGen};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dot = std::env::args().any(|a| a == "--dot");
    let totals = CollectSink::new();
    let got = totals.handle();

    let app = pipeline! {
        config { queue_capacity: 8192, batch_size: 256 }

        source lit    = IterSource::new(TradeGen::new(1).take(100_000));
        source dark   = IterSource::new(TradeGen::new(2).take(50_000));
        stage  big    = filter(|t: &Trade| t.volume > 100);
        stage  merged = inspect(|_: &Trade| {});
        stage  value  = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume)));
        stage  per_symbol = stateful([0.0f64; trades::SYMBOLS], |sums: &mut [f64; trades::SYMBOLS], (s, v): (u32, f64)| {
                             sums[s as usize] += v;
                             None::<(u32, f64)>
                         })
                         .finish_with(|sums: &mut [f64; trades::SYMBOLS]| {
                             Some((0, sums.iter().sum::<f64>()))
                         });
        sink   totals = totals;
        sink   audit  = CollectSink::new();

        lit -> big;
        big => merged;                                            // fan-in from two threads
        dark => merged;
        big -> audit;                                             // fan-out
        merged =>[workers = 2, key = |t: &Trade| t.symbol] value  // keyed parallel edge
               -> per_symbol =>[capacity = 1024, batch_size = 64] totals;
    };

    if dot {
        print!("{}", app.graph().to_dot());
    } else {
        print!("{}", app.graph().to_mermaid());
    }
    let report = app.run()?;
    let partials = got.take();
    eprintln!(
        "ran: {} events in, {} partial totals from the workers, grand total {:.2}",
        report.events_in,
        partials.len(),
        partials.iter().map(|(_, v)| v).sum::<f64>()
    );
    Ok(())
}
