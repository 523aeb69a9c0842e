//! The executor: runs fused segments on threads joined by queues, with a full lifecycle.
//!
//! A pipeline is a set of **segments**. Each segment is one fused chain — a source or a queue's
//! consumer, stages, and an [`Output`] — and runs on its own thread (a single-segment pipeline
//! runs on the caller's thread). This is the runtime form of what `pipeline!` generates; it can
//! also be assembled by hand with [`PipelineBuilder`].
//!
//! # Lifecycle
//! 1. Non-source segments start first and open their sinks; then source segments open their
//!    sinks and sources. If any `open` fails, nothing is read and the error is returned.
//! 2. Sources run until exhausted (or until [`PipelineHandle::stop`]); each then ends its stream,
//!    and end of stream flows through every queue, draining it: every event read is processed.
//! 3. [`Pipeline::run`] / [`PipelineHandle::join`] return a [`RunReport`].
//!
//! A panic or error anywhere stops every thread (waits give up, loops check an abort flag once
//! per batch) and comes back as `Err` — the first real error, not the consequent aborts. No
//! thread outlives `run()`/`join()`. Idle threads park: an idle pipeline uses no CPU.
//!
//! ```
//! use eventflux_runtime::prelude::*;
//!
//! let mut p = PipelineBuilder::new(PipelineConfig::default());
//! let (tx, rx) = p.queue::<u64>("evens");
//! let sink = CollectSink::new();
//! let got = sink.handle();
//! let out = p.sink("out", sink);
//! p.add_source("numbers", IterSource::new(0..10u64), filter(|x: &u64| x % 2 == 0), QueueOutput::new(tx));
//! p.add_queue_segment("square", rx, map(|x: u64| x * x), out);
//! let report = p.build()?.run()?;
//! assert_eq!(got.take(), [0, 4, 16, 36, 64]);
//! assert_eq!(report.events_out, 5);
//! # Ok::<(), eventflux_runtime::PipelineError>(())
//! ```

pub mod checkpoint;
pub mod key_groups;
mod lifecycle;
pub mod output;
mod segment;
pub(crate) mod site;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use key_groups::{KEY_GROUPS, KeyGroups, key_group, key_groups_of, worker_of};
pub(crate) use lifecycle::Lifecycle;
pub use output::{Busy, FanOut, FanOutItem, KeyedOutput, Output, QueueOutput, SinkOutput, Then};
pub use segment::{QueueSegment, SourceSegment};

use crate::backpressure::Backpressure;
use crate::config::PipelineConfig;
use crate::error::{ConfigError, PipelineError};
use crate::io::{DeadLetter, DeadLetters};
use crate::metrics::{MetricsRegistry, MetricsSnapshot, NodeKind};
use crate::queue::{EventQueue, QueueOptions, QueueReceiver, QueueSender};
use crate::source::Source;
use crate::stage::{Metered, Named, Stage};
use crate::state::Restore;

/// What a segment thread sees of its pipeline.
pub struct Runtime {
    pub(crate) config: PipelineConfig,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) dead_letters: DeadLetters,
    /// Named stages by id, to name the stage a panic came from.
    pub(crate) stage_names: std::collections::BTreeMap<u32, String>,
    /// Every sink with its busy flag, to name a sink that panicked in `send`.
    pub(crate) sinks: Vec<(String, Arc<Busy>)>,
    /// The checkpoint coordinator, when checkpoints are on.
    pub(crate) checkpoints: Option<Arc<checkpoint::Coordinator>>,
    /// The checkpoint the run resumed from (0: it started afresh); sinks recover to it.
    pub(crate) recovered: u64,
}

/// One fused chain on one thread (object-safe: the executor holds `Box<dyn Segment>`, one
/// virtual call per segment run, none per event).
pub trait Segment: Send {
    /// The segment's name (thread name, errors, metrics).
    fn name(&self) -> &str;
    /// Whether it is driven by a source (started last).
    fn is_source(&self) -> bool;
    /// Opens its sinks (and source).
    fn open(&mut self) -> Result<(), PipelineError>;
    /// Whether it is driven by a side output of the pipeline (a late or dead-letter source),
    /// which produces no dead letters of its own.
    fn is_side_output(&self) -> bool {
        false
    }
    /// Runs to end of stream, stop or abort, consuming the segment. On failure it aborts its
    /// output itself (sinks get `abort`, never `close`; queues are abandoned).
    fn run(self: Box<Self>, rt: &Runtime) -> Result<(), PipelineError>;
    /// Aborts the output of a segment that will not run (its own or another segment's `open`
    /// failed): sinks that opened get `abort`.
    fn abort(&mut self);
    /// While the pipeline is built: tells the chain whether its input carries watermarks and
    /// records on its output queues whether theirs does (see
    /// [`Stage::event_time`]). Called until nothing changes.
    fn plan_event_time(&mut self);
    /// A source segment whose source cannot replay (see [`Source::position`]).
    fn at_most_once(&self) -> bool {
        false
    }
    /// Before the run, when resuming from a checkpoint: restores the states of the segment's
    /// stages from `states` and seeks its source to `position`. (Its sinks recover when the
    /// segment starts.)
    fn restore(
        &mut self,
        states: &mut Restore,
        position: Option<&serde_json::Value>,
    ) -> Result<(), PipelineError>;
}

/// Per-queue settings overriding the pipeline's (a `=>` edge's `[capacity = …]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSettings {
    /// Capacity in events.
    pub capacity: Option<usize>,
    /// Events per batch.
    pub batch_size: Option<usize>,
    /// Backpressure strategy.
    pub backpressure: Option<Backpressure>,
}

/// Assembles a pipeline from segments. See the [module docs](self).
pub struct PipelineBuilder<'a> {
    config: PipelineConfig,
    registry: Arc<MetricsRegistry>,
    lifecycle: Arc<Lifecycle>,
    dead_letters: DeadLetters,
    segments: Vec<Box<dyn Segment + 'a>>,
    busy: std::cell::RefCell<Vec<(String, Arc<Busy>)>>,
    /// A queue whose settings could not be honoured; `build` returns it.
    rejected: std::cell::RefCell<Option<ConfigError>>,
    node_ids: site::NodeIds,
    /// The `dead_letters()` source node, if any.
    dead_letter_node: Option<String>,
    /// Per source name: the counter of what it emits, read by the stage it feeds
    /// ([`source_edge`](Self::source_edge)).
    source_edges: std::cell::RefCell<Vec<(String, Arc<crate::metrics::NodeMetrics>)>>,
    /// A problem found while assembling; `build` returns it.
    invalid: Option<String>,
    /// The keyed worker whose copies are being built (labels their metrics).
    worker: std::cell::Cell<Option<u16>>,
}

impl fmt::Debug for PipelineBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("config", &self.config)
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl<'a> PipelineBuilder<'a> {
    /// A builder for a pipeline running under `config`.
    pub fn new(config: PipelineConfig) -> Self {
        Self {
            config,
            registry: Arc::new(MetricsRegistry::new()),
            lifecycle: Arc::new(Lifecycle::new()),
            dead_letters: DeadLetters::collect(),
            segments: Vec::new(),
            busy: std::cell::RefCell::default(),
            rejected: std::cell::RefCell::default(),
            node_ids: site::NodeIds::default(),
            dead_letter_node: None,
            source_edges: Default::default(),
            invalid: None,
            worker: std::cell::Cell::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The metrics registry (for registering custom nodes).
    pub fn registry(&self) -> &Arc<MetricsRegistry> {
        &self.registry
    }

    /// Registers a node's counters, labelled with the keyed worker being built, if any.
    fn node_metrics(&self, name: &str, kind: NodeKind) -> Arc<crate::metrics::NodeMetrics> {
        self.registry.node_in(name, kind, self.worker.get())
    }

    /// Marks the nodes built from now on as copies in keyed worker `worker` (`None`: outside
    /// keyed segments), for the `worker` label of their metrics. `pipeline!` sets it.
    #[doc(hidden)]
    pub fn set_worker(&self, worker: Option<usize>) {
        self.worker
            .set(worker.map(|w| u16::try_from(w).unwrap_or(u16::MAX)));
    }

    /// Records the first assembly problem; `build` returns it.
    fn invalid(&mut self, message: &str) {
        self.invalid.get_or_insert_with(|| message.to_string());
    }

    /// Sends dead letters to `dead_letters` instead of collecting them in the report.
    pub fn dead_letters(&mut self, dead_letters: DeadLetters) {
        if self.dead_letter_node.is_some() {
            self.invalid(
                "dead letters go to a `dead_letters()` node already; remove it or the \
                 `dead_letters` setting",
            );
        }
        self.dead_letters = dead_letters;
    }

    /// A queue with the pipeline's capacity, batch size and backpressure.
    ///
    /// If a queue of `T` under these settings would exceed the configuration's
    /// [`queue_memory_limit`](PipelineConfig::queue_memory_limit), nothing large is allocated
    /// and [`build`](Self::build) returns the error naming the setting.
    pub fn queue<T>(&self, name: &str) -> (QueueSender<T>, QueueReceiver<T>) {
        let (capacity, batch) = (self.config.queue_capacity(), self.config.batch_size());
        match self
            .config
            .check_queue_memory(capacity, batch, std::mem::size_of::<T>())
        {
            Ok(()) => self.make_queue(name, capacity, batch, self.config.backpressure()),
            Err(e) => {
                self.rejected.borrow_mut().get_or_insert(e);
                self.make_queue(name, 1, 1, self.config.backpressure())
            }
        }
    }

    /// A queue with some settings overridden; the error names the bad setting.
    pub fn queue_with<T>(
        &self,
        name: &str,
        settings: QueueSettings,
    ) -> Result<(QueueSender<T>, QueueReceiver<T>), ConfigError> {
        let config = PipelineConfig::builder()
            .queue_capacity(settings.capacity.unwrap_or(self.config.queue_capacity()))
            .batch_size(settings.batch_size.unwrap_or(self.config.batch_size()))
            .backpressure(settings.backpressure.unwrap_or(self.config.backpressure()))
            .idle(self.config.idle())
            .queue_memory_limit(self.config.queue_memory_limit())
            .build()?;
        config.check_queue_memory(
            config.queue_capacity(),
            config.batch_size(),
            std::mem::size_of::<T>(),
        )?;
        Ok(self.make_queue(
            name,
            config.queue_capacity(),
            config.batch_size(),
            config.backpressure(),
        ))
    }

    fn make_queue<T>(
        &self,
        name: &str,
        capacity: usize,
        batch_size: usize,
        backpressure: Backpressure,
    ) -> (QueueSender<T>, QueueReceiver<T>) {
        let slots = capacity.div_ceil(batch_size);
        let capacity_events = if backpressure == Backpressure::Unbounded {
            0
        } else {
            (slots * batch_size) as u64
        };
        let metrics = self.registry.queue(name, capacity_events);
        EventQueue::with_parts(
            QueueOptions {
                name: name.to_string(),
                slots,
                batch_size,
                backpressure,
                idle: self.config.idle(),
                timing: self.config.metrics(),
            },
            metrics,
            Arc::clone(&self.lifecycle.abort),
        )
    }

    /// A sink as an output, metered under `name`.
    pub fn sink<K>(&self, name: &str, sink: K) -> SinkOutput<K> {
        let metrics = self
            .config
            .metrics()
            .then(|| self.node_metrics(name, NodeKind::Sink));
        let out = SinkOutput::new(name, sink, metrics);
        self.busy.borrow_mut().push((name.to_string(), out.busy()));
        out
    }

    /// A stage metered and named `name` (errors and panics in it name the node).
    pub fn stage<S>(&self, name: &str, stage: S) -> Named<Metered<S>> {
        let metered = Metered::new(stage, self.node_metrics(name, NodeKind::Stage));
        self.named(name, metered)
    }

    /// A stage named `name`, not metered.
    pub fn named<S>(&self, name: &str, stage: S) -> Named<S> {
        Named::with_id(name, self.node_ids.register(name), stage)
    }

    /// A stage named `name` with the compile-time id `ID` (`pipeline!` numbers its nodes
    /// 1, 2, …; ids from 2²⁰ on are the builder's own): its panic guard then holds a constant.
    /// `ID = 0` is [`named`](Self::named).
    #[doc(hidden)]
    pub fn named_at<S, const ID: u32>(&self, name: &str, stage: S) -> Named<S, ID> {
        let id = if ID == 0 {
            self.node_ids.register(name)
        } else {
            // The guard records `ID` itself, so that is the id to name.
            self.node_ids.register_at(ID, name);
            ID
        };
        Named::with_id(name, id, stage)
    }

    /// [`named_at`](Self::named_at) for a metered stage.
    #[doc(hidden)]
    pub fn stage_at<S, const ID: u32>(&self, name: &str, stage: S) -> Named<Metered<S>, ID> {
        let metered = Metered::new(stage, self.node_metrics(name, NodeKind::Stage));
        self.named_at::<_, ID>(name, metered)
    }

    /// The counter of what source `name` emits, published before the stages it feeds finish
    /// each batch: the first stage fused after the source takes it as its input count
    /// ([`stage_after_at`](Self::stage_after_at)) instead of counting its input again.
    #[doc(hidden)]
    pub fn source_edge(&self, name: &str) -> Arc<crate::metrics::NodeMetrics> {
        let edge = crate::metrics::MetricsRegistry::detached(name);
        self.source_edges
            .borrow_mut()
            .push((name.to_string(), Arc::clone(&edge)));
        edge
    }

    /// [`stage_at`](Self::stage_at) for a stage fed only by the metered stage `upstream`, fused
    /// before it: the edge is counted once (see [`Metered::after`]).
    #[doc(hidden)]
    pub fn stage_after_at<S, const ID: u32>(
        &self,
        name: &str,
        stage: S,
        upstream: &std::sync::Arc<crate::metrics::NodeMetrics>,
    ) -> Named<Metered<S, false>, ID> {
        let node = self.node_metrics(name, NodeKind::Stage);
        let metered = Metered::after(stage, node, std::sync::Arc::clone(upstream));
        self.named_at::<_, ID>(name, metered)
    }

    /// Adds a segment driven by `source`: its events go through `chain` into `output`.
    pub fn add_source<S, C, O>(&mut self, name: &str, mut source: S, chain: C, output: O)
    where
        S: Source + 'a,
        C: Stage<S::Item> + Send + 'a,
        O: Output<C::Out> + 'a,
    {
        if let Some(route) = source.dead_letter_route() {
            if let Some(first) = &self.dead_letter_node {
                let msg = format!(
                    "`{name}` and `{first}` are both `dead_letters()` nodes; a pipeline has one \
                     dead-letter output: connect one node to several sinks instead"
                );
                self.invalid(&msg);
            }
            self.dead_letter_node = Some(name.to_string());
            self.dead_letters = DeadLetters::to_node(route);
        }
        let kind = if source.is_side_output() {
            NodeKind::SideOutput
        } else {
            NodeKind::Source
        };
        let metrics = Some(self.node_metrics(name, kind));
        let edge = {
            let mut edges = self.source_edges.borrow_mut();
            let at = edges.iter().position(|(n, _)| n == name);
            at.map(|i| edges.swap_remove(i).1)
        };
        self.segments.push(Box::new(SourceSegment {
            name: name.to_string(),
            source,
            chain,
            output,
            metrics,
            edge,
        }));
    }

    /// Adds a segment consuming `input`: its events go through `chain` into `output`.
    pub fn add_queue_segment<T, C, O>(
        &mut self,
        name: &str,
        input: QueueReceiver<T>,
        chain: C,
        output: O,
    ) where
        T: Send + 'a,
        C: Stage<T> + Send + 'a,
        O: Output<C::Out> + 'a,
    {
        self.segments.push(Box::new(QueueSegment {
            name: name.to_string(),
            input,
            chain,
            output,
        }));
    }

    /// Adds any segment.
    pub fn add_segment(&mut self, segment: Box<dyn Segment + 'a>) {
        self.segments.push(segment);
    }

    /// Checks the assembly and returns a runnable pipeline.
    pub fn build(self) -> Result<Pipeline<'a>, PipelineError> {
        self.config.validate()?;
        if let Some(e) = self.rejected.into_inner() {
            return Err(e.into());
        }
        if let Some(message) = self.invalid {
            return Err(PipelineError::Invalid(message));
        }
        let mut segments = self.segments;
        // Whether watermarks flow only grows along queues; one pass per segment reaches the
        // fixpoint whatever order the segments were added in.
        for _ in 0..segments.len() {
            for s in &mut segments {
                s.plan_event_time();
            }
        }
        if !segments.iter().any(|s| s.is_source()) {
            return Err(PipelineError::Invalid(
                "a pipeline needs at least one source segment".into(),
            ));
        }
        // Every source that is not a side output may send dead letters; a dead-letter node's
        // stream ends when all of them have ended.
        self.dead_letters.expect_writers(
            segments
                .iter()
                .filter(|s| s.is_source() && !s.is_side_output())
                .count(),
        );
        let mut names: Vec<&str> = segments.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(PipelineError::Invalid(format!(
                "two segments are named `{}`; segment names must be unique",
                w[0]
            )));
        }
        Ok(Pipeline {
            runtime: Arc::new(Runtime {
                config: self.config,
                lifecycle: self.lifecycle,
                dead_letters: self.dead_letters,
                stage_names: self.node_ids.into_names(),
                sinks: self.busy.into_inner(),
                checkpoints: None,
                recovered: 0,
            }),
            registry: self.registry,
            segments,
            watching: crate::observe::Watching::default(),
        })
    }
}

/// A pipeline ready to run. See the [module docs](self).
pub struct Pipeline<'a> {
    runtime: Arc<Runtime>,
    registry: Arc<MetricsRegistry>,
    segments: Vec<Box<dyn Segment + 'a>>,
    watching: crate::observe::Watching,
}

impl fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field(
                "segments",
                &self.segments.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

/// The error for a panic caught on `segment`'s thread, naming the node it came from.
pub(crate) fn panicked(
    rt: &Runtime,
    segment: &str,
    payload: &(dyn std::any::Any + Send),
) -> PipelineError {
    // The innermost guarded node the panic unwound through; for a sink's `send`, the sink
    // opened on this thread (or all of them, if the segment feeds several).
    let node = site::take().and_then(|site| match site {
        site::Site::Name(name) => Some(name),
        site::Site::Input => None,
        site::Site::Stage(id) => rt.stage_names.get(&id).cloned(),
        site::Site::Sink => {
            let here: Vec<&str> = rt
                .sinks
                .iter()
                .filter(|(_, busy)| busy.opened_here())
                .map(|(name, _)| name.as_str())
                .collect();
            (!here.is_empty()).then(|| here.join("` or `"))
        }
    });
    PipelineError::Panicked {
        node: node.unwrap_or_else(|| segment.to_string()),
        segment: segment.to_string(),
        message: panic_message(payload),
    }
}

/// Aborts a segment that will not run (its `open`, or another's, failed), recording a panic in
/// a sink's `abort` like any other failure.
fn abort_unrun(rt: &Runtime, name: &str, segment: &mut (dyn Segment + '_)) {
    let _ = guarded(rt, name, || {
        segment.abort();
        Ok(())
    });
}

/// Fills in the segment (and, for an unnamed stage, the node) of an error raised inside it.
fn in_segment(e: PipelineError, segment: &str) -> PipelineError {
    match e {
        PipelineError::Stage {
            node,
            segment: s,
            source,
        } if s.is_empty() => PipelineError::Stage {
            node: if node.is_empty() {
                segment.to_string()
            } else {
                node
            },
            segment: segment.to_string(),
            source,
        },
        other => other,
    }
}

/// Runs one step of a segment, turning panics and errors into a recorded failure.
fn guarded(
    rt: &Runtime,
    name: &str,
    step: impl FnOnce() -> Result<(), PipelineError>,
) -> Result<(), ()> {
    match catch_unwind(AssertUnwindSafe(step)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            rt.lifecycle.fail(in_segment(e, name));
            Err(())
        }
        Err(payload) => {
            rt.lifecycle.fail(panicked(rt, name, &*payload));
            Err(())
        }
    }
}

/// The body of one segment's thread: open, report whether it opened, run (or abort if it
/// did not open), mark it finished.
fn segment_thread<'a>(
    rt: &Arc<Runtime>,
    mut segment: Box<dyn Segment + 'a>,
    ready: mpsc::Sender<bool>,
) -> impl FnOnce() + Send + 'a {
    let rt = Arc::clone(rt);
    let parent = tracing::Span::current();
    move || {
        let name = segment.name().to_string();
        let span = tracing::info_span!(parent: &parent, "segment", segment = %name);
        let _entered = span.enter();
        rt.lifecycle.register_thread(thread::current());
        let opened = guarded(&rt, &name, || segment.open()).is_ok();
        let _ = ready.send(opened);
        if opened {
            tracing::debug!("segment opened; running");
            let rt_ref = &*rt;
            let _ = guarded(rt_ref, &name, move || segment.run(rt_ref));
        } else {
            abort_unrun(&rt, &name, &mut *segment);
        }
        rt.lifecycle.finished(&name);
        tracing::debug!("segment finished");
    }
}

/// Starts every segment on its own thread through `spawn` (a named thread, scoped or not):
/// the queue-fed segments first, then — once all of those opened — the sources. Returns
/// whether everything opened; if not, the pipeline is aborted.
fn start_segments<'a, F>(
    rt: &Arc<Runtime>,
    segments: Vec<Box<dyn Segment + 'a>>,
    mut spawn: F,
) -> bool
where
    F: FnMut(String, Box<dyn FnOnce() + Send + 'a>) -> std::io::Result<()>,
{
    let (sources, others): (Vec<_>, Vec<_>) = segments.into_iter().partition(|s| s.is_source());
    tracing::info!(
        segments = sources.len() + others.len(),
        sources = sources.len(),
        "pipeline opening"
    );
    for group in [others, sources] {
        let (ready_tx, ready_rx) = mpsc::channel::<bool>();
        let count = group.len();
        for segment in group {
            let name = segment.name().to_string();
            rt.lifecycle.starting(&name);
            let body = segment_thread(rt, segment, ready_tx.clone());
            if let Err(source) = spawn(name.clone(), Box::new(body)) {
                rt.lifecycle.finished(&name);
                rt.lifecycle.fail(PipelineError::Spawn {
                    segment: name,
                    source,
                });
            }
        }
        drop(ready_tx);
        // A thread that could not be spawned never reports; its sender is gone with it.
        let all_opened = ready_rx.iter().take(count).all(|ok| ok);
        if !all_opened || rt.lifecycle.aborted() {
            tracing::error!("a segment failed to open; nothing was read");
            rt.lifecycle.abort();
            return false;
        }
    }
    tracing::info!("pipeline started");
    true
}

/// What [`Pipeline::checkpoints`] does with the checkpoints already in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Resume from the newest checkpoint that verifies; start from the beginning if the
    /// directory holds no checkpoint at all, or if the job it holds ran to its end. A directory
    /// whose checkpoints are all damaged is an error naming each one — never a silent fresh
    /// start.
    ResumeOrStart,
    /// Resume from the newest checkpoint that verifies; an error if there is none, or if the
    /// job ran to its end.
    Resume,
    /// Start from the beginning whatever the directory holds: its checkpoints are deleted (so
    /// that a later resume cannot pick up one of an earlier run).
    StartFresh,
}

/// The states of checkpoint `m` whose ids start with `prefix` (a segment's), by the rest of
/// their id: each one's parts (a full copy and deltas, or one), read, checked and unframed.
fn states_under(
    store: &crate::state::LocalDir,
    m: &crate::state::Manifest,
    prefix: &str,
) -> Result<std::collections::BTreeMap<String, Vec<Vec<u8>>>, String> {
    use crate::state::StateBackend;
    let mut parts = std::collections::BTreeMap::new();
    for s in m.states.iter().filter(|s| s.state.starts_with(prefix)) {
        let id = &s.state[prefix.len()..];
        if parts.contains_key(id) {
            continue; // another part of an incremental state, read with the first
        }
        let chain = store.get_all(m, &s.state).map_err(|e| e.to_string())?;
        let payloads = chain
            .iter()
            .map(|framed| {
                crate::state::unframe(framed)
                    .map(std::borrow::Cow::into_owned)
                    .map_err(|e| format!("`{}`: {e}", s.state))
            })
            .collect::<Result<Vec<_>, _>>()?;
        parts.insert(id.to_string(), payloads);
    }
    Ok(parts)
}

/// The states segment `name` restores from checkpoint `m` (each id's parts, by the id inside
/// the segment), and whether they are relocated (a keyed segment with a different number of
/// workers than when `m` was taken: its incremental states then save in full next time).
/// Adds the ids it takes to `claimed`.
///
/// A keyed segment (`base#worker`) takes its key groups' states from every worker that saved
/// them (only its own when the number of workers is unchanged), and the states it keeps per
/// worker — nodes after a fan-out inside the workers — from its own worker index, which is
/// possible only with the same number of workers.
fn segment_states(
    store: &crate::state::LocalDir,
    m: &crate::state::Manifest,
    name: &str,
    workers_now: &std::collections::BTreeMap<String, usize>,
    claimed: &mut std::collections::BTreeSet<String>,
) -> Result<(crate::state::Chains, bool), String> {
    use key_groups::GROUP_STATE;
    let own = |prefix: &str, claimed: &mut std::collections::BTreeSet<String>| {
        let parts = states_under(store, m, prefix)?;
        claimed.extend(parts.keys().map(|id| format!("{prefix}{id}")));
        Ok::<_, String>(parts)
    };
    let Some((base, worker)) = checkpoint::keyed_worker(name) else {
        return Ok((own(&format!("{name}/"), claimed)?, false));
    };
    let now = workers_now.get(base).copied().unwrap_or(1);
    let then = m.workers.get(base).copied();
    if then == Some(now) {
        return Ok((own(&format!("{name}/"), claimed)?, false));
    }
    // Rescaled (or keyed since the checkpoint: no old workers): every old worker's key-group
    // states, each worker keeping its own groups. Per-worker state cannot follow: worker 0
    // (there always is one) reports it; the others only mark it read.
    let then = then.unwrap_or(0);
    let mut parts = crate::state::Chains::new();
    for old in 0..then {
        for (id, chain) in own(&format!("{base}#{old}/"), claimed)? {
            if id.starts_with(GROUP_STATE) {
                parts.entry(id).or_default().extend(chain);
            } else if worker == "0" {
                return Err(format!(
                    "the keyed workers of `{base}` keep state `{id}` per worker (a node after \
                     a fan-out inside the workers), so this checkpoint, taken with {then} \
                     workers, restores only into {then} workers, not {now}"
                ));
            }
        }
    }
    Ok((parts, true))
}

impl<'a> Pipeline<'a> {
    /// Takes checkpoints into the directory `dir` (created if needed; locked against other
    /// processes), every [`checkpoint_interval`](crate::PipelineConfigBuilder::checkpoint_interval)
    /// and on [`PipelineHandle::checkpoint`], and first resumes from the directory's newest
    /// checkpoint as `recovery` says: every stage's state is restored, every source sought to
    /// its recorded position, and sinks recover (commit what the checkpoint covers, discard
    /// what followed).
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = PipelineConfig::default();
    /// let (source, input) = ChannelSource::<u64>::with_config(&config);
    /// let sums = CollectSink::new();
    /// let got = sums.handle();
    /// let mut p = PipelineBuilder::new(config);
    /// let out = p.sink("out", sums);
    /// let sum = p.named("sum", stateful(0u64, |s: &mut u64, x: u64| { *s += x; Some(*s) }));
    /// p.add_source("src", source, sum, out);
    /// let handle = p.build()?.checkpoints(dir.path(), Recovery::ResumeOrStart)?.spawn()?;
    /// input.send(5).unwrap();
    /// let info = handle.checkpoint()?; // every stage's state, durable in `dir`
    /// assert_eq!(info.id, 1);
    /// input.send(2).unwrap();
    /// input.close();
    /// let report = handle.join()?;
    /// assert_eq!(report.checkpoints.completed, 1);
    /// assert_eq!(got.take(), [5, 7]);
    /// # Ok::<(), PipelineError>(())
    /// ```
    pub fn checkpoints(
        mut self,
        dir: impl AsRef<std::path::Path>,
        recovery: Recovery,
    ) -> Result<Self, PipelineError> {
        use crate::state::{LocalDir, StateBackend};
        let config = self.runtime.config.clone();
        let mut store = LocalDir::open(dir.as_ref(), config.checkpoints_kept())
            .map_err(|e| PipelineError::Checkpoint(e.to_string()))?;
        if store.is_finished() && recovery == Recovery::Resume {
            return Err(PipelineError::Checkpoint(format!(
                "the job in `{}` ran to its end: there is nothing to resume (run it again with \
                 `Recovery::ResumeOrStart` or `Recovery::StartFresh`)",
                dir.as_ref().display()
            )));
        }
        // A fresh start, asked for or after a job that finished: no earlier checkpoint may be
        // resumed from later.
        if recovery == Recovery::StartFresh || store.is_finished() {
            store
                .clear()
                .map_err(|e| PipelineError::Checkpoint(e.to_string()))?;
        }
        let latest = match (store.latest(), recovery) {
            (_, Recovery::StartFresh) => None,
            (Ok(Some(m)), _) => Some(m),
            (Ok(None), Recovery::ResumeOrStart) => None,
            (Ok(None), Recovery::Resume) => {
                return Err(PipelineError::Checkpoint(format!(
                    "no checkpoint to resume from in `{}`",
                    dir.as_ref().display()
                )));
            }
            (Err(e), _) => return Err(PipelineError::Checkpoint(e.to_string())),
        };
        let mut last = store
            .checkpoints()
            .map_or(0, |ids| ids.last().copied().unwrap_or(0));
        if let Some(m) = &latest {
            last = last.max(m.id);
            self.restore_from(&store, m)?;
        }
        let names: Vec<String> = self.segments.iter().map(|s| s.name().to_string()).collect();
        let at_most_once: Vec<String> = self
            .segments
            .iter()
            .filter(|s| s.at_most_once())
            .map(|s| s.name().to_string())
            .collect();
        let coordinator = checkpoint::Coordinator::new(Box::new(store), &config, last, names);
        let rt = Arc::get_mut(&mut self.runtime)
            .ok_or_else(|| PipelineError::Invalid("the pipeline is already running".into()))?;
        coordinator.set_at_most_once(at_most_once);
        rt.checkpoints = Some(Arc::new(coordinator));
        rt.recovered = latest.map_or(0, |m| m.id);
        Ok(self)
    }

    /// Sets the checkpoint interval (as
    /// [`PipelineConfigBuilder::checkpoint_interval`](crate::PipelineConfigBuilder::checkpoint_interval),
    /// for an interval known only at run time: `pipeline!`'s `config` takes literals). Call it
    /// before [`checkpoints`](Self::checkpoints).
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventflux_runtime::prelude::*;
    /// let mut p = PipelineBuilder::new(PipelineConfig::default());
    /// let out = p.sink("out", CollectSink::<u8>::new());
    /// p.add_source("src", IterSource::new(0..3u8), Identity, out);
    /// let p = p.build()?.with_checkpoint_interval(Duration::from_millis(250))?;
    /// assert_eq!(p.config().checkpoint_interval(), Some(Duration::from_millis(250)));
    /// assert!(p.with_checkpoint_interval(Duration::ZERO).is_err());
    /// # Ok::<(), PipelineError>(())
    /// ```
    pub fn with_checkpoint_interval(mut self, every: Duration) -> Result<Self, PipelineError> {
        let rt = Arc::get_mut(&mut self.runtime).ok_or_else(|| {
            PipelineError::Invalid("the pipeline already checkpoints or runs".into())
        })?;
        let mut config = rt.config.clone();
        config.set_checkpoint_interval(every);
        config.validate()?;
        rt.config = config;
        Ok(self)
    }

    /// Restores every segment from checkpoint `m`; every saved state must find its stage.
    fn restore_from(
        &mut self,
        store: &crate::state::LocalDir,
        m: &crate::state::Manifest,
    ) -> Result<(), PipelineError> {
        let fail = |e: String| PipelineError::Checkpoint(format!("checkpoint {}: {e}", m.id));
        let mut unclaimed: Vec<String> = Vec::new();
        let mut claimed = std::collections::BTreeSet::new();
        let workers_now = checkpoint::keyed_workers(self.segments.iter().map(|s| s.name()));
        for segment in &mut self.segments {
            let name = segment.name().to_string();
            let prefix = format!("{name}/");
            let (parts, relocated) =
                segment_states(store, m, &name, &workers_now, &mut claimed).map_err(fail)?;
            let mut restore = Restore::with_chains(parts, m.id).relocated(relocated);
            // User code runs here (stages' `restore`, sources' `seek`): a panic in it is an
            // error naming the segment, not a panic of the caller.
            let restored = catch_unwind(AssertUnwindSafe(|| {
                segment.restore(&mut restore, m.sources.get(&name))
            }));
            match restored {
                Ok(r) => r?,
                Err(payload) => {
                    return Err(fail(format!(
                        "restoring segment `{name}` panicked: {}",
                        panic_message(&*payload)
                    )));
                }
            }
            unclaimed.extend(restore.unused().iter().map(|id| format!("{prefix}{id}")));
        }
        unclaimed.extend(
            m.states
                .iter()
                .filter(|s| !claimed.contains(&s.state))
                .map(|s| s.state.clone()),
        );
        if !unclaimed.is_empty() {
            return Err(fail(format!(
                "no node of this pipeline takes the saved state of {} (was a node renamed or \
                 removed?)",
                unclaimed.join(", ")
            )));
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.runtime.config
    }

    /// Publishes the pipeline's metrics through the `metrics` facade while it runs, from a
    /// monitor thread (see [`observe`](crate::observe) for the names and labels).
    ///
    /// ```
    /// use eventflux_runtime::observe::PublishMetrics;
    /// use eventflux_runtime::prelude::*;
    /// let mut p = PipelineBuilder::new(PipelineConfig::default());
    /// let out = p.sink("out", CollectSink::<u8>::new());
    /// p.add_source("src", IterSource::new(0..3u8), Identity, out);
    /// let report = p.build()?.publish_metrics(PublishMetrics::new("demo")).run()?;
    /// assert_eq!(report.events_out, 3);
    /// # Ok::<(), PipelineError>(())
    /// ```
    pub fn publish_metrics(mut self, publish: crate::observe::PublishMetrics) -> Self {
        self.watching.metrics = Some(publish);
        self
    }

    /// Writes a periodic progress line while the pipeline runs, and a last one when it ends
    /// (see [`Progress`](crate::observe::Progress)).
    ///
    /// ```
    /// use eventflux_runtime::observe::Progress;
    /// use eventflux_runtime::prelude::*;
    /// let mut p = PipelineBuilder::new(PipelineConfig::default());
    /// let out = p.sink("out", CollectSink::<u8>::new());
    /// p.add_source("src", IterSource::new(0..3u8), Identity, out);
    /// p.build()?.progress(Progress::auto().named("demo")).run()?;
    /// # Ok::<(), PipelineError>(())
    /// ```
    pub fn progress(mut self, progress: crate::observe::Progress) -> Self {
        self.watching.progress = Some(progress);
        self
    }

    /// Starts the monitor thread, if anything is to be watched.
    fn monitor(&mut self) -> Option<crate::observe::Monitor> {
        let rt = Arc::clone(&self.runtime);
        crate::observe::Monitor::start(
            std::mem::take(&mut self.watching),
            crate::observe::Sources {
                registry: Arc::clone(&self.registry),
                checkpoints: self.runtime.checkpoints.clone(),
                dead_letters: Arc::new(move || rt.dead_letters.count()),
            },
        )
    }

    /// Runs to completion: on the caller's thread if there is one segment, else one scoped
    /// thread per segment — so sources, stages and sinks may borrow the caller's locals.
    /// Returns the report, or the first error.
    pub fn run(mut self) -> Result<RunReport, PipelineError> {
        let started = Instant::now();
        let span = tracing::info_span!("pipeline");
        let _entered = span.enter();
        let mut monitor = self.monitor();
        let rt = Arc::clone(&self.runtime);
        if self.segments.len() == 1 {
            let mut segment = self.segments.remove(0);
            let rt = &*rt;
            let name = segment.name().to_string();
            rt.lifecycle.starting(&name);
            rt.lifecycle.register_thread(thread::current());
            let opened = guarded(rt, &name, || {
                open_dead_letters(rt)?;
                segment.open()
            });
            if opened.is_ok() {
                let _ = guarded(rt, &name, || segment.run(rt));
            } else {
                abort_unrun(rt, &name, &mut *segment);
            }
            rt.lifecycle.finished(&name);
            if let Some(m) = &mut monitor {
                m.finish();
            }
            return finish_report(rt, &self.registry, started);
        }
        open_dead_letters(&rt)?;
        let segments = std::mem::take(&mut self.segments);
        // Every thread is joined when the scope ends; segment threads catch their own panics.
        thread::scope(|scope| {
            start_segments(&rt, segments, |name, body| {
                thread::Builder::new()
                    .name(name)
                    .spawn_scoped(scope, body)
                    .map(drop)
            })
        });
        if let Some(m) = &mut monitor {
            m.finish();
        }
        finish_report(&rt, &self.registry, started)
    }
}

impl Pipeline<'static> {
    /// Starts every segment on its own thread and returns a handle. The pipeline must own
    /// everything it uses (`'static`); [`run`](Self::run) also accepts borrowed nodes.
    pub fn spawn(mut self) -> Result<PipelineHandle, PipelineError> {
        let started = Instant::now();
        let span = tracing::info_span!("pipeline");
        let _entered = span.enter();
        let monitor = self.monitor();
        let rt = self.runtime;
        open_dead_letters(&rt)?;
        let mut threads = Vec::new();
        let all_opened = start_segments(&rt, self.segments, |name, body| {
            threads.push(thread::Builder::new().name(name).spawn(body)?);
            Ok(())
        });
        let mut handle = PipelineHandle {
            runtime: Arc::clone(&rt),
            registry: self.registry,
            threads,
            started,
            detached: false,
            monitor,
            graph: None,
            #[cfg(feature = "dashboard")]
            dashboards: std::sync::Mutex::new(Vec::new()),
        };
        if !all_opened {
            return Err(handle.join_inner().err().unwrap_or(PipelineError::Aborted));
        }
        Ok(handle)
    }
}

fn dead_letter_error(source: crate::error::SinkError) -> PipelineError {
    PipelineError::Sink {
        sink: "dead letters".into(),
        source,
    }
}

fn open_dead_letters(rt: &Runtime) -> Result<(), PipelineError> {
    rt.dead_letters.open().map_err(dead_letter_error)
}

fn finish_report(
    rt: &Runtime,
    registry: &MetricsRegistry,
    started: Instant,
) -> Result<RunReport, PipelineError> {
    let close = rt.dead_letters.close();
    if let Some(e) = rt.lifecycle.take_error() {
        tracing::error!(error = %e, "pipeline failed");
        return Err(e);
    }
    if rt.lifecycle.aborted() {
        tracing::warn!("pipeline aborted");
        return Err(PipelineError::Aborted);
    }
    close.map_err(dead_letter_error)?;
    let mut report = RunReport::new(
        started.elapsed(),
        registry.snapshot(),
        rt.dead_letters.take(),
        rt.dead_letters.count(),
    );
    if let Some(cp) = &rt.checkpoints {
        // The job ran to its end: a later run starts afresh rather than resume before the end.
        // A stopped job did not (its sources ended early): a later run resumes where its last
        // checkpoint left it (a savepoint's, after `stop_with_checkpoint`).
        if !rt.lifecycle.stop_requested() {
            cp.finish_job()
                .map_err(|e| PipelineError::Checkpoint(e.to_string()))?;
        }
        let stats = cp.stats();
        report.metrics.checkpoints = Some(stats.clone());
        report.checkpoints = stats;
    }
    tracing::info!(
        events_in = report.events_in,
        events_out = report.events_out,
        dropped = report.dropped,
        dead_letters = report.dead_letter_count,
        seconds = report.duration.as_secs_f64(),
        "pipeline stopped"
    );
    Ok(report)
}

/// A running pipeline. Dropping it stops the pipeline (gracefully, then by abort) and waits
/// for its threads within the configured stop timeout.
pub struct PipelineHandle {
    runtime: Arc<Runtime>,
    registry: Arc<MetricsRegistry>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
    detached: bool,
    monitor: Option<crate::observe::Monitor>,
    graph: Option<crate::graph::PipelineGraph>,
    #[cfg(feature = "dashboard")]
    dashboards: std::sync::Mutex<Vec<crate::dashboard::Server>>,
}

impl fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl PipelineHandle {
    /// Takes a checkpoint now and waits until it is durable (at most the checkpoint timeout,
    /// 10 minutes by default). Needs [`Pipeline::checkpoints`].
    pub fn checkpoint(&self) -> Result<checkpoint::CheckpointInfo, PipelineError> {
        let cp = self.runtime.checkpoints.as_ref().ok_or_else(|| {
            PipelineError::Checkpoint(
                "this pipeline takes no checkpoints: set a directory with `checkpoints(dir, ..)`"
                    .into(),
            )
        })?;
        let id = cp.request();
        cp.wait(id, self.runtime.config.checkpoint_timeout())
            .map_err(PipelineError::Checkpoint)
    }

    /// A savepoint: takes a final checkpoint, then stops gracefully. A later run that resumes
    /// from the directory goes on exactly where this one stopped.
    pub fn stop_with_checkpoint(self) -> Result<RunReport, PipelineError> {
        self.checkpoint()?;
        self.stop()
    }

    /// A snapshot of every metric; throughput is over the interval since the previous call.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut s = self.registry.snapshot();
        s.checkpoints = self.runtime.checkpoints.as_ref().map(|c| c.stats());
        s
    }

    /// Records the declared graph (nodes, edges, segments) for the dashboard.
    pub(crate) fn set_graph(&mut self, graph: crate::graph::PipelineGraph) {
        self.graph = Some(graph);
    }

    /// The declared graph, when the pipeline came from `pipeline!` (an [`App`](crate::App)).
    pub fn graph(&self) -> Option<&crate::graph::PipelineGraph> {
        self.graph.as_ref()
    }

    /// Serves the live dashboard (see [`dashboard`](crate::dashboard)) on `addr` until the
    /// handle is dropped or the pipeline is stopped or joined, and returns the address it
    /// bound (pass port 0 to let the system pick one). Needs the cargo feature `dashboard`.
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    /// let mut p = PipelineBuilder::new(PipelineConfig::default());
    /// let out = p.sink("out", CollectSink::<u64>::new());
    /// p.add_source("src", IterSource::new(0..3u64), Identity, out);
    /// let handle = p.build()?.spawn()?;
    /// let addr = handle.serve_dashboard("127.0.0.1:0")?;
    /// assert_ne!(addr.port(), 0);
    /// handle.join()?;
    /// # Ok::<(), PipelineError>(())
    /// ```
    #[cfg(feature = "dashboard")]
    pub fn serve_dashboard(
        &self,
        addr: impl std::net::ToSocketAddrs,
    ) -> Result<std::net::SocketAddr, PipelineError> {
        let graph = self.graph.clone().unwrap_or_else(|| {
            // Assembled by hand: the nodes are known from their metrics, not the edges.
            let snap = self
                .registry
                .snapshot_with(&mut crate::metrics::RateCursor::new());
            let nodes: Vec<(&str, NodeKind, usize)> = snap
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.as_str(), n.kind, i))
                .collect();
            let segments: Vec<(&str, usize)> = nodes.iter().map(|n| (n.0, 1)).collect();
            crate::graph::PipelineGraph::from_parts(&nodes, &[], &segments)
        });
        let (server, bound) = crate::dashboard::Server::start(
            addr,
            crate::dashboard::Feed {
                registry: Arc::clone(&self.registry),
                runtime: Arc::clone(&self.runtime),
                graph,
            },
        )?;
        self.dashboards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(server);
        Ok(bound)
    }

    /// Each node's counters per keyed worker (see
    /// [`MetricsRegistry::worker_samples`](crate::metrics::MetricsRegistry::worker_samples)).
    pub fn worker_samples(&self) -> Vec<crate::metrics::WorkerSample> {
        self.registry.worker_samples()
    }

    /// Whether every segment has finished.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for the pipeline to finish and returns its report or first error.
    pub fn join(mut self) -> Result<RunReport, PipelineError> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<RunReport, PipelineError> {
        for t in self.threads.drain(..) {
            // Segment threads catch their own panics; a join error cannot carry anything new.
            let _ = t.join();
        }
        if let Some(m) = &mut self.monitor {
            m.finish();
        }
        finish_report(&self.runtime, &self.registry, self.started)
    }

    /// Stops gracefully: sources end their streams and every queue drains. If that takes longer
    /// than the configured stop timeout, the pipeline is aborted; if its threads still do not
    /// finish within the same bound again (a sink blocked in a system call, say), they are left
    /// running detached and [`PipelineError::StopTimeout`] names them.
    pub fn stop(mut self) -> Result<RunReport, PipelineError> {
        let t0 = Instant::now();
        let stuck = self.shut_down();
        if !stuck.is_empty() {
            return Err(PipelineError::StopTimeout {
                waited_ms: t0.elapsed().as_millis(),
                stuck,
            });
        }
        self.join_inner()
    }

    /// Requests a graceful stop, escalates to an abort after the stop timeout, and waits the
    /// same bound again. Returns the segments still running, whose threads are then left
    /// detached (`join` would block on them).
    fn shut_down(&mut self) -> Vec<String> {
        let lifecycle = &self.runtime.lifecycle;
        let bound = self.runtime.config.stop_timeout();
        lifecycle.request_stop();
        if lifecycle.wait_finished(Some(bound)).is_empty() {
            return Vec::new();
        }
        lifecycle.abort();
        let stuck = lifecycle.wait_finished(Some(bound));
        if !stuck.is_empty() {
            self.detached = true;
            self.threads.clear();
        }
        stuck
            .into_iter()
            .map(|segment| {
                let sinks: Vec<String> = self
                    .runtime
                    .sinks
                    .iter()
                    .filter(|(_, b)| b.blocked_segment().as_deref() == Some(segment.as_str()))
                    .map(|(sink, _)| format!("`{sink}`"))
                    .collect();
                if sinks.is_empty() {
                    segment
                } else {
                    format!("{segment} (blocked in sink {})", sinks.join(", "))
                }
            })
            .collect()
    }
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        if self.detached || self.threads.is_empty() {
            return;
        }
        if self.shut_down().is_empty() {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// What a finished run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// Wall time from start to the last thread's end.
    pub duration: Duration,
    /// Events produced by sources.
    pub events_in: u64,
    /// Events delivered to sinks.
    pub events_out: u64,
    /// Events dropped by queues (backpressure) and stages.
    pub dropped: u64,
    /// Malformed records routed to the dead-letter output.
    pub dead_letter_count: u64,
    /// The dead letters themselves, when collected in memory (the default).
    pub dead_letters: Vec<DeadLetter>,
    /// Final metrics.
    pub metrics: MetricsSnapshot,
    /// Checkpoints taken (all zero when the pipeline takes none).
    pub checkpoints: checkpoint::CheckpointStats,
}

impl RunReport {
    fn new(
        duration: Duration,
        metrics: MetricsSnapshot,
        dead_letters: Vec<DeadLetter>,
        dead_letter_count: u64,
    ) -> Self {
        let sum = |kind: NodeKind, f: fn(&crate::metrics::NodeSnapshot) -> u64| {
            metrics
                .nodes
                .iter()
                .filter(|n| n.kind == kind)
                .map(f)
                .sum::<u64>()
        };
        let events_in = sum(NodeKind::Source, |n| n.events_out);
        let events_out = sum(NodeKind::Sink, |n| n.events_in);
        let dropped = metrics.dropped();
        Self {
            duration,
            events_in,
            events_out,
            dropped,
            dead_letter_count,
            dead_letters,
            metrics,
            checkpoints: checkpoint::CheckpointStats::default(),
        }
    }

    /// Events from sources per second of wall time.
    pub fn events_per_sec(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 {
            self.events_in as f64 / s
        } else {
            0.0
        }
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ran {:.3} s: {} events in ({:.2} M/s), {} out, {} dropped, {} dead letters",
            self.duration.as_secs_f64(),
            self.events_in,
            self.events_per_sec() / 1e6,
            self.events_out,
            self.dropped,
            self.dead_letter_count
        )?;
        let c = &self.checkpoints;
        if c.completed > 0 || c.failed > 0 {
            write!(
                f,
                "checkpoints: {} completed, {} failed",
                c.completed, c.failed
            )?;
            if let Some(last) = &c.last {
                write!(
                    f,
                    "; last #{} took {:.1} ms ({} bytes, alignment {:.1} ms)",
                    last.id,
                    last.duration.as_secs_f64() * 1e3,
                    last.bytes,
                    last.alignment.as_secs_f64() * 1e3
                )?;
            }
            writeln!(f)?;
        }
        if !c.at_most_once.is_empty() {
            writeln!(
                f,
                "at most once after a crash (cannot replay): {}",
                c.at_most_once.join(", ")
            )?;
        }
        write!(f, "{}", self.metrics)
    }
}
