//! Watching a running pipeline off its hot path: metrics published through the
//! [`metrics`](https://docs.rs/metrics) facade ([`PublishMetrics`]) and a periodic progress line
//! ([`Progress`]).
//!
//! Both run on one *monitor* thread per pipeline. Stages, queues and sinks keep counting into
//! their single-writer counters exactly as without a monitor; the monitor reads those counters
//! at its interval and hands the values on, so the fused chain pays nothing for being watched.
//! The monitor sleeps between reads (no polling when there is nothing to report), reads once
//! more after the last segment finished (so the final values are exact), and stops with the
//! pipeline.
//!
//! # Published metrics
//! Names and labels are stable. Every metric has the label `pipeline` (the name given to
//! [`PublishMetrics::new`]).
//!
//! | name | type | more labels | meaning |
//! |---|---|---|---|
//! | `eventflux_node_events_in_total` | counter | `node`, `worker` | events into a source's chain, a stage or a sink |
//! | `eventflux_node_events_out_total` | counter | `node`, `worker` | events out of a node |
//! | `eventflux_node_errors_total` | counter | `node`, `worker` | dead letters of a source, failed sends of a sink, stage errors |
//! | `eventflux_node_dropped_total` | counter | `node`, `worker`, `reason` | events dropped by a node (`malformed`, `late`) |
//! | `eventflux_node_watermark` | gauge | `node`, `worker` | the latest watermark the node passed on (event-time units) |
//! | `eventflux_node_event_time_lag_seconds` | gauge | `node`, `worker` | wall clock minus the watermark, with [`PublishMetrics::event_time_unix_millis`] |
//! | `eventflux_node_latency_seconds` | gauge | `node`, `quantile` | time since a batch's events entered the pipeline, when the node finished it (`quantile` 0.5, 0.99, 0.999, 1 = max) |
//! | `eventflux_queue_depth` | gauge | `queue` | events queued now |
//! | `eventflux_queue_capacity` | gauge | `queue` | capacity in events (0: unbounded) |
//! | `eventflux_queue_high_water` | gauge | `queue` | largest depth seen |
//! | `eventflux_queue_pushed_total` | counter | `queue` | events offered |
//! | `eventflux_queue_delivered_total` | counter | `queue` | events handed to the consumer |
//! | `eventflux_queue_dropped_total` | counter | `queue`, `reason` | `evicted` (`DropOldest`) or `rejected` (`DropNewest`) |
//! | `eventflux_queue_blocked_seconds_total` | counter | `queue` | whole seconds producers spent blocked on the full queue (`Block`); see also the next line |
//! | `eventflux_queue_blocked_ratio` | gauge | `queue` | share of the last interval producers spent blocked (Flink's "backpressured time") |
//! | `eventflux_queue_wait_seconds` | gauge | `queue`, `quantile` | time batches waited in the queue |
//! | `eventflux_checkpoints_completed_total` | counter | | checkpoints completed |
//! | `eventflux_checkpoints_failed_total` | counter | | checkpoints failed or declined |
//! | `eventflux_checkpoint_last_id` | gauge | | id of the last completed checkpoint |
//! | `eventflux_checkpoint_last_duration_seconds` | gauge | | its duration, request to durable manifest |
//! | `eventflux_checkpoint_last_bytes` | gauge | | bytes of state it wrote |
//! | `eventflux_checkpoint_last_alignment_seconds` | gauge | | its longest barrier alignment |
//! | `eventflux_pipeline_uptime_seconds` | gauge | | seconds since the pipeline was built |
//!
//! `worker` is the keyed worker running the node's copy (`"0"` outside keyed segments). The
//! copies of a node in one worker (one per key group) are summed. Latency histograms are merged
//! over every copy of a node.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Label};

use crate::exec::checkpoint::CheckpointStats;
use crate::metrics::{
    BlockedShare, LatencySnapshot, MetricsRegistry, MetricsSnapshot, NodeKind, RateCursor,
    WorkerSample, fmt_rate,
};

/// Publishes a pipeline's metrics through the `metrics` facade at an interval, to whatever
/// recorder the program installed (Prometheus, StatsD, …). Without a recorder the values go
/// nowhere, at the cost of one read per interval. See the [module docs](self) for the names.
///
/// ```
/// use std::time::Duration;
/// use eventflux_runtime::observe::PublishMetrics;
/// let publish = PublishMetrics::new("trades").every(Duration::from_millis(500));
/// assert_eq!(publish.interval(), Duration::from_millis(500));
/// ```
#[derive(Debug, Clone)]
pub struct PublishMetrics {
    pipeline: String,
    every: Duration,
    unix_millis: bool,
}

impl PublishMetrics {
    /// Publishes under the label `pipeline = name`, every second.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            pipeline: name.into(),
            every: Duration::from_secs(1),
            unix_millis: false,
        }
    }

    /// How often to publish (at least 1 ms).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(1));
        self
    }

    /// The publishing interval.
    pub fn interval(&self) -> Duration {
        self.every
    }

    /// Declares that the pipeline's event time is milliseconds since the Unix epoch, so
    /// `eventflux_node_event_time_lag_seconds` (now minus each node's watermark) means
    /// something and is published.
    pub fn event_time_unix_millis(mut self, yes: bool) -> Self {
        self.unix_millis = yes;
        self
    }
}

/// Where a progress line goes.
enum ProgressTarget {
    Stderr { only_terminal: bool },
    Writer(Box<dyn Write + Send>),
}

/// A periodic one-line summary of a running pipeline: events per second in and out, each
/// bounded queue's fill, drops, dead letters, event-time progress and the last checkpoint.
///
/// A line is written every interval and once more when the pipeline ends, for example:
///
/// ```text
/// [trades 12.0s] in 4.02M/s out 38.1k/s | queues by_symbol 3% | dropped 0 | dead letters 2 | watermark 1700000061000 | checkpoint #11 14.2ms 83.0KiB
/// ```
///
/// ```
/// use eventflux_runtime::observe::Progress;
/// use std::time::Duration;
/// // On stderr when it is a terminal (what the examples use):
/// let _auto = Progress::auto();
/// // Into any writer, every 5 s:
/// let _mine = Progress::to_writer(std::io::sink()).every(Duration::from_secs(5));
/// ```
pub struct Progress {
    target: ProgressTarget,
    every: Duration,
    name: Option<String>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// On stderr, only when stderr is a terminal (so logs and pipes stay clean); every second.
    pub fn auto() -> Self {
        Self::with(ProgressTarget::Stderr {
            only_terminal: true,
        })
    }

    /// On stderr, terminal or not.
    pub fn stderr() -> Self {
        Self::with(ProgressTarget::Stderr {
            only_terminal: false,
        })
    }

    /// Into `writer` (a log file, a buffer in a test).
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Self::with(ProgressTarget::Writer(Box::new(writer)))
    }

    fn with(target: ProgressTarget) -> Self {
        Self {
            target,
            every: Duration::from_secs(1),
            name: None,
        }
    }

    /// How often to write a line (at least 10 ms).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval.max(Duration::from_millis(10));
        self
    }

    /// The name at the start of each line (`pipeline` if not set).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether this target writes anything (`auto` off a terminal does not).
    fn active(&self) -> bool {
        match self.target {
            ProgressTarget::Stderr { only_terminal } => {
                !only_terminal || std::io::stderr().is_terminal()
            }
            ProgressTarget::Writer(_) => true,
        }
    }
}

fn fmt_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b}B"),
        1024..1_048_576 => format!("{:.1}KiB", b as f64 / 1024.0),
        _ => format!("{:.1}MiB", b as f64 / 1_048_576.0),
    }
}

/// The progress line for one snapshot (without a newline).
///
/// `in` is what the sources emitted per second over the snapshot's interval, `out` what the
/// sinks received; `queues` lists each bounded queue's fill (`!` marks one at least half
/// full); `watermark` is the least over the nodes that have one.
///
/// ```
/// use eventflux_runtime::metrics::{MetricsRegistry, NodeKind};
/// use eventflux_runtime::observe::progress_line;
/// let reg = MetricsRegistry::new();
/// reg.node("src", NodeKind::Source).publish(0, 100, 0);
/// reg.node("out", NodeKind::Sink).publish(40, 40, 0);
/// let line = progress_line("demo", &reg.snapshot(), 3);
/// assert!(line.starts_with("[demo "));
/// assert!(line.contains("| dropped 0 | dead letters 3"));
/// ```
pub fn progress_line(name: &str, s: &MetricsSnapshot, dead_letters: u64) -> String {
    let sum = |kind: NodeKind, f: fn(&crate::metrics::NodeSnapshot) -> f64| -> f64 {
        s.nodes.iter().filter(|n| n.kind == kind).map(f).sum()
    };
    let rate_in = sum(NodeKind::Source, |n| n.throughput_per_sec);
    let rate_out = sum(NodeKind::Sink, |n| n.throughput_per_sec);
    let mut line = format!(
        "[{name} {:.1}s] in {} out {}",
        s.elapsed_secs,
        fmt_rate(rate_in),
        fmt_rate(rate_out)
    );
    let bounded: Vec<String> = s
        .queues
        .iter()
        .filter(|q| q.capacity_events > 0)
        .map(|q| {
            let fill = q.depth as f64 / q.capacity_events as f64;
            let mark = if fill >= 0.5 { "!" } else { "" };
            format!("{} {:.0}%{mark}", q.name, fill * 100.0)
        })
        .collect();
    if !bounded.is_empty() {
        line.push_str(" | queues ");
        line.push_str(&bounded.join(" "));
    }
    line.push_str(&format!(
        " | dropped {} | dead letters {dead_letters}",
        s.dropped()
    ));
    if let Some(w) = s.nodes.iter().filter_map(|n| n.watermark).min() {
        line.push_str(&format!(" | watermark {w}"));
    }
    if let Some(c) = &s.checkpoints {
        match &c.last {
            Some(last) => line.push_str(&format!(
                " | checkpoint #{} {:.1}ms {}",
                last.id,
                last.duration.as_secs_f64() * 1e3,
                fmt_bytes(last.bytes)
            )),
            None => line.push_str(" | checkpoint none yet"),
        }
        if c.failed > 0 {
            line.push_str(&format!(" ({} failed)", c.failed));
        }
    }
    line
}

/// What the monitor reads besides the registry.
pub(crate) struct Sources {
    pub(crate) registry: Arc<MetricsRegistry>,
    pub(crate) checkpoints: Option<Arc<crate::exec::checkpoint::Coordinator>>,
    pub(crate) dead_letters: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Sources {
    fn snapshot(&self, cursor: &mut RateCursor) -> MetricsSnapshot {
        let mut s = self.registry.snapshot_with(cursor);
        s.checkpoints = self.checkpoints.as_ref().map(|c| c.stats());
        s
    }
}

/// One thing the monitor does at its own interval.
trait Watcher: Send {
    fn interval(&self) -> Duration;
    /// Called at every interval and once more (`last`) after the pipeline ended.
    fn observe(&mut self, sources: &Sources, last: bool);
}

struct ProgressWatcher {
    progress: Progress,
    cursor: RateCursor,
    name: String,
}

impl Watcher for ProgressWatcher {
    fn interval(&self) -> Duration {
        self.progress.every
    }

    fn observe(&mut self, sources: &Sources, _last: bool) {
        let snap = sources.snapshot(&mut self.cursor);
        let line = progress_line(&self.name, &snap, (sources.dead_letters)());
        // A progress line that cannot be written (closed stderr) is not worth failing for.
        let _ = match &mut self.progress.target {
            ProgressTarget::Stderr { .. } => writeln!(std::io::stderr().lock(), "{line}"),
            ProgressTarget::Writer(w) => writeln!(w, "{line}").and_then(|()| w.flush()),
        };
    }
}

/// The facade handles of one node copy (per worker).
struct NodeHandles {
    events_in: Counter,
    events_out: Counter,
    errors: Counter,
    dropped: [Counter; 4],
    watermark: Gauge,
    lag: Option<Gauge>,
}

struct QueueHandles {
    depth: Gauge,
    capacity: Gauge,
    high_water: Gauge,
    pushed: Counter,
    delivered: Counter,
    evicted: Counter,
    rejected: Counter,
    blocked: Counter,
    blocked_ratio: Gauge,
    wait: [Gauge; 4],
    blocked_share: BlockedShare,
}

struct CheckpointHandles {
    completed: Counter,
    failed: Counter,
    last_id: Gauge,
    last_duration: Gauge,
    last_bytes: Gauge,
    last_alignment: Gauge,
}

const QUANTILES: [&str; 4] = ["0.5", "0.99", "0.999", "1"];

fn quantile_values(l: &LatencySnapshot) -> [f64; 4] {
    [l.p50_ns, l.p99_ns, l.p999_ns, l.max_ns].map(|ns| ns as f64 / 1e9)
}

struct MetricsWatcher {
    config: PublishMetrics,
    cursor: RateCursor,
    /// Handles of the registry's worker samples, node snapshots (`None`: not measured yet)
    /// and queues, by position: each list only grows, in registration order.
    nodes: Vec<NodeHandles>,
    latency: Vec<Option<[Gauge; 4]>>,
    queues: Vec<QueueHandles>,
    checkpoints: Option<CheckpointHandles>,
    uptime: Gauge,
}

impl MetricsWatcher {
    fn new(config: PublishMetrics) -> Self {
        describe();
        let uptime = metrics::gauge!("eventflux_pipeline_uptime_seconds", "pipeline" => config.pipeline.clone());
        Self {
            config,
            cursor: RateCursor::new(),
            nodes: Vec::new(),
            latency: Vec::new(),
            queues: Vec::new(),
            checkpoints: None,
            uptime,
        }
    }

    fn labels(&self, more: &[(&'static str, String)]) -> Vec<Label> {
        let mut labels = vec![Label::new("pipeline", self.config.pipeline.clone())];
        labels.extend(more.iter().map(|(k, v)| Label::new(*k, v.clone())));
        labels
    }

    fn node_handles(&self, s: &WorkerSample) -> NodeHandles {
        let base = [
            ("node", s.name.clone()),
            ("worker", s.worker.unwrap_or(0).to_string()),
        ];
        let l = self.labels(&base);
        let with_reason = |reason: &str| {
            let mut l = l.clone();
            l.push(Label::new("reason", reason.to_string()));
            metrics::counter!("eventflux_node_dropped_total", l)
        };
        NodeHandles {
            events_in: metrics::counter!("eventflux_node_events_in_total", l.clone()),
            events_out: metrics::counter!("eventflux_node_events_out_total", l.clone()),
            errors: metrics::counter!("eventflux_node_errors_total", l.clone()),
            dropped: s.dropped.map(|(r, _)| with_reason(r.as_str())),
            watermark: metrics::gauge!("eventflux_node_watermark", l.clone()),
            lag: self
                .config
                .unix_millis
                .then(|| metrics::gauge!("eventflux_node_event_time_lag_seconds", l.clone())),
        }
    }

    fn queue_handles(&self, name: &str) -> QueueHandles {
        let l = self.labels(&[("queue", name.to_string())]);
        let with = |k: &'static str, v: &str| {
            let mut l = l.clone();
            l.push(Label::new(k, v.to_string()));
            l
        };
        QueueHandles {
            depth: metrics::gauge!("eventflux_queue_depth", l.clone()),
            capacity: metrics::gauge!("eventflux_queue_capacity", l.clone()),
            high_water: metrics::gauge!("eventflux_queue_high_water", l.clone()),
            pushed: metrics::counter!("eventflux_queue_pushed_total", l.clone()),
            delivered: metrics::counter!("eventflux_queue_delivered_total", l.clone()),
            evicted: metrics::counter!("eventflux_queue_dropped_total", with("reason", "evicted")),
            rejected: metrics::counter!(
                "eventflux_queue_dropped_total",
                with("reason", "rejected")
            ),
            blocked: metrics::counter!("eventflux_queue_blocked_seconds_total", l.clone()),
            blocked_ratio: metrics::gauge!("eventflux_queue_blocked_ratio", l.clone()),
            wait: QUANTILES
                .map(|q| metrics::gauge!("eventflux_queue_wait_seconds", with("quantile", q))),
            blocked_share: BlockedShare::new(),
        }
    }

    fn checkpoint_handles(&self) -> CheckpointHandles {
        let l = self.labels(&[]);
        CheckpointHandles {
            completed: metrics::counter!("eventflux_checkpoints_completed_total", l.clone()),
            failed: metrics::counter!("eventflux_checkpoints_failed_total", l.clone()),
            last_id: metrics::gauge!("eventflux_checkpoint_last_id", l.clone()),
            last_duration: metrics::gauge!("eventflux_checkpoint_last_duration_seconds", l.clone()),
            last_bytes: metrics::gauge!("eventflux_checkpoint_last_bytes", l.clone()),
            last_alignment: metrics::gauge!(
                "eventflux_checkpoint_last_alignment_seconds",
                l.clone()
            ),
        }
    }

    fn publish_checkpoints(&mut self, stats: &CheckpointStats) {
        if self.checkpoints.is_none() {
            self.checkpoints = Some(self.checkpoint_handles());
        }
        let Some(h) = &self.checkpoints else { return };
        h.completed.absolute(stats.completed);
        h.failed.absolute(stats.failed);
        if let Some(last) = &stats.last {
            h.last_id.set(last.id as f64);
            h.last_duration.set(last.duration.as_secs_f64());
            h.last_bytes.set(last.bytes as f64);
            h.last_alignment.set(last.alignment.as_secs_f64());
        }
    }
}

/// Describes every published metric once (recorders that keep help texts show them).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        "eventflux_node_events_in_total",
        Unit::Count,
        "Events into a node."
    );
    describe_counter!(
        "eventflux_node_events_out_total",
        Unit::Count,
        "Events out of a node."
    );
    describe_counter!(
        "eventflux_node_errors_total",
        Unit::Count,
        "Dead letters of a source, failed sends of a sink, errors of a stage."
    );
    describe_counter!(
        "eventflux_node_dropped_total",
        Unit::Count,
        "Events a node dropped, by reason."
    );
    describe_gauge!(
        "eventflux_node_watermark",
        "The latest watermark a node passed on, in event-time units."
    );
    describe_gauge!(
        "eventflux_node_event_time_lag_seconds",
        Unit::Seconds,
        "Wall clock minus a node's watermark."
    );
    describe_gauge!(
        "eventflux_node_latency_seconds",
        Unit::Seconds,
        "Time since a batch's events entered the pipeline, when the node finished it."
    );
    describe_gauge!("eventflux_queue_depth", Unit::Count, "Events queued now.");
    describe_gauge!(
        "eventflux_queue_capacity",
        Unit::Count,
        "Queue capacity in events (0: unbounded)."
    );
    describe_gauge!(
        "eventflux_queue_high_water",
        Unit::Count,
        "Largest queue depth seen."
    );
    describe_counter!(
        "eventflux_queue_pushed_total",
        Unit::Count,
        "Events offered to a queue."
    );
    describe_counter!(
        "eventflux_queue_delivered_total",
        Unit::Count,
        "Events a queue handed to its consumer."
    );
    describe_counter!(
        "eventflux_queue_dropped_total",
        Unit::Count,
        "Events a queue dropped, by reason."
    );
    describe_counter!(
        "eventflux_queue_blocked_seconds_total",
        Unit::Seconds,
        "Whole seconds producers spent blocked on a full queue."
    );
    describe_gauge!(
        "eventflux_queue_blocked_ratio",
        "Share of the last interval producers spent blocked on a full queue."
    );
    describe_gauge!(
        "eventflux_queue_wait_seconds",
        Unit::Seconds,
        "Time batches waited in a queue."
    );
    describe_counter!(
        "eventflux_checkpoints_completed_total",
        Unit::Count,
        "Checkpoints completed."
    );
    describe_counter!(
        "eventflux_checkpoints_failed_total",
        Unit::Count,
        "Checkpoints failed or declined."
    );
    describe_gauge!(
        "eventflux_checkpoint_last_id",
        "Id of the last completed checkpoint."
    );
    describe_gauge!(
        "eventflux_checkpoint_last_duration_seconds",
        Unit::Seconds,
        "Duration of the last completed checkpoint."
    );
    describe_gauge!(
        "eventflux_checkpoint_last_bytes",
        Unit::Bytes,
        "State bytes the last completed checkpoint wrote."
    );
    describe_gauge!(
        "eventflux_checkpoint_last_alignment_seconds",
        Unit::Seconds,
        "Longest barrier alignment of the last completed checkpoint."
    );
    describe_gauge!(
        "eventflux_pipeline_uptime_seconds",
        Unit::Seconds,
        "Seconds since the pipeline was built."
    );
}

fn unix_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Watcher for MetricsWatcher {
    fn interval(&self) -> Duration {
        self.config.every
    }

    fn observe(&mut self, sources: &Sources, _last: bool) {
        let snap = sources.snapshot(&mut self.cursor);
        self.uptime.set(snap.elapsed_secs);
        let now_ms = self.config.unix_millis.then(unix_millis_now);
        let samples = sources.registry.worker_samples();
        while self.nodes.len() < samples.len() {
            let h = self.node_handles(&samples[self.nodes.len()]);
            self.nodes.push(h);
        }
        for (s, h) in samples.iter().zip(&self.nodes) {
            h.events_in.absolute(s.events_in);
            h.events_out.absolute(s.events_out);
            h.errors.absolute(s.errors);
            for (c, (_, n)) in h.dropped.iter().zip(s.dropped) {
                c.absolute(n);
            }
            if let Some(w) = s.watermark {
                h.watermark.set(w as f64);
                if let (Some(lag), Some(now)) = (&h.lag, now_ms) {
                    lag.set(now.saturating_sub(w) as f64 / 1e3);
                }
            }
        }
        self.latency.resize_with(snap.nodes.len(), || None);
        for (i, n) in snap.nodes.iter().enumerate() {
            if n.latency.count == 0 {
                continue;
            }
            if self.latency[i].is_none() {
                let l = self.labels(&[("node", n.name.clone())]);
                self.latency[i] = Some(QUANTILES.map(|q| {
                    let mut l = l.clone();
                    l.push(Label::new("quantile", q));
                    metrics::gauge!("eventflux_node_latency_seconds", l)
                }));
            }
            if let Some(gauges) = &self.latency[i] {
                for (g, v) in gauges.iter().zip(quantile_values(&n.latency)) {
                    g.set(v);
                }
            }
        }
        while self.queues.len() < snap.queues.len() {
            let h = self.queue_handles(&snap.queues[self.queues.len()].name);
            self.queues.push(h);
        }
        for (q, h) in snap.queues.iter().zip(&mut self.queues) {
            h.depth.set(q.depth as f64);
            h.capacity.set(q.capacity_events as f64);
            h.high_water.set(q.high_water as f64);
            h.pushed.absolute(q.pushed);
            h.delivered.absolute(q.delivered);
            h.evicted.absolute(q.dropped_evicted);
            h.rejected.absolute(q.dropped_rejected);
            h.blocked.absolute(q.blocked_ns / 1_000_000_000);
            h.blocked_ratio.set(h.blocked_share.update(q.blocked_ns));
            for (g, v) in h.wait.iter().zip(quantile_values(&q.wait)) {
                g.set(v);
            }
        }
        if let Some(stats) = &snap.checkpoints {
            self.publish_checkpoints(stats);
        }
    }
}

/// What a pipeline is asked to report while it runs.
#[derive(Debug, Default)]
pub(crate) struct Watching {
    pub(crate) metrics: Option<PublishMetrics>,
    pub(crate) progress: Option<Progress>,
}

impl Watching {
    fn watchers(self) -> Vec<Box<dyn Watcher>> {
        let mut w: Vec<Box<dyn Watcher>> = Vec::new();
        let name = self
            .progress
            .as_ref()
            .and_then(|p| p.name.clone())
            .or_else(|| self.metrics.as_ref().map(|m| m.pipeline.clone()))
            .unwrap_or_else(|| "pipeline".to_string());
        if let Some(m) = self.metrics {
            w.push(Box::new(MetricsWatcher::new(m)));
        }
        if let Some(p) = self.progress.filter(Progress::active) {
            w.push(Box::new(ProgressWatcher {
                progress: p,
                cursor: RateCursor::new(),
                name,
            }));
        }
        w
    }
}

/// The monitor thread; [`finish`](Monitor::finish) reads once more and stops it.
pub(crate) struct Monitor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Starts the monitor, or nothing if there is nothing to watch.
    pub(crate) fn start(watching: Watching, sources: Sources) -> Option<Self> {
        let mut watchers = watching.watchers();
        if watchers.is_empty() {
            return None;
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ef-monitor".into())
            .spawn(move || {
                let start = Instant::now();
                let mut due: Vec<Instant> = watchers.iter().map(|w| start + w.interval()).collect();
                let (lock, cvar) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if *stopped {
                        break;
                    }
                    let next = due.iter().copied().min().unwrap_or(start);
                    let wait = next.saturating_duration_since(Instant::now());
                    if !wait.is_zero() {
                        stopped = cvar
                            .wait_timeout(stopped, wait)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                        continue;
                    }
                    drop(stopped);
                    let now = Instant::now();
                    for (w, d) in watchers.iter_mut().zip(due.iter_mut()) {
                        if *d <= now {
                            w.observe(&sources, false);
                            *d = now + w.interval();
                        }
                    }
                    stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                }
                drop(stopped);
                for w in &mut watchers {
                    w.observe(&sources, true);
                }
            });
        match thread {
            Ok(t) => Some(Self {
                stop,
                thread: Some(t),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the metrics monitor thread; not reporting");
                None
            }
        }
    }

    /// Reads once more (the final values) and stops the thread.
    pub(crate) fn finish(&mut self) {
        let Some(t) = self.thread.take() else { return };
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cvar.notify_all();
        // A panic in a watcher (a recorder's bug) must not fail the pipeline's result.
        let _ = t.join();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.finish();
    }
}
