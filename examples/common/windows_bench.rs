//! Workloads `W` (event-time tumbling window, 5 aggregates per symbol) and `W_sliding`
//! (`length(1000)` sliding min/max/avg per arrival) for the bench binary.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use eventflux::prelude::*;

use crate::trades::{SYMBOLS, Trade};
use crate::{SliceSource, fail};

/// `(symbol, notional, ts)`.
pub type Notional = (u32, f64, u64);

const SIZE: u64 = 1_000;
const OUT_OF_ORDER: u64 = 50;
const LENGTH: usize = 1_000;

/// Folds output rows into a checksum.
///
/// `W` rows are compared bit for bit: its notionals are whole numbers (see [`whole_cents`]), so
/// every partial sum is an exact integer below 2⁵³ and a plain `+=`, a compensated sum and the
/// mean derived from either agree to the last bit. Rows are combined with a commutative sum of
/// row hashes, so the order of the groups inside a window (by symbol in a hand loop, by first
/// appearance in the library) does not matter, while every value still does.
#[derive(Clone, Copy, Default)]
pub struct Fold(u64);

/// A 64-bit mix of several words (FNV-style, order-dependent within one row).
fn mix_all(words: &[u64]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h.rotate_left(5) ^ x).wrapping_mul(0x100_0000_01B3)
    })
}

impl Fold {
    #[inline]
    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x100_0000_01B3);
    }

    /// One `W` row: symbol, window start, count, and sum/min/max/avg bit for bit.
    #[inline]
    pub fn w_row(
        &mut self,
        symbol: u64,
        start: u64,
        count: u64,
        (sum, min, max, avg): (f64, f64, f64, f64),
    ) {
        let h = mix_all(&[
            symbol,
            start,
            count,
            sum.to_bits(),
            min.to_bits(),
            max.to_bits(),
            avg.to_bits(),
        ]);
        self.0 = self.0.wrapping_add(h);
    }

    /// One `W_sliding` row, bit for bit (whole-number notionals: plain and compensated sums
    /// agree exactly).
    #[inline]
    pub fn sliding_row(&mut self, min: f64, max: f64, avg: f64) {
        self.mix(min.to_bits());
        self.mix(max.to_bits());
        self.mix(avg.to_bits());
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

/// The input of `W` and `W_sliding`: the trades with prices in whole cents, prepared once
/// before timing. Every notional (`price × volume`) and every window sum is then a whole number
/// below 2⁵³, so plain and compensated sums agree exactly and all variants' rows are
/// bit-identical — without adding any per-event work to the workload.
pub fn whole_cents(mut trades: Vec<Trade>) -> Vec<Trade> {
    for t in &mut trades {
        t.price = (t.price * 100.0).round();
    }
    trades
}

// ---------------------------------------------------------------------------------------------
// W: hand-written.

#[derive(Clone, Copy)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

const EMPTY: Acc = Acc {
    count: 0,
    sum: 0.0,
    min: f64::INFINITY,
    max: f64::NEG_INFINITY,
};

/// The plain loop a user would write for in-order input: a dense array of plain accumulators
/// (`f64` `+=`, min/max from ±∞), a bitmask of the symbols seen, and the window closing when
/// the first event of a later window arrives. No watermark, no deque, no `Option`s.
#[inline(never)] // a symbol of its own, for callgrind's --toggle-collect
pub fn w_handwritten(data: &[Trade]) -> u64 {
    let mut fold = Fold::default();
    let mut acc = [EMPTY; SYMBOLS];
    let mut active = 0u64;
    let (mut start, mut end) = (0u64, 0u64);
    let mut flush = |acc: &mut [Acc; SYMBOLS], active: &mut u64, start: u64| {
        let mut m = *active;
        while m != 0 {
            let k = m.trailing_zeros() as usize;
            m &= m - 1;
            let a = acc[k];
            fold.w_row(
                k as u64,
                start,
                a.count,
                (a.sum, a.min, a.max, a.sum / a.count as f64),
            );
            acc[k] = EMPTY;
        }
        *active = 0;
    };
    for t in data {
        if t.volume <= 100 {
            continue;
        }
        let v = t.price * f64::from(t.volume);
        if t.ts >= end {
            flush(&mut acc, &mut active, start);
            start = t.ts - t.ts % SIZE;
            end = start + SIZE;
        }
        let k = t.symbol as usize % SYMBOLS;
        let a = &mut acc[k];
        a.count += 1;
        a.sum += v;
        a.min = a.min.min(v);
        a.max = a.max.max(v);
        active |= 1 << k;
    }
    flush(&mut acc, &mut active, start);
    fold.value()
}

// ---------------------------------------------------------------------------------------------
// W: pipelines.

/// One `W` output row, in the pipeline's own type (made by the window's `.select`).
struct WStats {
    symbol: usize,
    start: u64,
    trades: u64,
    notional: f64,
    low: f64,
    high: f64,
    mean: f64,
}

/// A sink folding each row into a checksum, published when the sink closes.
struct FoldSink<F> {
    fold: Fold,
    row: F,
    result: Arc<Mutex<Option<u64>>>,
}

impl<R, F: FnMut(&mut Fold, R) + Send> Sink<R> for FoldSink<F> {
    #[inline]
    fn send(&mut self, r: R) -> Result<(), SinkError> {
        (self.row)(&mut self.fold, r);
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.fold.value());
        Ok(())
    }
}

fn fold_sink<F>(row: F) -> (FoldSink<F>, Arc<Mutex<Option<u64>>>) {
    let result = Arc::new(Mutex::new(None));
    let sink = FoldSink {
        fold: Fold::default(),
        row,
        result: Arc::clone(&result),
    };
    (sink, result)
}

/// Runs `app` and returns the checksum its fold sink published.
fn checksum_of(app: App, result: &Mutex<Option<u64>>) -> u64 {
    if let Err(e) = app.run() {
        fail(&format!("pipeline failed: {e}"));
    }
    result_of(result)
}

fn result_of(r: &Mutex<Option<u64>>) -> u64 {
    r.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .unwrap_or_else(|| fail("a pipeline finished without publishing its result"))
}

/// How `W` is declared with `pipeline!`.
#[derive(Clone, Copy)]
pub enum Shape {
    /// Everything fused on one thread, `group_by_index`.
    Fused,
    /// The same with a hashed `group_by`.
    Hashed,
    /// Source, filter and projection on one thread; `=>`; window and sink on another.
    TwoThread,
    /// `Fused`, checkpointing every `n` ms into a temporary directory.
    FusedCheckpointed(u64),
    /// `TwoThread`, checkpointing every `n` ms into a temporary directory.
    TwoThreadCheckpointed(u64),
    /// Source, filter and projection on one thread; a keyed `=>` into 2 workers (one window
    /// instance per key group, 128 groups); `=>` into the sink.
    Keyed,
    /// `Keyed` with `key_groups = 8`.
    KeyedFewGroups,
    /// `Fused`, publishing its metrics every 100 ms through the `metrics` facade into a
    /// Prometheus recorder (rendered once at the end of each run, as a scrape would).
    FusedReported,
}

/// The process's Prometheus recorder, installed on first use.
fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap_or_else(|e| fail(&format!("cannot install the Prometheus recorder: {e}")))
    })
}

/// What the last checkpointed run took: checkpoints, their median duration, state bytes.
pub static LAST_CHECKPOINTS: Mutex<Option<(u64, f64, u64)>> = Mutex::new(None);

/// The bench's checkpoint directory (one per process; each run starts it afresh, and
/// [`remove_checkpoint_dir`] removes it when the workload is done).
pub fn checkpoint_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("eventflux-bench-ckpt-{}", std::process::id()))
}

/// Removes the bench's checkpoint directory.
pub fn remove_checkpoint_dir() {
    let _ = std::fs::remove_dir_all(checkpoint_dir());
}

/// Runs `app` with checkpoints (a fresh start in the bench's directory: its earlier
/// checkpoints are deleted) and records what they took.
fn checkpointed(app: App, result: &Mutex<Option<u64>>) -> u64 {
    let report = app
        .checkpoints(checkpoint_dir(), Recovery::StartFresh)
        .and_then(App::run)
        .unwrap_or_else(|e| fail(&format!("pipeline failed: {e}")));
    let c = &report.checkpoints;
    let mut ms: Vec<f64> = c.durations_ms.iter().map(|&d| d as f64).collect();
    ms.sort_by(f64::total_cmp);
    let p50 = ms.get(ms.len() / 2).copied().unwrap_or(0.0);
    let bytes = c.last.as_ref().map_or(0, |l| l.bytes);
    *LAST_CHECKPOINTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some((c.completed, p50, bytes));
    result_of(result)
}

/// `W` declared with `pipeline!`, with default settings.
#[inline(never)] // a symbol of its own, for callgrind's --toggle-collect
pub fn w_macro(data: &Arc<Vec<Trade>>, shape: Shape) -> u64 {
    let (sink, result) = fold_sink(|fold: &mut Fold, r: WStats| {
        let v = (r.notional, r.low, r.high, r.mean);
        fold.w_row(r.symbol as u64, r.start, r.trades, v);
    });
    let source = SliceSource::new(data);
    macro_rules! window {
        ($($group:tt)*) => {
            tumbling(SIZE, |n: &Notional| n.2)
                .out_of_orderness(OUT_OF_ORDER)
                .$($group)*
                .aggregate((
                    count(),
                    sum(|n: &Notional| n.1),
                    min(|n: &Notional| n.1),
                    max(|n: &Notional| n.1),
                    avg(|n: &Notional| n.1),
                ))
                .select(
                    |symbol, bounds, (trades, notional, low, high, mean)| WStats {
                        symbol: symbol as usize,
                        start: bounds.start,
                        trades,
                        notional,
                        low,
                        high,
                        mean,
                    },
                )
        };
    }
    // 2 keyed workers by symbol, with the edge settings given.
    macro_rules! keyed {
        ($($setting:tt)*) => {
            pipeline! {
                source feed = source;
                stage big = filter(|t: &Trade| t.volume > 100);
                stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
                stage stats = window!(group_by_index(|n: &Notional| n.0 as usize));
                sink out = sink;
                feed -> big -> value =>[workers = 2, key = |n: &Notional| n.0 $($setting)*] stats => out;
            }
        };
    }
    // Default settings throughout (per-stage metrics on): the pipeline the README teaches.
    let app = match shape {
        Shape::Fused | Shape::FusedCheckpointed(_) | Shape::FusedReported => pipeline! {
            source feed = source;
            stage big = filter(|t: &Trade| t.volume > 100);
            stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
            stage stats = window!(group_by_index(|n: &Notional| n.0 as usize));
            sink out = sink;
            feed -> big -> value -> stats -> out;
        },
        Shape::Hashed => pipeline! {
            source feed = source;
            stage big = filter(|t: &Trade| t.volume > 100);
            stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
            stage stats = window!(group_by(|n: &Notional| n.0));
            sink out = sink;
            feed -> big -> value -> stats -> out;
        },
        Shape::TwoThread | Shape::TwoThreadCheckpointed(_) => pipeline! {
            source feed = source;
            stage big = filter(|t: &Trade| t.volume > 100);
            stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
            stage stats = window!(group_by_index(|n: &Notional| n.0 as usize));
            sink out = sink;
            feed -> big -> value => stats -> out;
        },
        Shape::Keyed => keyed!(),
        Shape::KeyedFewGroups => keyed!(, key_groups = 8),
    };
    match shape {
        Shape::FusedCheckpointed(ms) | Shape::TwoThreadCheckpointed(ms) => {
            let every = std::time::Duration::from_millis(ms);
            let app = app
                .with_checkpoint_interval(every)
                .unwrap_or_else(|e| fail(&format!("{e}")));
            checkpointed(app, &result)
        }
        Shape::FusedReported => {
            let handle = prometheus();
            let publish = eventflux::observe::PublishMetrics::new("bench")
                .every(std::time::Duration::from_millis(100));
            let sum = checksum_of(app.publish_metrics(publish), &result);
            if !handle.render().contains("eventflux_node_events_out_total") {
                fail("the reported run published no metrics");
            }
            sum
        }
        _ => checksum_of(app, &result),
    }
}

/// `W` in the naive design: dynamic rows, boxed processors, a `Vec` per event per stage, hash
/// maps for state.
pub fn w_dyn_vec(data: &[Trade]) -> u64 {
    enum R {
        Trade(Trade),
        Notional(Notional),
        Row(u32, u64, Acc),
    }
    trait P {
        fn process(&mut self, r: R) -> Vec<R>;
        fn finish(&mut self) -> Vec<R> {
            Vec::new()
        }
    }
    struct Big;
    impl P for Big {
        fn process(&mut self, r: R) -> Vec<R> {
            match r {
                R::Trade(t) if t.volume > 100 => vec![r],
                _ => Vec::new(),
            }
        }
    }
    struct Value;
    impl P for Value {
        fn process(&mut self, r: R) -> Vec<R> {
            match r {
                R::Trade(t) => vec![R::Notional((t.symbol, t.price * f64::from(t.volume), t.ts))],
                other => vec![other],
            }
        }
    }
    #[derive(Default)]
    struct Window {
        open: BTreeMap<u64, (HashMap<u32, Acc>, Vec<u32>)>,
        max_ts: Option<u64>,
    }
    impl Window {
        fn close(&mut self, upto: Option<u64>) -> Vec<R> {
            let mut out = Vec::new();
            while let Some((&start, _)) = self.open.first_key_value() {
                if upto.is_some_and(|wm| wm < start + SIZE - 1) {
                    break;
                }
                if let Some((_, (accs, order))) = self.open.pop_first() {
                    for s in order {
                        out.push(R::Row(s, start, accs[&s]));
                    }
                }
            }
            out
        }
    }
    impl P for Window {
        fn process(&mut self, r: R) -> Vec<R> {
            let R::Notional((s, v, ts)) = r else {
                return Vec::new();
            };
            let (accs, order) = self.open.entry(ts / SIZE * SIZE).or_default();
            let a = accs.entry(s).or_insert_with(|| {
                order.push(s);
                EMPTY
            });
            a.count += 1;
            a.sum += v;
            a.min = a.min.min(v);
            a.max = a.max.max(v);
            self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
            let wm = self.max_ts.and_then(|m| m.checked_sub(OUT_OF_ORDER + 1));
            if wm.is_some() {
                self.close(wm)
            } else {
                Vec::new()
            }
        }
        fn finish(&mut self) -> Vec<R> {
            self.close(None)
        }
    }
    struct Out<'a>(&'a mut Fold);
    impl P for Out<'_> {
        fn process(&mut self, r: R) -> Vec<R> {
            if let R::Row(s, start, a) = r {
                self.0.w_row(
                    u64::from(s),
                    start,
                    a.count,
                    (a.sum, a.min, a.max, a.sum / a.count as f64),
                );
            }
            Vec::new()
        }
    }
    let mut fold = Fold::default();
    {
        let mut stages: Vec<Box<dyn P + '_>> = vec![
            Box::new(Big),
            Box::new(Value),
            Box::new(Window::default()),
            Box::new(Out(&mut fold)),
        ];
        let run = |stages: &mut Vec<Box<dyn P + '_>>, first: usize, rows: Vec<R>| {
            let mut rows = rows;
            for st in stages.iter_mut().skip(first) {
                let mut next = Vec::new();
                for r in rows {
                    next.extend(st.process(r));
                }
                rows = next;
            }
        };
        for t in data {
            run(&mut stages, 0, vec![R::Trade(*t)]);
        }
        let tail = stages[2].finish();
        run(&mut stages, 3, tail);
    }
    fold.value()
}

// ---------------------------------------------------------------------------------------------
// W_sliding.

/// Neumaier's compensated running sum: a plain `+=`/`-=` over 20 M floats drifts by more than
/// a cent, which a careful engineer would not accept (and which would make the mean wrong).
/// The plain loop: monotonic deques for min and max, a plain running sum (`+=`, `-=`) for the
/// mean — exact here because the notionals are whole numbers (see [`whole_cents`]).
#[inline(never)] // a symbol of its own, for callgrind's --toggle-collect
pub fn w_sliding_handwritten(data: &[Trade]) -> u64 {
    let mut fold = Fold::default();
    let mut window: VecDeque<f64> = VecDeque::with_capacity(LENGTH);
    let mut mins: VecDeque<(u64, f64)> = VecDeque::new();
    let mut maxs: VecDeque<(u64, f64)> = VecDeque::new();
    let (mut added, mut removed) = (0u64, 0u64);
    let mut sum = 0.0f64;
    for t in data {
        if t.volume <= 100 {
            continue;
        }
        let v = t.price * f64::from(t.volume);
        if window.len() == LENGTH
            && let Some(old) = window.pop_front()
        {
            sum -= old;
            if mins.front().is_some_and(|(i, _)| *i == removed) {
                mins.pop_front();
            }
            if maxs.front().is_some_and(|(i, _)| *i == removed) {
                maxs.pop_front();
            }
            removed += 1;
        }
        window.push_back(v);
        sum += v;
        while mins.back().is_some_and(|(_, x)| *x >= v) {
            mins.pop_back();
        }
        mins.push_back((added, v));
        while maxs.back().is_some_and(|(_, x)| *x <= v) {
            maxs.pop_back();
        }
        maxs.push_back((added, v));
        added += 1;
        let (lo, hi) = (
            mins.front().map_or(f64::NAN, |m| m.1),
            maxs.front().map_or(f64::NAN, |m| m.1),
        );
        fold.sliding_row(lo, hi, sum / window.len() as f64);
    }
    fold.value()
}

/// `length(1000)` with min/max/avg, declared with `pipeline!`.
#[inline(never)] // a symbol of its own, for callgrind's --toggle-collect
pub fn w_sliding_macro(data: &Arc<Vec<Trade>>) -> u64 {
    let (sink, result) = fold_sink(|fold: &mut Fold, (lo, hi, avg): (f64, f64, f64)| {
        fold.sliding_row(lo, hi, avg);
    });
    let source = SliceSource::new(data);
    let app = pipeline! {
        config { stage_metrics: false }
        source feed = source;
        stage big = filter(|t: &Trade| t.volume > 100);
        stage value = map(|t: Trade| (t.symbol, t.price * f64::from(t.volume), t.ts));
        stage window = length(LENGTH).aggregate((
            min(|n: &Notional| n.1),
            max(|n: &Notional| n.1),
            avg(|n: &Notional| n.1),
        ))
        .select(|(), values| values);
        sink out = sink;
        feed -> big -> value -> window -> out;
    };
    checksum_of(app, &result)
}
