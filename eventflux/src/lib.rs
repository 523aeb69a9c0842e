//! **eventflux** — high-performance embedded event-stream processing for Rust.
//!
//! You describe a graph of named stages — sources, filters, projections, windows, aggregations,
//! your own stateful stages, sinks — and eventflux runs it as statically dispatched, fused
//! chains: stages on one thread are plain inlined calls with no allocation per event; thread
//! boundaries are lock-free bounded queues carrying pooled batches under a backpressure strategy
//! you choose. Every pipeline reports metrics.
//!
//! This crate is the facade: depend on it and `use eventflux::prelude::*`. The runtime lives in
//! [`eventflux_runtime`] (re-exported as [`runtime`] and module by module below); the
//! `pipeline!` macro will live in `eventflux-macros`.
//!
//! ```
//! use eventflux::prelude::*;
//!
//! #[derive(Clone, Debug)]
//! struct Trade { symbol: u32, price: f64, volume: u32 }
//!
//! let trades = vec![
//!     Trade { symbol: 1, price: 10.0, volume: 500 },
//!     Trade { symbol: 2, price: 20.0, volume: 50 },
//!     Trade { symbol: 1, price: 11.0, volume: 200 },
//! ];
//! let notional = CollectSink::new();
//! let got = notional.handle();
//!
//! // Source thread => queue => processing thread.
//! let mut p = PipelineBuilder::new(PipelineConfig::default());
//! let (tx, rx) = p.queue::<Trade>("trades");
//! let out = p.sink("notional", notional);
//! p.add_source("feed", IterSource::new(trades), filter(|t: &Trade| t.volume > 100), QueueOutput::new(tx));
//! p.add_queue_segment("value", rx, map(|t: Trade| (t.symbol, t.price * t.volume as f64)), out);
//! let report = p.build()?.run()?;
//!
//! assert_eq!(got.take(), [(1, 5000.0), (1, 2200.0)]);
//! assert_eq!((report.events_in, report.events_out), (3, 2));
//! # Ok::<(), PipelineError>(())
//! ```

pub use eventflux_macros::pipeline;
pub use eventflux_runtime as runtime;
#[doc(hidden)]
pub use eventflux_runtime::__private;
pub use eventflux_runtime::{
    app, backpressure, config, error, exec, graph, idle, io, metrics, pool, queue, sink, source,
    stage,
};

/// Everything a pipeline author needs, in one import.
pub mod prelude {
    pub use crate::pipeline;
    pub use eventflux_runtime::prelude::*;
    pub use serde::{Deserialize, Serialize};
}
