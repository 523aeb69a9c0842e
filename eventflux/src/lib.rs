//! **eventflux** — high-performance embedded event-stream processing for Rust.
//!
//! You declare a graph of named stages with [`pipeline!`]; the macro checks the graph at compile
//! time and compiles it into statically dispatched, fused chains: stages joined by `->` run on
//! one thread as plain inlined calls with no allocation per event; a `=>` is a lock-free bounded
//! queue carrying pooled batches to another thread, under the backpressure strategy you choose.
//! Every pipeline reports metrics under the names you gave its nodes.
//!
//! ```
//! use eventflux::prelude::*;
//!
//! #[derive(Clone, Debug)]
//! struct Trade { symbol: u32, price: f64, volume: u32 }
//!
//! let feed = vec![
//!     Trade { symbol: 1, price: 10.0, volume: 500 },
//!     Trade { symbol: 2, price: 20.0, volume: 50 },
//!     Trade { symbol: 1, price: 11.0, volume: 200 },
//! ];
//! let notional = CollectSink::new();
//! let big_trades = CollectSink::new();
//! let (values, audit) = (notional.handle(), big_trades.handle());
//!
//! let app = pipeline! {
//!     config { queue_capacity: 4096, batch_size: 256, backpressure: Block }
//!
//!     source trades = IterSource::new(feed);
//!     stage  big    = filter(|t: &Trade| t.volume > 100);
//!     stage  value  = map(|t: Trade| (t.symbol, t.price * t.volume as f64));
//!     sink   out    = notional;
//!     sink   audit  = big_trades;
//!
//!     trades -> big => value -> out;   // `->` fuses, `=>` crosses to another thread
//!     big -> audit;                    // fan-out (events are cloned)
//! };
//! assert_eq!(app.graph().segments.len(), 2);
//! let report = app.run()?;
//! assert_eq!(values.take(), [(1, 5000.0), (1, 2200.0)]);
//! assert_eq!(audit.take().len(), 2);
//! assert_eq!(report.metrics.node("big").map(|n| n.events_out), Some(2));
//! # Ok::<(), PipelineError>(())
//! ```
//!
//! # The `pipeline!` language
//!
//! ```text
//! pipeline  := item*
//! item      := "config" "{" (key ":" literal),* "}"
//!            | ("source" | "stage" | "sink") name (":" Type)? "=" expression ";"
//!            | name (arrow name)+ ";"
//! arrow     := "->"                          fused: same thread, a direct call
//!            | "=>" ("[" (key "=" value),* "]")?   a queue and a thread boundary
//! ```
//!
//! **Nodes.** `source` expressions implement [`Source`](runtime::Source), `stage` expressions
//! [`Stage`](runtime::Stage) (built-ins: `filter`, `map`, `flat_map`, `inspect`, `stateful`, or
//! your own type), `sink` expressions [`Sink`](runtime::Sink). Expressions are ordinary Rust,
//! kept with their spans: they may borrow or move local variables and use `?`. They are
//! evaluated once, in declaration order — except the nodes of a keyed parallel segment (below),
//! which are evaluated once per worker. An optional `: Type` asserts the node's event type (a
//! source's item, a stage's output, a sink's input).
//!
//! **Edges.** `a -> b -> c;` fuses; `a => b;` inserts a queue: `b` and everything fused after it
//! run on their own thread. A node feeding several nodes is a fan-out (its events must be
//! `Clone`; the last branch receives the original). A node fed by several nodes is a fan-in: all
//! its inputs must be `=>` edges with the same settings, sharing one queue with one producer per
//! upstream thread; each producer's order is kept, producers interleave.
//!
//! **Edge settings** (`=>[...]`): `capacity` (events buffered, 1–2²⁸), `batch_size`
//! (1–2²⁰), `backpressure` (`Block`, `DropOldest`, `DropNewest`, `Unbounded`), and for keyed
//! parallelism `workers = N` (1–128) with `key = |event: &T| ...` (any `Hash` value) and
//! optionally `key_groups = G` (`workers`–128, default 128; see below). The `key` expression is
//! evaluated for the router and again for each worker: write a closure or a function there (a
//! closure held in a variable that captures data by move must be cloned: `key = k.clone()`).
//!
//! **Keyed parallelism.** `a =>[workers = 4, key = |t: &Trade| t.symbol] b -> c` runs four copies
//! of the segment `b -> c`, each on its own thread with its own queue; every event goes to the
//! worker chosen by the hash of its key. Ordering: all events with equal keys go through the
//! same worker in their original order, and stay in that order through any later `=>` (queues
//! are FIFO per producer). Events with different keys have no order between them downstream of
//! the workers. Keys fall into 128 **key groups** (by hash; `key_groups = G` sets fewer;
//! worker `w` owns a contiguous range of them), and the stages fused after the `=>` (`b -> c`)
//! run **one instance per key group**: a stage's state, and so its output, depends on its key
//! group's events only, never on how many workers there are — which is what lets a checkpoint
//! taken with 4 workers resume with 2 or 8 (see "State and recovery"). Each node expression
//! there is evaluated once per key group (128 times in all), so keep construction cheap; with
//! few keys, fewer groups also cost less per window. Nodes after a fan-out inside the segment
//! run one instance per worker. Metrics of every instance are merged under the node's name. A
//! sink fused into the segment would also run once
//! per worker (N copies of a file sink, each truncating the same file), so it is a compile
//! error: end the segment with a plain `=>` before the sink (the workers merge into one sink),
//! or opt in with `sink out = per_worker(|worker| JsonLinesSink::create(format!("out-{worker}.jsonl")));`
//! — the factory is called once per worker and returns `Result<sink, SinkError>`.
//!
//! **Closure parameter types.** A closure that uses its parameter (`filter(|r: &Reading|
//! r.value > 3)`) needs the parameter's type written out; one that only passes it on (`map(|x|
//! x)`, `filter(|_| true)`) does not. This is a decision, not an oversight: node expressions are
//! ordinary Rust, type-checked where you wrote them, and rustc fixes a closure's parameter type
//! when it checks the closure's body — it does not carry it back from a later use through a
//! generic constructor such as `filter(..)` (tried: a typed helper wrapping the constructor
//! still gets "type annotations needed"). Supplying the type would mean rewriting your
//! expressions per built-in, which would break for your own stage types and move evaluation
//! away from your code. Without the annotation rustc says so at the parameter, with the fix
//! (`tests/ui/closure_needs_type.rs`).
//!
//! **Names.** A node name is any Rust identifier except a Rust keyword and the words of the
//! language itself (`config`, `source`, `stage`, `sink`): `source source = ..` would read as a
//! half-written declaration at every use. A raw identifier (`r#type`) names the node `type`.
//!
//! **Config keys** (all optional): `queue_capacity` (default 65 536), `batch_size` (1024),
//! `backpressure` (`Block`), `metrics` (`true`: latency histograms, counters),
//! `stage_metrics` (defaults to `metrics`: per-stage event counts, each fused edge counted
//! once — a source's count is its first stage's input, a one-to-one stage's input its output;
//! measured with callgrind on the W benchmark, 1.4 of 52.3 instructions per event),
//! `stop_timeout_ms` (5000).
//!
//! **Checked at compile time**, each at your tokens with a fix: unknown node (with "did you
//! mean"), duplicate node, a source used as a target, a sink used as a start, unused source,
//! stage never fed, stage output going nowhere, sink unreachable, cycles (every node named),
//! duplicate edges, fan-in through `->`, conflicting fan-in settings, unknown or invalid config
//! keys and values, unknown edge settings, `workers` without `key` (and vice versa), empty
//! pipelines, a sink inside a keyed parallel segment (unless `per_worker`), keywords as node
//! names. Type errors are rustc's, at the offending arrow or node: a stage's input not matching
//! its upstream's output, a sink's type, a non-`Send` event crossing `=>`, fan-out of a
//! non-`Clone` event. Across a `=>` (and at a fan-in) the error is in the receiver's terms —
//! "`b` takes events of type `u32`, but `a` sends `String`" — at the arrow of the edge that
//! sends the wrong type.
//!
//! **The value** of a `pipeline!` block is an [`App`](runtime::App): `run()` (returns a
//! [`RunReport`](runtime::RunReport)), `spawn()` (a handle with `metrics()`, `stop()`,
//! `join()`), `config()`, and `graph()` with `to_mermaid()` / `to_dot()`. Metrics name sources,
//! stages and sinks by their node names and each queue by the node it feeds (`b#0`, `b#1`, ...
//! for workers).
//!
//! **Dead letters** are a node: `source bad = dead_letters(1024);` receives every malformed
//! record any source rejects (a [`DeadLetter`](io::DeadLetter): node, origin, line, byte
//! offset, column, reason, raw record, time), streamed through a bounded channel while the
//! pipeline runs; connect it to any sink (`bad -> errors;` with `sink errors =
//! JsonLinesSink::create("bad.jsonl")?;`). Without one, the run report keeps the first
//! [`KEPT_IN_MEMORY`](io::KEPT_IN_MEMORY) and counts them all.
//!
//! **Windows and aggregates** are stages too (see [`window`] and [`aggregate`]):
//! `stage stats = tumbling(1_000, |t: &Trade| t.ts).out_of_orderness(50)
//! .group_by_index(|t: &Trade| t.symbol as usize).aggregate((count(), sum(|t: &Trade| t.volume)));`
//! emits one [`Row`](window::Row) per symbol and window; `watermarks(ts, out_of_orderness)`
//! generates event-time progress in band, and `late_output()` gives a late side output that is
//! connected as a `source` node.
//!
//! # State and recovery
//!
//! Every stateful stage checkpoints its state (see [`state`]): give the pipeline a directory
//! and it takes aligned-barrier checkpoints there every `checkpoint_interval_ms`, and a later
//! run resumes from the newest one — stages restored, sources sought to their recorded
//! positions, two-phase-commit sinks such as [`JsonLinesParts`](io::JsonLinesParts) committing
//! exactly what the checkpoint covers. A state type of your own derives
//! [`Checkpoint`](state::Checkpoint). Keyed workers save their state by key group, so a
//! checkpoint taken with `workers = 4` resumes with `workers = 2` or `8` (rebuild with the new
//! number and resume) with the same results; state kept per worker (after a fan-out inside
//! the workers) resumes only with the same number, and says so.
//!
//! ```
//! use eventflux::prelude::*;
//!
//! #[derive(Checkpoint, Default)]
//! struct Running { total: i64, seen: u64 }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let out = CollectSink::new();
//! let got = out.handle();
//! let app = pipeline! {
//!     config { checkpoint_interval_ms: 500 }
//!     source xs = IterSource::new(vec![3i64, -1, 4]);
//!     stage sum = stateful(Running::default(), |r: &mut Running, x: i64| {
//!         r.total += x;
//!         r.seen += 1;
//!         Some((r.seen, r.total))
//!     });
//!     sink out = out;
//!     xs -> sum -> out;
//! };
//! let report = app.checkpoints(dir.path(), Recovery::ResumeOrStart)?.run()?;
//! assert_eq!(got.take(), [(1, 3), (2, 2), (3, 6)]);
//! assert_eq!(report.checkpoints.at_most_once.len(), 0, "an iterator source replays");
//! # Ok::<(), PipelineError>(())
//! ```
//!
//! The runtime ([`eventflux_runtime`], re-exported below) can also be used directly:
//! `PipelineBuilder` assembles the same segments by hand.

// Lets `pipeline!` (which names `::eventflux::...`) be used inside this crate's own tests.
extern crate self as eventflux;

pub use eventflux_macros::pipeline;
pub use eventflux_runtime as runtime;
#[doc(hidden)]
pub use eventflux_runtime::__private;
#[cfg(feature = "dashboard")]
pub use eventflux_runtime::dashboard;
pub use eventflux_runtime::{
    aggregate, app, backpressure, config, error, exec, graph, idle, io, metrics, observe, pool,
    queue, sink, source, stage, state, window,
};

/// Everything a pipeline author needs, in one import.
pub mod prelude {
    pub use crate::pipeline;
    pub use eventflux_runtime::prelude::*;
    pub use serde::{Deserialize, Serialize};
}

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// The macro checks batch sizes against capacities at compile time using its own copy of
    /// the runtime's defaults; they must agree.
    #[test]
    fn macro_defaults_match_the_runtime() {
        let c = eventflux_runtime::PipelineConfig::default();
        let app = crate::pipeline! {
            source s = eventflux_runtime::io::IterSource::new(0..1u8);
            sink k = eventflux_runtime::io::CollectSink::new();
            s -> k;
        };
        let built = app.config().expect("built");
        assert_eq!((built.queue_capacity(), built.batch_size()), (65_536, 1024));
        assert_eq!((c.queue_capacity(), c.batch_size()), (65_536, 1024));
        assert_eq!(built, &c);
    }

    /// The macro accepts up to its own copy of the runtime's number of key groups (each
    /// worker owns at least one); `tests/ui/too_many_workers.rs` checks one more is rejected.
    #[test]
    fn the_most_workers_is_the_number_of_key_groups() {
        assert_eq!(eventflux_runtime::exec::KEY_GROUPS, 128);
        let out = eventflux_runtime::io::CollectSink::new();
        let got = out.handle();
        let app = crate::pipeline! {
            source s = eventflux_runtime::io::IterSource::new(0..1000u32);
            stage id = eventflux_runtime::stage::map(|x: u32| x);
            sink k = out;
            s =>[workers = 128, key = |x: &u32| *x] id => k;
        };
        app.run().expect("runs");
        let mut got = got.take();
        got.sort_unstable();
        assert_eq!(got, (0..1000).collect::<Vec<u32>>());
    }
}
