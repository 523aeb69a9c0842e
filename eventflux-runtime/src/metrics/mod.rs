//! Pipeline metrics: per-stage and per-queue counters, drops by reason, queue depth and
//! high-water mark, latency percentiles from histograms, and throughput.
//!
//! # Cost model
//! Counters are owned by one writer thread. Hot loops count into plain local integers and
//! *publish* them once per batch with relaxed stores into the shared atomics, so no event pays
//! for a contended atomic. Latency is sampled once per batch (one clock read) and recorded
//! weighted by the batch's event count. Readers ([`MetricsRegistry::snapshot`]) merge everything
//! registered under the same name — the per-thread histograms of a stage that runs on several
//! threads are merged on read.
//!
//! # Latency
//! Every batch carries the instant its first event entered the pipeline (its *origin*). A stage
//! or sink records `now − origin` for each batch it finishes: at a sink this is the end-to-end
//! latency of those events. A queue records the time batches waited in it.

mod histogram;

pub use histogram::{Histogram, HistogramSnapshot};

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Why events were dropped.
///
/// ```
/// use eventflux_runtime::metrics::DropReason;
/// assert_eq!(DropReason::Evicted.as_str(), "evicted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// A `DropNewest` queue was full and rejected the incoming events.
    Rejected,
    /// A `DropOldest` queue was full and evicted its oldest events.
    Evicted,
    /// A record could not be parsed and went to the dead-letter output.
    Malformed,
    /// An event arrived after its window had closed (sent to the late output).
    Late,
}

impl DropReason {
    const ALL: [DropReason; 4] = [
        DropReason::Rejected,
        DropReason::Evicted,
        DropReason::Malformed,
        DropReason::Late,
    ];

    /// The reason's name in snapshots.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Rejected => "rejected",
            DropReason::Evicted => "evicted",
            DropReason::Malformed => "malformed",
            DropReason::Late => "late",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a metered node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeKind {
    /// A source (counts events it produced).
    Source,
    /// A stage.
    Stage,
    /// A sink.
    Sink,
    /// A side output read as a source (the late output of event-time windows): its events
    /// were counted where they entered the pipeline, so they are not counted again as input.
    SideOutput,
}

/// The shared counters of one stage, source or sink (one writer thread per registration).
///
/// ```
/// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
/// let reg = MetricsRegistry::new();
/// let m = reg.node("parse", NodeKind::Stage);
/// m.publish(10, 8, 0);
/// assert_eq!(reg.snapshot().nodes[0].events_out, 8);
/// ```
#[derive(Debug)]
pub struct NodeMetrics {
    name: String,
    kind: NodeKind,
    /// The keyed worker this copy runs in (`None` outside keyed segments).
    worker: Option<u16>,
    events_in: AtomicU64,
    events_out: AtomicU64,
    errors: AtomicU64,
    dropped: [AtomicU64; 4],
    latency: Histogram,
    /// The latest watermark the node passed on, valid once `watermarked` is set.
    watermark: AtomicU64,
    watermarked: AtomicBool,
}

impl NodeMetrics {
    fn with(name: String, kind: NodeKind, worker: Option<u16>) -> Self {
        Self {
            name,
            kind,
            worker,
            events_in: AtomicU64::new(0),
            events_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: Default::default(),
            latency: Histogram::new(),
            watermark: AtomicU64::new(0),
            watermarked: AtomicBool::new(false),
        }
    }

    /// Records that the node passed on `watermark` (event time, in the pipeline's unit).
    /// Watermarks only rise, so a stale writer cannot move it back.
    pub fn set_watermark(&self, watermark: u64) {
        self.watermark.fetch_max(watermark, Relaxed);
        if !self.watermarked.load(Relaxed) {
            self.watermarked.store(true, Relaxed);
        }
    }

    /// The latest watermark the node passed on, if any.
    pub fn watermark(&self) -> Option<u64> {
        self.watermarked
            .load(Relaxed)
            .then(|| self.watermark.load(Relaxed))
    }

    /// The keyed worker this copy of the node runs in (`None` outside keyed segments).
    pub fn worker(&self) -> Option<u16> {
        self.worker
    }

    /// Publishes the writer's running totals (not deltas).
    #[inline]
    pub fn publish(&self, events_in: u64, events_out: u64, errors: u64) {
        self.events_in.store(events_in, Relaxed);
        self.events_out.store(events_out, Relaxed);
        self.errors.store(errors, Relaxed);
    }

    /// Adds `n` dropped events for `reason`.
    pub fn add_dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Relaxed);
    }

    /// Adds `n` errors.
    pub fn add_errors(&self, n: u64) {
        self.errors.fetch_add(n, Relaxed);
    }

    /// Records the latency of `events` events that finished at this node.
    #[inline]
    pub fn record_latency(&self, nanos: u64, events: u64) {
        self.latency.record_n(nanos, events);
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Events counted in so far.
    pub fn events_in(&self) -> u64 {
        self.events_in.load(Relaxed)
    }

    /// Events counted out so far.
    pub fn events_out(&self) -> u64 {
        self.events_out.load(Relaxed)
    }
}

/// The shared counters of one queue.
///
/// Conservation: once the queue has been drained, `delivered + dropped == pushed` exactly.
#[derive(Debug)]
pub struct QueueMetrics {
    name: String,
    capacity_events: u64,
    pub(crate) pushed: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Signed: the consumer may account a batch before its producer does.
    pub(crate) depth: AtomicI64,
    pub(crate) high_water: AtomicU64,
    /// Nanoseconds producers spent blocked on a full queue (`Block` only).
    pub(crate) blocked_ns: AtomicU64,
    pub(crate) wait: Histogram,
}

impl QueueMetrics {
    /// A standalone set of queue counters (queues made by a pipeline builder are registered).
    pub fn new(name: impl Into<String>, capacity_events: u64) -> Self {
        Self {
            name: name.into(),
            capacity_events,
            pushed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            depth: AtomicI64::new(0),
            high_water: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            wait: Histogram::new(),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Capacity in events (0 for an unbounded queue).
    pub fn capacity_events(&self) -> u64 {
        self.capacity_events
    }

    /// Total time producers spent blocked on the full queue, in nanoseconds.
    pub fn blocked_ns(&self) -> u64 {
        self.blocked_ns.load(Relaxed)
    }

    /// Events offered to the queue.
    pub fn pushed(&self) -> u64 {
        self.pushed.load(Relaxed)
    }
    /// Events handed to the consumer.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }
    /// Events dropped (evicted plus rejected).
    pub fn dropped(&self) -> u64 {
        self.evicted.load(Relaxed) + self.rejected.load(Relaxed)
    }
    /// Events currently queued.
    pub fn depth(&self) -> u64 {
        self.clamp(self.depth.load(Relaxed))
    }
    /// The largest depth seen, in events.
    pub fn high_water(&self) -> u64 {
        self.high_water.load(Relaxed)
    }

    #[inline]
    pub(crate) fn on_enqueued(&self, events: u64) {
        let events = events as i64;
        let depth = self.clamp(self.depth.fetch_add(events, Relaxed) + events);
        if depth > self.high_water.load(Relaxed) {
            self.high_water.fetch_max(depth, Relaxed);
        }
    }

    /// Producers and the consumer account their halves of a hand-off separately, so the raw
    /// counter can briefly run a batch ahead or behind; what is reported never leaves the
    /// physically possible range `0..=capacity`.
    #[inline]
    fn clamp(&self, raw: i64) -> u64 {
        let d = raw.max(0) as u64;
        if self.capacity_events > 0 {
            d.min(self.capacity_events)
        } else {
            d
        }
    }

    #[inline]
    pub(crate) fn on_dequeued(&self, events: u64) {
        self.depth.fetch_sub(events as i64, Relaxed);
    }

    fn snapshot(&self) -> QueueSnapshot {
        let wait = self.wait.snapshot();
        QueueSnapshot {
            name: self.name.clone(),
            capacity_events: self.capacity_events,
            pushed: self.pushed(),
            delivered: self.delivered(),
            dropped_evicted: self.evicted.load(Relaxed),
            dropped_rejected: self.rejected.load(Relaxed),
            depth: self.depth(),
            high_water: self.high_water(),
            blocked_ns: self.blocked_ns(),
            wait: LatencySnapshot::from(&wait),
        }
    }
}

/// The share of the time between two readings that a queue's producers spent blocked
/// (Flink's "backpressured time"), from the queue's running total of blocked nanoseconds. The
/// first reading only sets the baseline (share 0).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BlockedShare {
    last: Option<(Instant, u64)>,
}

impl BlockedShare {
    /// No reading yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The share (0–1) since the previous reading, given the total now.
    pub(crate) fn update(&mut self, blocked_ns: u64) -> f64 {
        let now = Instant::now();
        let share = match self.last {
            Some((at, before)) => {
                let span = now.duration_since(at).as_nanos() as f64;
                if span > 0.0 {
                    (blocked_ns.saturating_sub(before) as f64 / span).min(1.0)
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, blocked_ns));
        share
    }
}

/// Percentiles of a latency histogram, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySnapshot {
    /// Events measured.
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Maximum (exact).
    pub max_ns: u64,
}

impl From<&HistogramSnapshot> for LatencySnapshot {
    fn from(h: &HistogramSnapshot) -> Self {
        Self {
            count: h.count(),
            p50_ns: h.percentile(0.5),
            p99_ns: h.percentile(0.99),
            p999_ns: h.percentile(0.999),
            max_ns: h.max(),
        }
    }
}

/// A node's metrics at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSnapshot {
    /// The node's name.
    pub name: String,
    /// Source, stage or sink.
    pub kind: NodeKind,
    /// Events in.
    pub events_in: u64,
    /// Events out.
    pub events_out: u64,
    /// Errors (dead letters for a source, failed sends for a sink).
    pub errors: u64,
    /// Dropped events by reason (only reasons with a non-zero count).
    pub dropped: Vec<(DropReason, u64)>,
    /// Events out per second over the interval since the previous snapshot.
    pub throughput_per_sec: f64,
    /// Events out per second since the registry was created.
    pub average_per_sec: f64,
    /// Latency since each batch's origin, measured when this node finished it.
    pub latency: LatencySnapshot,
    /// The latest watermark the node passed on (the least over its copies), if it has seen
    /// any: how far event time has progressed here.
    pub watermark: Option<u64>,
    /// Copies of the node that registered (keyed workers and their key groups).
    pub copies: usize,
}

/// A queue's metrics at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct QueueSnapshot {
    /// The queue's name.
    pub name: String,
    /// Capacity in events (0 for an unbounded queue).
    pub capacity_events: u64,
    /// Events offered.
    pub pushed: u64,
    /// Events delivered to the consumer.
    pub delivered: u64,
    /// Events evicted by `DropOldest`.
    pub dropped_evicted: u64,
    /// Events rejected by `DropNewest`.
    pub dropped_rejected: u64,
    /// Events queued now.
    pub depth: u64,
    /// Largest depth seen, in events.
    pub high_water: u64,
    /// Total time producers spent blocked on the full queue (`Block`), in nanoseconds.
    pub blocked_ns: u64,
    /// Time batches waited in the queue.
    pub wait: LatencySnapshot,
}

/// Every metric of a pipeline at one instant. `Serialize` and printable.
///
/// ```
/// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
/// let reg = MetricsRegistry::new();
/// reg.node("out", NodeKind::Sink).publish(3, 3, 0);
/// let snap = reg.snapshot();
/// assert!(snap.to_string().contains("out"));
/// assert!(serde_json::to_string(&snap).is_ok());
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    /// Seconds since the registry was created.
    pub elapsed_secs: f64,
    /// Seconds since the previous snapshot (the throughput interval).
    pub interval_secs: f64,
    /// Sources, stages and sinks, in registration order.
    pub nodes: Vec<NodeSnapshot>,
    /// Queues, in registration order.
    pub queues: Vec<QueueSnapshot>,
    /// Checkpoints taken so far, when the pipeline checkpoints.
    pub checkpoints: Option<crate::exec::checkpoint::CheckpointStats>,
}

impl MetricsSnapshot {
    /// The node named `name`, if any.
    pub fn node(&self, name: &str) -> Option<&NodeSnapshot> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The queue named `name`, if any.
    pub fn queue(&self, name: &str) -> Option<&QueueSnapshot> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// Events dropped so far: evicted or rejected by queues, and dropped by nodes for any
    /// reason but `Malformed` (malformed records are dead letters, counted apart).
    ///
    /// ```
    /// use eventflux_runtime::metrics::{DropReason, MetricsRegistry, NodeKind};
    /// let reg = MetricsRegistry::new();
    /// let w = reg.node("window", NodeKind::Stage);
    /// w.add_dropped(DropReason::Late, 3);
    /// w.add_dropped(DropReason::Malformed, 2);
    /// assert_eq!(reg.snapshot().dropped(), 3);
    /// ```
    pub fn dropped(&self) -> u64 {
        let by_queues: u64 = self
            .queues
            .iter()
            .map(|q| q.dropped_evicted + q.dropped_rejected)
            .sum();
        let by_nodes: u64 = self
            .nodes
            .iter()
            .flat_map(|n| n.dropped.iter())
            .filter(|(r, _)| *r != DropReason::Malformed)
            .map(|(_, c)| c)
            .sum();
        by_queues + by_nodes
    }
}

/// The least of two optional watermarks, ignoring a missing one.
fn least(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn fmt_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// Formats a rate as `1.23M/s`, `45.6k/s` or `789/s`.
pub(crate) fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

impl fmt::Display for MetricsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "metrics after {:.3} s", self.elapsed_secs)?;
        writeln!(
            f,
            "  {:<18} {:<6} {:>12} {:>12} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9}",
            "node", "kind", "in", "out", "dropped", "errors", "avg rate", "p50", "p99", "p99.9"
        )?;
        for n in &self.nodes {
            let dropped: u64 = n.dropped.iter().map(|(_, c)| c).sum();
            let lat = |ns: u64| {
                if n.latency.count == 0 {
                    "-".to_string()
                } else {
                    fmt_ns(ns)
                }
            };
            let kind = match n.kind {
                NodeKind::Source => "source",
                NodeKind::Stage => "stage",
                NodeKind::Sink => "sink",
                NodeKind::SideOutput => "side output",
            };
            writeln!(
                f,
                "  {:<18} {:<6} {:>12} {:>12} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9}",
                n.name,
                kind,
                n.events_in,
                n.events_out,
                dropped,
                n.errors,
                fmt_rate(n.average_per_sec),
                lat(n.latency.p50_ns),
                lat(n.latency.p99_ns),
                lat(n.latency.p999_ns),
            )?;
        }
        if !self.queues.is_empty() {
            writeln!(
                f,
                "  {:<18} {:>12} {:>12} {:>9} {:>9} {:>10} {:>9} {:>9}",
                "queue",
                "pushed",
                "delivered",
                "dropped",
                "depth",
                "high-water",
                "wait p50",
                "wait p99"
            )?;
            for q in &self.queues {
                writeln!(
                    f,
                    "  {:<18} {:>12} {:>12} {:>9} {:>9} {:>10} {:>9} {:>9}",
                    q.name,
                    q.pushed,
                    q.delivered,
                    q.dropped_evicted + q.dropped_rejected,
                    q.depth,
                    q.high_water,
                    fmt_ns(q.wait.p50_ns),
                    fmt_ns(q.wait.p99_ns),
                )?;
            }
        }
        Ok(())
    }
}

/// Where a reader of a [`MetricsRegistry`] left off: rates in
/// [`snapshot_with`](MetricsRegistry::snapshot_with) are computed over the interval since the
/// same cursor's previous read, so several readers (a reporter thread, a dashboard, the
/// caller's own `metrics()` calls) do not disturb each other's rates.
///
/// ```
/// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind, RateCursor};
/// let reg = MetricsRegistry::new();
/// let node = reg.node("out", NodeKind::Sink);
/// let mut mine = RateCursor::new();
/// node.publish(10, 10, 0);
/// let first = reg.snapshot_with(&mut mine);
/// assert!(first.interval_secs > 0.0);
/// let _ = reg.snapshot(); // another reader: `mine` is unaffected
/// assert_eq!(reg.snapshot_with(&mut mine).nodes[0].events_out, 10);
/// ```
#[derive(Debug, Clone)]
pub struct RateCursor {
    at: Option<Instant>,
    out_by_node: HashMap<String, u64>,
}

impl Default for RateCursor {
    fn default() -> Self {
        Self::new()
    }
}

impl RateCursor {
    /// A cursor that has read nothing yet: its first rates are averages since the registry
    /// was created.
    pub fn new() -> Self {
        Self {
            at: None,
            out_by_node: HashMap::new(),
        }
    }
}

/// One copy of a node's counters summed per keyed worker: what
/// [`MetricsRegistry::worker_samples`] returns for exporters that label by worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSample {
    /// The node's name.
    pub name: String,
    /// Source, stage or sink.
    pub kind: NodeKind,
    /// The keyed worker (`None` outside keyed segments).
    pub worker: Option<u16>,
    /// Events in.
    pub events_in: u64,
    /// Events out.
    pub events_out: u64,
    /// Errors.
    pub errors: u64,
    /// Dropped events by reason (every reason, zeros included).
    pub dropped: [(DropReason, u64); 4],
    /// The least watermark over the worker's copies that have one.
    pub watermark: Option<u64>,
}

/// Where a pipeline's metrics are registered and read.
///
/// ```
/// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
/// let reg = MetricsRegistry::new();
/// // Two threads running copies of one stage register under one name; reads merge them.
/// let a = reg.node("work", NodeKind::Stage);
/// let b = reg.node("work", NodeKind::Stage);
/// a.publish(5, 5, 0);
/// b.publish(7, 6, 0);
/// let snap = reg.snapshot();
/// assert_eq!(snap.nodes.len(), 1);
/// assert_eq!((snap.nodes[0].events_in, snap.nodes[0].events_out), (12, 11));
/// ```
pub struct MetricsRegistry {
    created: Instant,
    nodes: Mutex<Vec<Arc<NodeMetrics>>>,
    queues: Mutex<Vec<Arc<QueueMetrics>>>,
    previous: Mutex<RateCursor>,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRegistry").finish_non_exhaustive()
    }
}

impl MetricsRegistry {
    /// An empty registry; its clock for rates starts now.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            created: now,
            nodes: Mutex::new(Vec::new()),
            queues: Mutex::new(Vec::new()),
            previous: Mutex::new(RateCursor::new()),
        }
    }

    /// Counters not listed in snapshots: an edge count shared by two nodes' metering (a
    /// source's output, read by the stage it feeds).
    pub(crate) fn detached(name: &str) -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics::with(name.into(), NodeKind::Source, None))
    }

    /// Registers counters for a node. Registering a name twice gives separate writers whose
    /// values are summed (histograms merged) in snapshots.
    pub fn node(&self, name: impl Into<String>, kind: NodeKind) -> Arc<NodeMetrics> {
        self.node_in(name, kind, None)
    }

    /// [`node`](Self::node) for a copy running in keyed worker `worker`: exporters label its
    /// counters with the worker ([`worker_samples`](Self::worker_samples)).
    pub fn node_in(
        &self,
        name: impl Into<String>,
        kind: NodeKind,
        worker: Option<u16>,
    ) -> Arc<NodeMetrics> {
        let m = Arc::new(NodeMetrics::with(name.into(), kind, worker));
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&m));
        m
    }

    /// Registers counters for a queue.
    pub fn queue(&self, name: impl Into<String>, capacity_events: u64) -> Arc<QueueMetrics> {
        let m = Arc::new(QueueMetrics::new(name, capacity_events));
        self.register_queue(Arc::clone(&m));
        m
    }

    /// Registers existing queue counters.
    pub fn register_queue(&self, m: Arc<QueueMetrics>) {
        self.queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(m);
    }

    /// Reads every metric. Throughput is computed over the interval since the previous call
    /// (by any caller of this method; see [`snapshot_with`](Self::snapshot_with) for a reader
    /// of its own).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut prev = self.previous.lock().unwrap_or_else(PoisonError::into_inner);
        self.snapshot_with(&mut prev)
    }

    /// Every registered queue's counters, in registration order.
    pub fn queue_metrics(&self) -> Vec<Arc<QueueMetrics>> {
        self.queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Each node's counters summed per keyed worker, in registration order (a node outside
    /// keyed segments has one sample, with `worker: None`).
    ///
    /// ```
    /// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
    /// let reg = MetricsRegistry::new();
    /// reg.node_in("count", NodeKind::Stage, Some(0)).publish(4, 4, 0);
    /// reg.node_in("count", NodeKind::Stage, Some(1)).publish(6, 6, 0);
    /// reg.node_in("count", NodeKind::Stage, Some(1)).publish(1, 1, 0);
    /// let s = reg.worker_samples();
    /// let got: Vec<_> = s.iter().map(|s| (s.worker, s.events_in)).collect();
    /// assert_eq!(got, [(Some(0), 4), (Some(1), 7)]);
    /// ```
    pub fn worker_samples(&self) -> Vec<WorkerSample> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<WorkerSample> = Vec::new();
        // Each (node, worker)'s place in `out`: a keyed worker has one copy of its nodes per
        // key group, so a search of `out` for each copy would be quadratic.
        let mut at: HashMap<(&str, Option<u16>), usize> = HashMap::new();
        for m in nodes.iter() {
            let i = *at.entry((m.name.as_str(), m.worker)).or_insert_with(|| {
                out.push(WorkerSample {
                    name: m.name.clone(),
                    kind: m.kind,
                    worker: m.worker,
                    events_in: 0,
                    events_out: 0,
                    errors: 0,
                    dropped: DropReason::ALL.map(|r| (r, 0)),
                    watermark: None,
                });
                out.len() - 1
            });
            let s = &mut out[i];
            s.events_in += m.events_in.load(Relaxed);
            s.events_out += m.events_out.load(Relaxed);
            s.errors += m.errors.load(Relaxed);
            for (reason, n) in &mut s.dropped {
                *n += m.dropped[reason.index()].load(Relaxed);
            }
            s.watermark = least(s.watermark, m.watermark());
        }
        out
    }

    /// Reads every metric, with throughput over the interval since `cursor`'s previous read.
    pub fn snapshot_with(&self, cursor: &mut RateCursor) -> MetricsSnapshot {
        let now = Instant::now();
        let elapsed = now.duration_since(self.created);
        let prev = cursor;
        let interval = now.duration_since(prev.at.unwrap_or(self.created));

        let mut order: Vec<String> = Vec::new();
        let mut merged: HashMap<String, (NodeSnapshot, HistogramSnapshot)> = HashMap::new();
        for m in self
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let entry = merged.entry(m.name.clone()).or_insert_with(|| {
                order.push(m.name.clone());
                (
                    NodeSnapshot {
                        name: m.name.clone(),
                        kind: m.kind,
                        events_in: 0,
                        events_out: 0,
                        errors: 0,
                        dropped: Vec::new(),
                        throughput_per_sec: 0.0,
                        average_per_sec: 0.0,
                        latency: LatencySnapshot::default(),
                        watermark: None,
                        copies: 0,
                    },
                    HistogramSnapshot::empty(),
                )
            });
            entry.0.copies += 1;
            entry.0.watermark = least(entry.0.watermark, m.watermark());
            entry.0.events_in += m.events_in.load(Relaxed);
            entry.0.events_out += m.events_out.load(Relaxed);
            entry.0.errors += m.errors.load(Relaxed);
            for reason in DropReason::ALL {
                let n = m.dropped[reason.index()].load(Relaxed);
                if n > 0 {
                    match entry.0.dropped.iter_mut().find(|(r, _)| *r == reason) {
                        Some((_, c)) => *c += n,
                        None => entry.0.dropped.push((reason, n)),
                    }
                }
            }
            entry.1.merge_from(&m.latency);
        }
        let rate = |n: u64, d: Duration| {
            if d.is_zero() {
                0.0
            } else {
                n as f64 / d.as_secs_f64()
            }
        };
        let mut nodes = Vec::with_capacity(order.len());
        let mut out_by_node = HashMap::with_capacity(order.len());
        for name in order {
            if let Some((mut snap, hist)) = merged.remove(&name) {
                let before = prev.out_by_node.get(&name).copied().unwrap_or(0);
                snap.throughput_per_sec = rate(snap.events_out.saturating_sub(before), interval);
                snap.average_per_sec = rate(snap.events_out, elapsed);
                snap.latency = LatencySnapshot::from(&hist);
                out_by_node.insert(name, snap.events_out);
                nodes.push(snap);
            }
        }
        let queues = self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|q| q.snapshot())
            .collect();
        *prev = RateCursor {
            at: Some(now),
            out_by_node,
        };
        MetricsSnapshot {
            elapsed_secs: elapsed.as_secs_f64(),
            interval_secs: interval.as_secs_f64(),
            nodes,
            queues,
            checkpoints: None,
        }
    }
}
