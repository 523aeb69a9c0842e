//! Peer: the `eventflux` library (the checkout beside this repo, see `Cargo.toml`) running W.
//!
//! * `ef_fused`: the whole of W in one `pipeline!` with `->` edges only, so one segment on the
//!   calling thread: a source over the pre-generated trades -> `filter` -> `map` ->
//!   `tumbling(1000, ts).group_by_index(symbol).aggregate((count(), plain_sum(v), min(v), max(v),
//!   plain_avg(v)))` -> a sink that folds the checksum. `config { stage_metrics: false }`, as the
//!   crate docs and its own bench (`examples/bench.rs`) do for speed.
//! * `ef_fused_hashed`: the same with `.group_by(symbol)` (hashed key, eventflux's Fx-style hasher).
//! * `ef_fused_default_config`: `ef_fused` without the `config` line (per-stage metering on, the
//!   default).
//! * `ef_fused_builtin_aggs`: `ef_fused` with eventflux's built-in `sum`/`avg`, which sum floats
//!   with compensation (see below); checked against a hand loop with the same compensated sum.
//! * `ef_two_thread`: `source -> filter -> map => window/aggregate -> sink`: one queue edge
//!   with the default settings (65 536 events in batches of 1024, `Block`, balanced idle).
//! * `ef_chain_only`: the same stage objects fused with `.then(..)` and driven by
//!   `Stage::process` (no `pipeline!`, no executor, no source/sink objects), in 1024-trade
//!   chunks with `on_batch_end` after each, as a source segment polls: separates the executor's
//!   cost from the stages' cost.
//! * `ef_chain_only_plain`: the same in one plain `for` loop. LLVM's inlining differs there
//!   (`DenseTable::entry` stays a call), so it is not a clean lower bound; kept to show that.
//!
//! How the rows are made equal to the reference's (`fused::fused_dense`):
//! * Window close. eventflux's event-time windows close on the watermark, which (without
//!   in-band watermarks) is `max_ts - out_of_orderness - 1`; a window `[s, s+1000)` fires when
//!   the watermark reaches `s + 1000 - 1`. With the defaults (`out_of_orderness` 0,
//!   `allowed_lateness` 0) that is exactly "when the first event with `ts >= s + 1000`
//!   arrives", the reference's rule for in-order input, so no `watermarks(..)` stage or option
//!   is needed. Empty windows emit nothing in both; the open window is flushed at end of stream
//!   in both. Rows come out in a different order (index order here, as the reference; table order
//!   with a hashed `group_by`), which the order-independent checksum ignores.
//! * Sums. eventflux's built-in `sum(f)`/`avg(f)` over `f64` use compensated (TwoSum) summation,
//!   so their last bits differ from the reference's plain `+=` (in 48% of the sums and 44% of
//!   the means at 300k events) and the exact checksum cannot match. The checked variants therefore use two user-defined aggregates, `plain_sum` and
//!   `plain_avg` (the documented extension point, ~15 lines each), in the same tuple shape
//!   as the built-ins. `ef_fused_builtin_aggs` keeps the built-ins and is checked against
//!   `fused_dense_compensated`, the hand loop with eventflux's compensated sum.
//! * Input. eventflux sources must be `'static` (every pipeline, even a one-segment one run on
//!   the calling thread, is boxed as `dyn Segment + 'static`), so a source cannot borrow the
//!   harness's `&[Trade]`. This binary therefore generates the input itself into an
//!   `Arc<Vec<Trade>>` (`harness::generate_data`) and hands the same memory to the harness
//!   (`harness::run_bench_on`); the eventflux sources hold a clone of the `Arc`.
//!
//! Allocations: the single-thread variants run on the measuring thread, so the harness counts
//! everything; `ef_two_thread` runs both segments on threads of its own, whose allocations are
//! counted by the source and the sink (from `open` to the end of their stream) and added.
//!
//!   cargo run --release --bin eventflux_w -- [--events 30M] [--rounds 7]

use eventflux::aggregate::Aggregate;
use eventflux::prelude::*;
use eventflux::window::Row;
use perf_anchors::harness::{Variant, generate_data, parse_args, run_bench_on};
use perf_anchors::store::Dense64;
use perf_anchors::{Output, Proj, Trade, WINDOW, WinStat, chain, fused, w_filter, w_project};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

// ------------------------------------------------------------------ user-defined aggregates

/// A plain left-to-right `f64` sum, what the hand loop computes.
pub struct PlainSum<F>(F);
pub fn plain_sum<F>(f: F) -> PlainSum<F> {
    PlainSum(f)
}
impl<T, F: Fn(&T) -> f64> Aggregate<T> for PlainSum<F> {
    type State = f64;
    type Output = f64;
    #[inline]
    fn init(&self, first: &T) -> f64 {
        (self.0)(first)
    }
    #[inline]
    fn add(&self, s: &mut f64, item: &T) {
        *s += (self.0)(item);
    }
    #[inline]
    fn retract(&self, s: &mut f64, item: &T) {
        *s -= (self.0)(item);
    }
    fn merge(&self, into: &mut f64, from: &f64) {
        *into += *from;
    }
    #[inline]
    fn result(&self, s: &f64) -> f64 {
        *s
    }
    #[inline]
    fn empty(&self) -> Option<f64> {
        Some(0.0)
    }
}

/// The mean of a plain sum (`sum / count`), shaped like the built-in `avg`.
pub struct PlainAvg<F>(F);
pub fn plain_avg<F>(f: F) -> PlainAvg<F> {
    PlainAvg(f)
}
impl<T, F: Fn(&T) -> f64> Aggregate<T> for PlainAvg<F> {
    type State = (f64, u64);
    type Output = f64;
    #[inline]
    fn init(&self, first: &T) -> (f64, u64) {
        ((self.0)(first), 1)
    }
    #[inline]
    fn add(&self, s: &mut (f64, u64), item: &T) {
        s.0 += (self.0)(item);
        s.1 += 1;
    }
    #[inline]
    fn retract(&self, s: &mut (f64, u64), item: &T) {
        s.0 -= (self.0)(item);
        s.1 = s.1.saturating_sub(1);
    }
    fn merge(&self, into: &mut (f64, u64), from: &(f64, u64)) {
        into.0 += from.0;
        into.1 += from.1;
    }
    #[inline]
    fn result(&self, s: &(f64, u64)) -> f64 {
        s.0 / s.1 as f64
    }
    #[inline]
    fn empty(&self) -> Option<(f64, u64)> {
        Some((0.0, 0))
    }
}

#[inline(always)]
fn notional(p: &Proj) -> f64 {
    p.notional
}

// ------------------------------------------------------------------ source and sink

/// Counts the allocations of the thread it runs on, from `start` to `stop` (for segments that
/// run on threads other than the measuring one).
struct AllocProbe {
    from: u64,
    total: Arc<AtomicU64>,
}
impl AllocProbe {
    fn start(&mut self) {
        self.from = perf_anchors::alloc::thread_allocs();
    }
    fn stop(&mut self) {
        let now = perf_anchors::alloc::thread_allocs();
        self.total.fetch_add(now - self.from, Ordering::Relaxed);
        self.from = now;
    }
}

/// Reads the shared, pre-generated trades, `max_items` per poll (as `examples/bench.rs` does).
struct SliceSource {
    data: Arc<Vec<Trade>>,
    pos: usize,
    probe: Option<AllocProbe>,
}
impl SliceSource {
    fn new(data: &Arc<Vec<Trade>>, probe: Option<&Arc<AtomicU64>>) -> Self {
        let probe = probe.map(|t| AllocProbe { from: 0, total: t.clone() });
        SliceSource { data: Arc::clone(data), pos: 0, probe }
    }
}
impl Source for SliceSource {
    type Item = Trade;
    fn open(&mut self) -> Result<(), SourceError> {
        if let Some(p) = &mut self.probe {
            p.start();
        }
        Ok(())
    }
    #[inline]
    fn poll<E: Emit<Trade>>(&mut self, cx: &mut SourceContext<'_>, out: &mut E) -> Result<SourcePoll, SourceError> {
        let end = (self.pos + cx.max_items()).min(self.data.len());
        // The whole batch at once: a fused chain runs it as one loop.
        out.emit_all(self.data[self.pos..end].iter().copied());
        self.pos = end;
        if end == self.data.len() {
            if let Some(p) = &mut self.probe {
                p.stop();
            }
            Ok(SourcePoll::Done)
        } else {
            Ok(SourcePoll::Ready)
        }
    }
}

/// `(count, sum, min, max, avg)`, the values of one row.
type Vals = (u64, f64, f64, f64, f64);

/// A group key that is a symbol (`usize` for `group_by_index`, `u32` for `group_by`).
trait Symbol: Copy {
    fn symbol(self) -> u32;
}
impl Symbol for usize {
    #[inline(always)]
    fn symbol(self) -> u32 {
        self as u32
    }
}
impl Symbol for u32 {
    #[inline(always)]
    fn symbol(self) -> u32 {
        self
    }
}

#[inline(always)]
fn win_stat<K: Symbol>(r: Row<K, Vals>) -> WinStat {
    let (count, sum, min, max, avg) = r.values;
    WinStat {
        window: r.window.start,
        symbol: r.key.symbol(),
        count,
        sum,
        min,
        max,
        avg,
    }
}

/// Folds every row into the anchors' checksum (`perf_anchors::Sink`); publishes it on close.
struct FoldSink {
    fold: perf_anchors::Sink,
    result: Arc<Mutex<Option<Output>>>,
    probe: Option<AllocProbe>,
}
impl FoldSink {
    fn new(probe: Option<&Arc<AtomicU64>>) -> (Self, Arc<Mutex<Option<Output>>>) {
        let result = Arc::new(Mutex::new(None));
        let probe = probe.map(|t| AllocProbe { from: 0, total: t.clone() });
        (FoldSink { fold: perf_anchors::Sink::default(), result: result.clone(), probe }, result)
    }
}
impl<K: Symbol + Send> Sink<Row<K, Vals>> for FoldSink {
    fn open(&mut self) -> Result<(), SinkError> {
        if let Some(p) = &mut self.probe {
            p.start();
        }
        Ok(())
    }
    #[inline]
    fn send(&mut self, r: Row<K, Vals>) -> Result<(), SinkError> {
        self.fold.consume(&win_stat(r));
        Ok(())
    }
    fn close(&mut self) -> Result<(), SinkError> {
        if let Some(p) = &mut self.probe {
            p.stop();
        }
        *self.result.lock().unwrap() = Some(self.fold.output());
        Ok(())
    }
}

/// Runs `app` and returns what its `FoldSink` published.
fn finish(app: App, result: &Mutex<Option<Output>>) -> Output {
    if let Err(e) = app.run() {
        panic!("pipeline failed: {e}");
    }
    result.lock().unwrap().take().expect("the sink was not closed")
}

// ------------------------------------------------------------------ variants

/// The whole of W in one `pipeline!`, `->` only: one segment on the calling thread.
fn ef_fused(data: &Arc<Vec<Trade>>) -> Output {
    let (sink, result) = FoldSink::new(None);
    let source = SliceSource::new(data, None);
    let app = pipeline! {
        config { stage_metrics: false }
        source trades = source;
        stage  big    = filter(|t: &Trade| w_filter(t));
        stage  value  = map(w_project);
        stage  stats  = tumbling(WINDOW, |p: &Proj| p.ts)
                            .group_by_index(|p: &Proj| p.symbol as usize)
                            .aggregate((count(), plain_sum(notional), min(notional), max(notional), plain_avg(notional)));
        sink   out    = sink;
        trades -> big -> value -> stats -> out;
    };
    finish(app, &result)
}

/// `ef_fused` with a hashed group key.
fn ef_fused_hashed(data: &Arc<Vec<Trade>>) -> Output {
    let (sink, result) = FoldSink::new(None);
    let source = SliceSource::new(data, None);
    let app = pipeline! {
        config { stage_metrics: false }
        source trades = source;
        stage  big    = filter(|t: &Trade| w_filter(t));
        stage  value  = map(w_project);
        stage  stats  = tumbling(WINDOW, |p: &Proj| p.ts)
                            .group_by(|p: &Proj| p.symbol)
                            .aggregate((count(), plain_sum(notional), min(notional), max(notional), plain_avg(notional)));
        sink   out    = sink;
        trades -> big -> value -> stats -> out;
    };
    finish(app, &result)
}

/// `ef_fused` with the default configuration (no `config` line: per-stage metering on).
fn ef_fused_default_config(data: &Arc<Vec<Trade>>) -> Output {
    let (sink, result) = FoldSink::new(None);
    let source = SliceSource::new(data, None);
    let app = pipeline! {
        source trades = source;
        stage  big    = filter(|t: &Trade| w_filter(t));
        stage  value  = map(w_project);
        stage  stats  = tumbling(WINDOW, |p: &Proj| p.ts)
                            .group_by_index(|p: &Proj| p.symbol as usize)
                            .aggregate((count(), plain_sum(notional), min(notional), max(notional), plain_avg(notional)));
        sink   out    = sink;
        trades -> big -> value -> stats -> out;
    };
    finish(app, &result)
}

/// `ef_fused` with eventflux's built-in `sum` and `avg` (compensated float sums).
fn ef_fused_builtin_aggs(data: &Arc<Vec<Trade>>) -> Output {
    let (sink, result) = FoldSink::new(None);
    let source = SliceSource::new(data, None);
    let app = pipeline! {
        config { stage_metrics: false }
        source trades = source;
        stage  big    = filter(|t: &Trade| w_filter(t));
        stage  value  = map(w_project);
        stage  stats  = tumbling(WINDOW, |p: &Proj| p.ts)
                            .group_by_index(|p: &Proj| p.symbol as usize)
                            .aggregate((count(), sum(notional), min(notional), max(notional), avg(notional)));
        sink   out    = sink;
        trades -> big -> value -> stats -> out;
    };
    finish(app, &result)
}

/// Source, filter and projection on one thread; `=>` (default queue settings); window,
/// aggregate and sink on another.
fn ef_two_thread(data: &Arc<Vec<Trade>>) -> Output {
    let allocs = Arc::new(AtomicU64::new(0));
    let (sink, result) = FoldSink::new(Some(&allocs));
    let source = SliceSource::new(data, Some(&allocs));
    let app = pipeline! {
        config { stage_metrics: false }
        source trades = source;
        stage  big    = filter(|t: &Trade| w_filter(t));
        stage  value  = map(w_project);
        stage  stats  = tumbling(WINDOW, |p: &Proj| p.ts)
                            .group_by_index(|p: &Proj| p.symbol as usize)
                            .aggregate((count(), plain_sum(notional), min(notional), max(notional), plain_avg(notional)));
        sink   out    = sink;
        trades -> big -> value => stats -> out;
    };
    let mut o = finish(app, &result);
    o.extra_allocs = allocs.load(Ordering::Relaxed);
    o
}

/// An emitter folding rows straight into the checksum (for `ef_chain_only`).
struct FoldEmit(perf_anchors::Sink);
impl<K: Symbol> Emit<Row<K, Vals>> for FoldEmit {
    #[inline(always)]
    fn emit(&mut self, r: Row<K, Vals>) {
        self.0.consume(&win_stat(r));
    }
    fn fail(&mut self, error: StageError) {
        panic!("stage failed: {error}");
    }
}

/// The stage objects of `ef_fused` (filter, map, window/aggregate), fused with `.then(..)`.
/// A macro, not a function: each use gets its own closure types, so each variant gets its own
/// copy of the window code and LLVM inlines it as it does in a pipeline. (With one shared
/// function, both variants call one out-of-line `TumblingAgg::process`: about 91 instead of
/// 66 instructions per trade.)
macro_rules! w_stages {
    () => {
        filter(|t: &Trade| w_filter(t)).then(map(w_project)).then(
            tumbling(WINDOW, |p: &Proj| p.ts).group_by_index(|p: &Proj| p.symbol as usize).aggregate((
                count(),
                plain_sum(notional),
                min(notional),
                max(notional),
                plain_avg(notional),
            )),
        )
    };
}

/// eventflux's stages without the executor: `Stage::process` per trade over 1024-trade chunks,
/// `on_batch_end` after each chunk and `on_end` at the end, which is what a source segment
/// does per poll (batch size 1024), minus the executor (source/sink objects, metering,
/// lifecycle checks).
fn ef_chain_only(data: &[Trade]) -> Output {
    let mut chain = w_stages!();
    let mut out = FoldEmit(perf_anchors::Sink::default());
    for chunk in data.chunks(1024) {
        for &t in chunk {
            chain.process(t, &mut out);
        }
        chain.on_batch_end(&mut out);
    }
    chain.on_end(&mut out);
    out.0.output()
}

/// The same stages in one plain loop over all trades. Same work, but LLVM then leaves the
/// window's `DenseTable::entry` out of line (a call per filtered trade), so this costs more
/// instructions than `ef_chain_only` and `ef_fused`.
fn ef_chain_only_plain(data: &[Trade]) -> Output {
    let mut chain = w_stages!();
    let mut out = FoldEmit(perf_anchors::Sink::default());
    for &t in data {
        chain.process(t, &mut out);
    }
    chain.on_end(&mut out);
    out.0.output()
}

// ------------------------------------------------------------------ compensated reference

/// eventflux's float sum: Knuth's TwoSum error terms accumulated separately (a copy of
/// `eventflux_runtime::aggregate::sum::Compensated`, whose fields are private).
#[derive(Clone, Copy, Default)]
struct Compensated {
    sum: f64,
    comp: f64,
}
impl Compensated {
    #[inline(always)]
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        let z = t - self.sum;
        self.comp += (self.sum - (t - z)) + (x - z);
        self.sum = t;
    }
    #[inline(always)]
    fn value(&self) -> f64 {
        self.sum + self.comp
    }
}

/// `fused::fused_dense` with eventflux's compensated sum: `sum = value()`, `avg = value() /
/// count`. The expected output of `ef_fused_builtin_aggs`.
fn fused_dense_compensated(data: &[Trade]) -> Output {
    #[derive(Clone, Copy)]
    struct A {
        count: u64,
        sum: Compensated,
        min: f64,
        max: f64,
    }
    const EMPTY: A =
        A { count: 0, sum: Compensated { sum: 0.0, comp: 0.0 }, min: f64::INFINITY, max: f64::NEG_INFINITY };
    let mut sink = perf_anchors::Sink::default();
    let mut acc = [EMPTY; 64];
    let mut active = 0u64;
    let (mut start, mut end) = (0u64, 0u64);
    let emit = |sink: &mut perf_anchors::Sink, acc: &mut [A; 64], active: u64, start: u64| {
        let mut m = active;
        while m != 0 {
            let k = m.trailing_zeros() as usize;
            m &= m - 1;
            let a = acc[k];
            let v = a.sum.value();
            sink.consume(&WinStat {
                window: start,
                symbol: k as u32,
                count: a.count,
                sum: v,
                min: a.min,
                max: a.max,
                avg: v / a.count as f64,
            });
            acc[k] = EMPTY;
        }
    };
    for t in data {
        if !w_filter(t) {
            continue;
        }
        let p = w_project(*t);
        if p.ts >= end {
            emit(&mut sink, &mut acc, active, start);
            active = 0;
            start = p.ts - p.ts % WINDOW;
            end = start + WINDOW;
        }
        let a = &mut acc[p.symbol as usize];
        a.count += 1;
        a.sum.add(p.notional);
        a.min = a.min.min(p.notional);
        a.max = a.max.max(p.notional);
        active |= 1u64 << p.symbol;
    }
    emit(&mut sink, &mut acc, active, start);
    sink.output()
}

// ------------------------------------------------------------------ main

fn main() {
    let args = parse_args(30_000_000, 7);
    let data: Arc<Vec<Trade>> = Arc::new(if args.list { Vec::new() } else { generate_data("eventflux_w", &args) });
    let wanted = |name: &str| !args.list && args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let _compensated = if wanted("ef_fused_builtin_aggs_compensated_reference") {
        let c = fused_dense_compensated(&data);
        eprintln!("[eventflux_w] compensated-sum reference: {} rows, checksum {:016x}", c.count, c.checksum);
        c
    } else {
        Output::default()
    };
    // The pipeline variants read the same memory the harness passes (checked, not copied).
    let on = |f: fn(&Arc<Vec<Trade>>) -> Output| {
        let d = Arc::clone(&data);
        move |s: &[Trade]| {
            assert!(std::ptr::eq(s, &d[..]), "eventflux_w: the harness must run on the shared input");
            f(&d)
        }
    };
    let v = vec![
        Variant::new("fused_dense", fused::fused_dense),
        Variant::new("chain_event_dense", chain::run_chain::<Dense64>),
        Variant::new("ef_fused", on(ef_fused)),
        Variant::new("ef_fused_hashed", on(ef_fused_hashed)),
        Variant::new("ef_fused_default_config", on(ef_fused_default_config)),
        // Adapted (eventflux issue 8): built-in sum/avg add with a plain `+=` in windows that
        // never retract, so this variant's rows are the plain hand loop's (checked as such).
        Variant::new("ef_fused_builtin_aggs", on(ef_fused_builtin_aggs)),
        Variant::new("ef_chain_only", ef_chain_only),
        Variant::new("ef_chain_only_plain", ef_chain_only_plain),
        Variant::new("ef_two_thread", on(ef_two_thread)),
    ];
    if !run_bench_on("eventflux_w", &args, v, "fused_dense", &data) {
        std::process::exit(1);
    }
}
