//! The project's benchmark binary: workloads × variants, medians of several rounds, ratios
//! measured in the same run.
//!
//! ```text
//! cargo run --release --example bench -- --json                 # everything, JSON lines
//! cargo run --release --example bench -- --events 5000000 --rounds 7 --variant fused,handwritten
//! ```
//!
//! Variants: `handwritten` (the plain loop), `fused` (the runtime's chain on one thread),
//! `fused_metered` (the same with per-stage counters), `macro_fused` (the same pipeline declared
//! with `pipeline!`), `two_thread` and `macro_two_thread` (source thread ⇒ batched queue ⇒
//! processing thread, by hand and by macro), `dyn_vec` (the naive design: boxed processors and a
//! `Vec` per event per stage — a reported baseline, not a target).
//!
//! W's `macro_fused_ckpt_1s`, `_100ms`, `_10ms` and `macro_two_thread_ckpt_1s` are the same
//! pipelines checkpointing into a temporary directory at that interval; their lines carry
//! `checkpoints` (per run), `checkpoint_ms_p50` and `checkpoint_bytes`, and `ratio_to_twin` is
//! against the pipeline without checkpoints. W's `macro_keyed_2` routes the projected events
//! by symbol to 2 keyed workers (one window instance per key group) merging into the sink;
//! `macro_keyed_2_kg8` the same with `key_groups = 8`; their twin is `macro_two_thread`.
//! W's `macro_fused_reported` is `macro_fused` publishing its metrics every 100 ms through the
//! `metrics` facade into a Prometheus recorder; its twin is `macro_fused`. Workload `redis`
//! (only when `REDIS_URL` is set) moves events from one partitioned Redis stream to another
//! with one and with two workers (`events_per_sec_1_worker`, `events_per_sec_2_workers`). Workload `state` restores a keyed state of 1 M
//! keys (`restore_ms`) and measures an incremental checkpoint after 1 % of keys changed
//! (`incremental_bytes_ratio`).
//!
//! Workload `W0`: trades → keep `volume > 100` → project to `(symbol, price × volume, ts)` →
//! sum per symbol (a dense array: 64 symbols) → checksum of the sums. Inputs are generated
//! before timing; each variant runs `--rounds` times with the variant order shuffled per round,
//! and the median is reported. `ratio_to_handwritten` is the median over rounds of the speed
//! relative to `handwritten` in the same round, which cancels the shared machine's drift. Allocations are counted by a global allocator, so
//! `allocs_per_event` is exact (the counting costs the allocating `dyn_vec` variant a little).

#[path = "common/latency_bench.rs"]
mod latency_bench;
#[path = "common/trades.rs"]
mod trades;
#[path = "common/windows_bench.rs"]
mod windows_bench;

use std::alloc::System;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use eventflux::prelude::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use trades::{SYMBOLS, Trade};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Notional = (u32, f64, u64);

/// The output of `W0`: per-symbol sums and the number of events summed.
#[derive(Clone, Copy)]
struct Sums {
    sums: [f64; SYMBOLS],
    count: u64,
}

impl Sums {
    fn new() -> Self {
        Self {
            sums: [0.0; SYMBOLS],
            count: 0,
        }
    }

    #[inline(always)]
    fn add(&mut self, (symbol, value, _ts): Notional) {
        self.sums[symbol as usize] += value;
        self.count += 1;
    }

    fn checksum(&self) -> u64 {
        self.sums.iter().fold(self.count, |h, s| {
            h.wrapping_mul(0x100_0000_01B3) ^ s.to_bits()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces for the runtime variants.

/// Reads a shared, pre-generated slice of trades (so no variant pays for generation or copies).
struct SliceSource {
    data: Arc<Vec<Trade>>,
    pos: usize,
}

impl SliceSource {
    fn new(data: &Arc<Vec<Trade>>) -> Self {
        Self {
            data: Arc::clone(data),
            pos: 0,
        }
    }
}

impl Source for SliceSource {
    type Item = Trade;

    #[inline]
    fn poll<E: Emit<Trade>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        let end = (self.pos + cx.max_items()).min(self.data.len());
        // The whole batch at once: a fused chain runs it as one loop.
        out.emit_all(self.data[self.pos..end].iter().copied());
        self.pos = end;
        Ok(if end == self.data.len() {
            SourcePoll::Done
        } else {
            SourcePoll::Ready
        })
    }
}

/// Sums notional per symbol; publishes the result when closed.
struct SumSink {
    local: Sums,
    result: Arc<Mutex<Option<Sums>>>,
}

impl Sink<Notional> for SumSink {
    #[inline(always)]
    fn send(&mut self, item: Notional) -> Result<(), SinkError> {
        self.local.add(item);
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.local);
        Ok(())
    }
}

fn sum_sink() -> (SumSink, Arc<Mutex<Option<Sums>>>) {
    let result = Arc::new(Mutex::new(None));
    (
        SumSink {
            local: Sums::new(),
            result: Arc::clone(&result),
        },
        result,
    )
}

fn take(result: &Mutex<Option<Sums>>) -> Sums {
    result
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| fail("a pipeline finished without publishing its result"))
}

fn w0_chain() -> impl Stage<Trade, Out = Notional> + Send {
    filter(|t: &Trade| t.volume > 100).then(map(|t: Trade| {
        (t.symbol, t.price * f64::from(t.volume), t.ts)
    }))
}

fn bench_config() -> PipelineConfig {
    PipelineConfig::builder()
        .queue_capacity(64 * 1024)
        .batch_size(1024)
        .backpressure(Backpressure::Block)
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// W0 variants.

/// The loop a competent engineer would write by hand.
fn w0_handwritten(data: &[Trade]) -> Sums {
    let mut out = Sums::new();
    for t in data {
        if t.volume > 100 {
            out.add((t.symbol, t.price * f64::from(t.volume), t.ts));
        }
    }
    out
}

/// The runtime's fused chain, run by the executor on the caller's thread.
fn w0_fused(data: &Arc<Vec<Trade>>, metered: bool) -> Sums {
    let (sink, result) = sum_sink();
    let mut p = PipelineBuilder::new(bench_config());
    let out = p.sink("sum", sink);
    let source = SliceSource::new(data);
    if metered {
        let chain = p
            .stage("big", filter(|t: &Trade| t.volume > 100))
            .then(p.stage(
                "value",
                map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts)),
            ));
        p.add_source("trades", source, chain, out);
    } else {
        p.add_source("trades", source, w0_chain(), out);
    }
    run(p);
    take(&result)
}

/// Source thread ⇒ batched, pooled queue ⇒ processing thread.
fn w0_two_thread(data: &Arc<Vec<Trade>>) -> Sums {
    let (sink, result) = sum_sink();
    let mut p = PipelineBuilder::new(bench_config());
    let (tx, rx) = p.queue::<Trade>("trades");
    let out = p.sink("sum", sink);
    let source = SliceSource::new(data);
    p.add_source("feed", source, Identity, QueueOutput::new(tx));
    p.add_queue_segment("process", rx, w0_chain(), out);
    run(p);
    take(&result)
}

/// W0 declared with `pipeline!` (stage metrics off, like the hand-assembled twins):
/// `fused` when `two_thread` is false, else the source runs on its own thread.
fn w0_macro(data: &Arc<Vec<Trade>>, two_thread: bool) -> Sums {
    let (sink, result) = sum_sink();
    let source = SliceSource::new(data);
    let app = if two_thread {
        pipeline! {
            config { queue_capacity: 65536, batch_size: 1024, stage_metrics: false }
            source feed = source;
            stage big = filter(|t: &Trade| t.volume > 100);
            stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
            sink sum = sink;
            feed => big -> value -> sum;
        }
    } else {
        pipeline! {
            config { queue_capacity: 65536, batch_size: 1024, stage_metrics: false }
            source trades = source;
            stage big = filter(|t: &Trade| t.volume > 100);
            stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
            sink sum = sink;
            trades -> big -> value -> sum;
        }
    };
    if let Err(e) = app.run() {
        fail(&format!("pipeline failed: {e}"));
    }
    take(&result)
}

fn run(p: PipelineBuilder) {
    let result = p.build().and_then(|p| p.run());
    if let Err(e) = result {
        fail(&format!("pipeline failed: {e}"));
    }
}

/// The naive design: dynamic rows, `Vec<Box<dyn Processor>>`, a fresh `Vec` per event per stage.
mod dyn_vec {
    use super::{Notional, Sums, Trade};

    pub enum Row {
        Trade(Trade),
        Notional(Notional),
    }

    pub trait Processor {
        fn process(&mut self, row: Row) -> Vec<Row>;
    }

    struct Filter;
    impl Processor for Filter {
        fn process(&mut self, row: Row) -> Vec<Row> {
            match row {
                Row::Trade(t) if t.volume > 100 => vec![row],
                _ => Vec::new(),
            }
        }
    }

    struct Project;
    impl Processor for Project {
        fn process(&mut self, row: Row) -> Vec<Row> {
            match row {
                Row::Trade(t) => vec![Row::Notional((
                    t.symbol,
                    t.price * f64::from(t.volume),
                    t.ts,
                ))],
                other => vec![other],
            }
        }
    }

    struct Sum<'a>(&'a mut Sums);
    impl Processor for Sum<'_> {
        fn process(&mut self, row: Row) -> Vec<Row> {
            if let Row::Notional(n) = row {
                self.0.add(n);
            }
            Vec::new()
        }
    }

    pub fn run(data: &[Trade]) -> Sums {
        let mut out = Sums::new();
        {
            let mut stages: Vec<Box<dyn Processor + '_>> =
                vec![Box::new(Filter), Box::new(Project), Box::new(Sum(&mut out))];
            for t in data {
                let mut rows = vec![Row::Trade(*t)];
                for stage in stages.iter_mut() {
                    let mut next = Vec::new();
                    for row in rows {
                        next.extend(stage.process(row));
                    }
                    rows = next;
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Driver.

struct Args {
    json: bool,
    verbose: bool,
    settle_ms: u64,
    workloads: Vec<String>,
    events: usize,
    rounds: usize,
    variants: Option<Vec<String>>,
}

fn fail(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        json: false,
        verbose: false,
        settle_ms: 0,
        workloads: vec![
            "W0".into(),
            "W".into(),
            "W_sliding".into(),
            "latency".into(),
            "state".into(),
            "redis".into(),
        ],
        events: 20_000_000,
        rounds: 7,
        variants: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--json" => args.json = true,
            "--verbose" => args.verbose = true,
            "--events" => {
                args.events = value("--events")
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| fail("--events takes a whole number"));
            }
            "--settle-ms" => {
                args.settle_ms = value("--settle-ms")
                    .parse()
                    .unwrap_or_else(|_| fail("--settle-ms takes a whole number"));
            }
            "--rounds" => {
                args.rounds = value("--rounds")
                    .parse()
                    .ok()
                    .filter(|r| *r >= 1)
                    .unwrap_or_else(|| fail("--rounds takes a whole number ≥ 1"));
            }
            "--workload" => {
                args.workloads = value("--workload").split(',').map(str::to_string).collect();
            }
            "--variant" => {
                args.variants = Some(value("--variant").split(',').map(str::to_string).collect());
            }
            "-h" | "--help" => {
                println!(
                    "usage: bench [--json] [--verbose] [--settle-ms MS] [--workload W0,W,W_sliding,latency] [--events N] [--rounds N] [--variant a,b,...]"
                );
                std::process::exit(0);
            }
            other => fail(&format!("unknown argument `{other}` (try --help)")),
        }
    }
    if args.events == 0 {
        fail("--events must be at least 1");
    }
    args
}

struct Measured {
    secs: Vec<f64>,
    allocs: Vec<usize>,
    checksum: Option<u64>,
    /// Checkpointed variants: per run, checkpoints taken, their median ms, state bytes.
    checkpoints: Vec<(u64, f64, u64)>,
}

/// The order of variants in `round`: round 0 as listed, later rounds a deterministic shuffle,
/// so no variant always runs right after the same neighbour (the allocating baseline slows
/// whatever runs next on this machine).
fn round_order(round: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ round as u64;
    if round > 0 {
        for i in (1..n).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
    order
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() {
    let args = parse_args();
    for workload in args.workloads.clone() {
        match workload.as_str() {
            "W0" => {
                let data = Arc::new(trades::generate(args.events));
                let all = [
                    "handwritten",
                    "fused",
                    "fused_metered",
                    "macro_fused",
                    "two_thread",
                    "macro_two_thread",
                    "dyn_vec",
                ];
                run_workload("W0", &all, &args, |v| {
                    match v {
                        "handwritten" => w0_handwritten(&data),
                        "fused" => w0_fused(&data, false),
                        "fused_metered" => w0_fused(&data, true),
                        "two_thread" => w0_two_thread(&data),
                        "macro_fused" => w0_macro(&data, false),
                        "macro_two_thread" => w0_macro(&data, true),
                        _ => dyn_vec::run(&data),
                    }
                    .checksum()
                });
            }
            "W" => {
                // In order: the plain loop closes a window when a later one starts.
                let data = Arc::new(windows_bench::whole_cents(trades::generate(args.events)));
                let all = [
                    "handwritten",
                    "macro_fused",
                    "macro_fused_reported",
                    "macro_hashed",
                    "macro_two_thread",
                    "macro_fused_ckpt_1s",
                    "macro_fused_ckpt_100ms",
                    "macro_fused_ckpt_10ms",
                    "macro_two_thread_ckpt_1s",
                    "macro_keyed_2",
                    "macro_keyed_2_kg8",
                    "dyn_vec",
                ];
                use windows_bench::Shape;
                run_workload("W", &all, &args, |v| match v {
                    "handwritten" => windows_bench::w_handwritten(&data),
                    "macro_fused" => windows_bench::w_macro(&data, Shape::Fused),
                    "macro_fused_reported" => windows_bench::w_macro(&data, Shape::FusedReported),
                    "macro_hashed" => windows_bench::w_macro(&data, Shape::Hashed),
                    "macro_two_thread" => windows_bench::w_macro(&data, Shape::TwoThread),
                    "macro_fused_ckpt_1s" => {
                        windows_bench::w_macro(&data, Shape::FusedCheckpointed(1_000))
                    }
                    "macro_fused_ckpt_100ms" => {
                        windows_bench::w_macro(&data, Shape::FusedCheckpointed(100))
                    }
                    "macro_fused_ckpt_10ms" => {
                        windows_bench::w_macro(&data, Shape::FusedCheckpointed(10))
                    }
                    "macro_two_thread_ckpt_1s" => {
                        windows_bench::w_macro(&data, Shape::TwoThreadCheckpointed(1_000))
                    }
                    "macro_keyed_2" => windows_bench::w_macro(&data, Shape::Keyed),
                    "macro_keyed_2_kg8" => windows_bench::w_macro(&data, Shape::KeyedFewGroups),
                    _ => windows_bench::w_dyn_vec(&data),
                });
                windows_bench::remove_checkpoint_dir();
            }
            "W_sliding" => {
                let data = Arc::new(windows_bench::whole_cents(trades::generate(args.events)));
                let all = ["handwritten", "macro_fused"];
                run_workload("W_sliding", &all, &args, |v| match v {
                    "handwritten" => windows_bench::w_sliding_handwritten(&data),
                    _ => windows_bench::w_sliding_macro(&data),
                });
            }
            "latency" => latency(&args),
            "redis" => redis_bench(&args),
            "state" => state_bench(&args),
            other => fail(&format!(
                "unknown workload `{other}`; choose from W0, W, W_sliding, latency, state, redis"
            )),
        }
    }
}

/// Workload `state`: a keyed state of 1 M keys (`state::Keyed<u64, (u64, f64)>`) saved in full
/// to a local checkpoint directory, then restored from it — read, checked, decoded, the map
/// rebuilt (`restore_ms`, median of `--rounds`, at most 5); and a checkpoint after 1 % of the
/// keys changed, against the full one (`incremental_bytes_ratio`: its bytes over the full
/// copy's).
fn state_bench(args: &Args) {
    use eventflux::state::{
        self, Compression, Keyed, LocalDir, Manifest, Restore, Snapshot, StateBackend,
    };
    const KEYS: u64 = 1_000_000;
    let mut map: Keyed<u64, (u64, f64)> = Keyed::new();
    for k in 0..KEYS {
        map.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), (k, k as f64 * 0.5));
    }
    let dir = std::env::temp_dir().join(format!("eventflux-bench-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store_full = |store: &mut LocalDir, id: u64, snap: Snapshot| -> u64 {
        let mut m = Manifest::new(id);
        let mut bytes = 0;
        for (name, payload) in snap.into_parts() {
            let framed = state::frame(&payload, Compression::None);
            bytes += framed.len() as u64;
            let file = store
                .put(id, &name, &framed)
                .unwrap_or_else(|e| fail(&e.to_string()));
            m.states.push(file);
        }
        store.commit(&m).unwrap_or_else(|e| fail(&e.to_string()));
        bytes
    };
    let mut store = LocalDir::open(&dir, 3).unwrap_or_else(|e| fail(&e.to_string()));
    let mut full = Snapshot::for_checkpoint(1, None, true);
    full.save_keyed(&map)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let full_bytes = store_full(&mut store, 1, full);
    drop(store);
    let mut restore_ms = Vec::new();
    for _ in 0..args.rounds.clamp(1, 5) {
        let t0 = Instant::now();
        let store = LocalDir::open(&dir, 3).unwrap_or_else(|e| fail(&e.to_string()));
        let m = store
            .latest()
            .unwrap_or_else(|e| fail(&e.to_string()))
            .unwrap_or_else(|| fail("no checkpoint"));
        let mut parts = std::collections::BTreeMap::new();
        for s in &m.states {
            let framed = store
                .get(&m, &s.state)
                .unwrap_or_else(|e| fail(&e.to_string()));
            let payload = state::unframe(&framed).unwrap_or_else(|e| fail(&e.to_string()));
            parts.insert(s.state.clone(), payload.into_owned());
        }
        let mut back: Keyed<u64, (u64, f64)> = Keyed::new();
        let found = Restore::new(parts)
            .load_keyed(&mut back)
            .unwrap_or_else(|e| fail(&e.to_string()));
        restore_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if !found || back.len() as u64 != KEYS {
            fail("the restored state lost keys");
        }
    }
    // 1 % of the keys change; the next checkpoint saves only them.
    for k in (0..KEYS).step_by(100) {
        if let Some(v) = map.get_mut(&k.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            v.0 += 1;
        }
    }
    let mut delta = Snapshot::for_checkpoint(2, Some(1), false);
    delta
        .save_keyed(&map)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let delta_bytes: u64 = delta
        .into_parts()
        .values()
        .map(|p| state::frame(p, Compression::None).len() as u64)
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    let ratio = delta_bytes as f64 / full_bytes as f64;
    let ms = median(&restore_ms);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "workload": "state",
                "variant": "restore_1m_keys",
                "keys": KEYS,
                "full_bytes": full_bytes,
                "restore_ms": (ms * 10.0).round() / 10.0,
                "incremental_bytes": delta_bytes,
                "incremental_bytes_ratio": (ratio * 10_000.0).round() / 10_000.0,
                "rounds": restore_ms.len(),
            })
        );
    } else {
        println!(
            "state: {KEYS} keys, full checkpoint {full_bytes} bytes, restored in {ms:.1} ms (median of {}); after 1 % of keys changed: {delta_bytes} bytes = {ratio:.4} of the full copy",
            restore_ms.len()
        );
    }
}

/// Workload `redis` (only with `REDIS_URL`): events through Redis Streams on the server at
/// `REDIS_URL` — a partitioned stream of 4 partitions (loaded before timing) read by the Redis
/// source and written by the Redis sink into another — with one worker, and with two workers
/// (two pipelines, each on its partitions, in parallel). At most 1 M events; the median of
/// `--rounds` (at most 3).
fn redis_bench(args: &Args) {
    use eventflux::io::RedisStream;
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("bench: workload redis skipped: set REDIS_URL to run it");
        return;
    };
    let n = args.events.min(1_000_000) as u64;
    let name = format!("ef-bench-{}", std::process::id());
    let stream = |suffix: &str| {
        RedisStream::new(&url, format!("{name}-{suffix}"), 4)
            .unwrap_or_else(|e| fail(&e.to_string()))
    };
    let clear = |s: &RedisStream| {
        let keys: Vec<String> = (0..4).map(|p| s.partition_key(p)).collect();
        let client = redis::Client::open(url.as_str()).unwrap_or_else(|e| fail(&e.to_string()));
        let mut conn = client
            .get_connection()
            .unwrap_or_else(|e| fail(&e.to_string()));
        redis::cmd("DEL")
            .arg(keys)
            .query::<()>(&mut conn)
            .unwrap_or_else(|e| fail(&e.to_string()));
    };
    let input = stream("in");
    clear(&input);
    let sink = input.sink("loader", |x: &u64| *x);
    let load = pipeline! {
        source nums = IterSource::new(0..n);
        sink   out = sink;
        nums -> out;
    };
    load.run().unwrap_or_else(|e| fail(&e.to_string()));
    let run = |workers: usize| -> f64 {
        let output = stream("out");
        clear(&output);
        let t0 = Instant::now();
        std::thread::scope(|scope| {
            for w in 0..workers {
                let (input, output) = (&input, &output);
                scope.spawn(move || {
                    let source = input
                        .source::<u64>(w, workers)
                        .unwrap_or_else(|e| fail(&e.to_string()))
                        .bounded();
                    let sink = output.sink(format!("bench-{w}"), |x: &u64| *x);
                    let app = pipeline! {
                        source nums = source;
                        sink   out = sink;
                        nums -> out;
                    };
                    app.run().unwrap_or_else(|e| fail(&e.to_string()));
                });
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        let written: u64 = (0..4)
            .map(|p| {
                let client =
                    redis::Client::open(url.as_str()).unwrap_or_else(|e| fail(&e.to_string()));
                let mut conn = client
                    .get_connection()
                    .unwrap_or_else(|e| fail(&e.to_string()));
                redis::cmd("XLEN")
                    .arg(output.partition_key(p))
                    .query::<u64>(&mut conn)
                    .unwrap_or_else(|e| fail(&e.to_string()))
            })
            .sum();
        if written != n {
            fail(&format!("redis: {written} events written, {n} expected"));
        }
        clear(&output);
        n as f64 / secs
    };
    let rounds = args.rounds.clamp(1, 3);
    let one: Vec<f64> = (0..rounds).map(|_| run(1)).collect();
    let two: Vec<f64> = (0..rounds).map(|_| run(2)).collect();
    clear(&input);
    let (one, two) = (median(&one), median(&two));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "workload": "redis",
                "variant": "source_to_sink",
                "events": n,
                "partitions": 4,
                "events_per_sec_1_worker": one.round(),
                "events_per_sec_2_workers": two.round(),
                "rounds": rounds,
            })
        );
    } else {
        println!(
            "redis: {n} events through Redis Streams (4 partitions, loopback), median of {rounds}\n  1 worker {:.0} events/s, 2 workers {:.0} events/s",
            one, two
        );
    }
}

/// Workload `latency` (see `common/latency_bench.rs`): at most 5 M events (the peak is the
/// median of `--rounds` unpaced runs, capped at 3).
fn latency(args: &Args) {
    let m = latency_bench::measure((args.events as u64).min(5_000_000), args.rounds.clamp(1, 7));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "workload": "latency",
                "variant": "one_queue_half_load",
                "events": m.events,
                "peak_events_per_sec": m.peak_events_per_sec.round(),
                "paced_events_per_sec": m.paced_events_per_sec.round(),
                "p50_us": m.p50_us,
                "p99_us": m.p99_us,
                "p999_us": m.p999_us,
                "max_us": m.max_us,
                "p99_us_worst_round": m.p99_us_worst_round,
                "rounds": m.rounds,
            })
        );
    } else {
        println!(
            "latency: source => sink, default settings, {} events at half of the peak {:.1} M events/s ({:.1} M events/s achieved), median of {} rounds\n  p50 {:.1} µs, p99 {:.1} µs (worst round {:.1} µs), p99.9 {:.1} µs, max {:.1} µs",
            m.events,
            m.peak_events_per_sec / 1e6,
            m.paced_events_per_sec / 1e6,
            m.rounds,
            m.p50_us,
            m.p99_us,
            m.p99_us_worst_round,
            m.p999_us,
            m.max_us
        );
    }
}

/// Runs every selected variant of one workload `--rounds` times and prints the medians.
fn run_workload(workload: &str, all: &[&str], args: &Args, run: impl Fn(&str) -> u64) {
    let variants: Vec<&str> = all
        .iter()
        .copied()
        .filter(|v| {
            args.variants
                .as_ref()
                .is_none_or(|w| w.iter().any(|x| x == v))
        })
        .collect();
    if variants.is_empty() {
        return;
    }
    let mut results: Vec<Measured> = variants
        .iter()
        .map(|_| Measured {
            secs: Vec::new(),
            allocs: Vec::new(),
            checksum: None,
            checkpoints: Vec::new(),
        })
        .collect();
    for round in 0..args.rounds {
        for i in round_order(round, variants.len()) {
            // Optional pause between runs, for machines where one run's after-effects linger.
            std::thread::sleep(std::time::Duration::from_millis(args.settle_ms));
            let before = GLOBAL.stats().allocations;
            let t0 = Instant::now();
            let sum = run(variants[i]);
            let secs = t0.elapsed().as_secs_f64();
            let allocs = GLOBAL.stats().allocations - before;
            if args.verbose {
                eprintln!(
                    "{workload} round {round} {:<16} {:>8.1} M events/s",
                    variants[i],
                    args.events as f64 / secs / 1e6
                );
            }
            let m = &mut results[i];
            let taken = windows_bench::LAST_CHECKPOINTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(c) = taken {
                m.checkpoints.push(c);
            }
            if m.checksum.is_some_and(|c| c != sum) {
                fail(&format!(
                    "{workload}/{} gave different checksums across rounds",
                    variants[i]
                ));
            }
            m.checksum = Some(sum);
            m.secs.push(secs);
            m.allocs.push(allocs);
        }
    }
    report(workload, &variants, &results, args);
}

fn report(workload: &str, variants: &[&str], results: &[Measured], args: &Args) {
    // The machine is shared and its speed drifts by up to 2× over seconds, so a variant's ratio
    // is the median over rounds of its speed relative to `handwritten` *in the same round*.
    let base = variants.iter().position(|v| *v == "handwritten");
    let same_round_ratio = |of: usize, to: usize| {
        let per_round: Vec<f64> = results[to]
            .secs
            .iter()
            .zip(&results[of].secs)
            .map(|(b, v)| b / v)
            .collect();
        median(&per_round)
    };
    // The hand-assembled twin of a `pipeline!` variant.
    let twin_of = |v: &str| match v {
        "macro_fused" => Some("fused"),
        "macro_two_thread" => Some("two_thread"),
        // A checkpointed variant against the same pipeline without checkpoints.
        v if v.starts_with("macro_fused_ckpt") => Some("macro_fused"),
        // Metrics published from a monitor thread against the same pipeline unwatched.
        "macro_fused_reported" => Some("macro_fused"),
        v if v.starts_with("macro_two_thread_ckpt") => Some("macro_two_thread"),
        // Keyed workers (per-key-group instances) against one window thread.
        "macro_keyed_2" | "macro_keyed_2_kg8" => Some("macro_two_thread"),
        _ => None,
    };
    let mut checksums = Vec::new();
    if !args.json {
        println!(
            "{workload}: {} events, {} rounds (median)\n{:<17} {:>11} {:>8} {:>8} {:>13} {:>17}",
            args.events,
            args.rounds,
            "variant",
            "M events/s",
            "vs hand",
            "vs twin",
            "allocs/event",
            "checksum"
        );
    }
    for (v, m) in variants.iter().zip(results) {
        let eps = args.events as f64 / median(&m.secs);
        let mut allocs = m.allocs.clone();
        allocs.sort_unstable();
        let allocs_per_event = allocs[allocs.len() / 2] as f64 / args.events as f64;
        let checksum = m.checksum.unwrap_or_default();
        checksums.push(checksum);
        let i = variants.iter().position(|x| x == v).unwrap_or_default();
        let ratio = base.map(|b| same_round_ratio(i, b));
        let twin = twin_of(v)
            .and_then(|t| variants.iter().position(|x| *x == t))
            .map(|t| same_round_ratio(i, t));
        // Checkpointed variants: checkpoints per run and state bytes (medians over runs), and
        // the median checkpoint duration over all of them.
        let checkpoint_fields = (!m.checkpoints.is_empty()).then(|| {
            let n: Vec<f64> = m.checkpoints.iter().map(|c| c.0 as f64).collect();
            let ms: Vec<f64> = m
                .checkpoints
                .iter()
                .filter(|c| c.0 > 0)
                .map(|c| c.1)
                .collect();
            let bytes: Vec<f64> = m.checkpoints.iter().map(|c| c.2 as f64).collect();
            let ms = if ms.is_empty() { 0.0 } else { median(&ms) };
            (median(&n), ms, median(&bytes))
        });
        if args.json {
            let mut line = serde_json::json!({
                "variant": v,
                "workload": workload,
                "events": args.events,
                "events_per_sec": eps.round(),
                "allocs_per_event": allocs_per_event,
                "checksum": format!("{checksum:016x}"),
                "rounds": args.rounds,
                "ratio_to_handwritten": ratio,
                "ratio_to_twin": twin,
            });
            if let (Some((n, ms, bytes)), Some(obj)) = (checkpoint_fields, line.as_object_mut()) {
                obj.insert("checkpoints".into(), serde_json::json!(n));
                obj.insert("checkpoint_ms_p50".into(), serde_json::json!(ms));
                obj.insert("checkpoint_bytes".into(), serde_json::json!(bytes));
            }
            println!("{line}");
        } else {
            println!(
                "{:<17} {:>11.1} {:>8} {:>8} {:>13.6} {:>17}",
                v,
                eps / 1e6,
                ratio.map_or("-".into(), |r| format!("{r:.3}")),
                twin.map_or("-".into(), |r| format!("{r:.3}")),
                allocs_per_event,
                format!("{checksum:016x}")
            );
        }
    }
    if checksums.windows(2).any(|w| w[0] != w[1]) {
        fail(&format!("{workload}: variants disagree on the checksum"));
    }
}
