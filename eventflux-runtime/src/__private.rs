//! Support for the code `pipeline!` generates. Not a public API: names and signatures may change
//! in any release.
//!
//! Types flow through zero-sized [`Marker`]s: `Marker<T>` stands for "events of type `T` come out
//! here". Each helper takes the marker of its upstream and states the one bound that edge needs,
//! so rustc reports a mismatch at the span the macro gave the call: the user's arrow or node.

use std::hash::Hash;
use std::marker::PhantomData;

pub use crate::app::App;
pub use crate::backpressure::Backpressure;
pub use crate::config::PipelineConfig;
pub use crate::error::PipelineError;
pub use crate::exec::{Pipeline, PipelineBuilder, QueueSettings};
pub use crate::metrics::NodeKind;

use crate::error::StageError;
use crate::exec::{
    FanOut, FanOutItem, KeyGroups, KeyedOutput, Output, QueueOutput, SinkOutput, Then,
};
use crate::graph::PipelineGraph;
use crate::queue::QueueReceiver;
pub use crate::queue::QueueSender;
use crate::sink::Sink;
use crate::source::Source;
use crate::stage::{Chain, Emit, Identity, Metered, Named, Stage};

/// "Events of type `T` come out here."
pub struct Marker<T>(PhantomData<fn() -> T>);

impl<T> Clone for Marker<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Marker<T> {}

fn marker<T>() -> Marker<T> {
    Marker(PhantomData)
}

/// A stage (or chain) together with the type it accepts.
pub struct Typed<In, C> {
    stage: C,
    input: PhantomData<fn(In)>,
}

/// Events that may cross a `=>` thread boundary.
#[diagnostic::on_unimplemented(
    message = "events of type `{Self}` cannot cross the thread boundary `=>`",
    label = "`{Self}` is not `Send + 'static`",
    note = "events moving between threads must be `Send` and own their data: use `Arc` instead of `Rc`, owned values instead of references, or make this edge `->` to stay on one thread"
)]
pub trait CrossThread: Send + 'static {}
impl<T: Send + 'static> CrossThread for T {}

pub fn source_marker<S: Source>(_: &S) -> Marker<S::Item> {
    marker()
}

pub fn queue_marker<T>(_: &QueueReceiver<T>) -> Marker<T> {
    marker()
}

pub fn edge_into_stage<T, S: Stage<T>>(_: &Marker<T>, stage: S) -> Typed<T, S> {
    Typed {
        stage,
        input: PhantomData,
    }
}

/// States a queue's event type from its consumer (a stage), before any producer is typed.
pub fn queue_into_stage<T, S: Stage<T>>(_: &QueueReceiver<T>, _: &S) {}

/// States a queue's event type from its consumer (a sink), before any producer is typed.
pub fn queue_into_sink<T, K: Sink<T>>(_: &QueueReceiver<T>, _: &K) {}

pub fn marker_of<In, C: Stage<In>>(_: &Typed<In, C>) -> Marker<C::Out> {
    marker()
}

/// Joins two typed stages. The edge between them was already checked by `stage_from`, so this
/// states no bound (a second one would only repeat the same error).
pub fn chain<In, Mid, A, B>(a: Typed<In, A>, b: Typed<Mid, B>) -> Typed<In, Chain<A, B>> {
    Typed {
        stage: Chain::new(a.stage, b.stage),
        input: PhantomData,
    }
}

pub fn metered_stage<In, S, const ID: u32>(
    t: Typed<In, S>,
    b: &PipelineBuilder,
    name: &str,
) -> Typed<In, Named<Metered<S>, ID>> {
    Typed {
        stage: b.stage_at::<_, ID>(name, t.stage),
        input: PhantomData,
    }
}

/// `metered_stage` for a stage fed only by the metered stage whose metrics are `upstream`.
pub fn metered_stage_after<In, S, const ID: u32>(
    t: Typed<In, S>,
    b: &PipelineBuilder,
    name: &str,
    upstream: &std::sync::Arc<crate::metrics::NodeMetrics>,
) -> Typed<In, Named<Metered<S, false>, ID>> {
    Typed {
        stage: b.stage_after_at::<_, ID>(name, t.stage, upstream),
        input: PhantomData,
    }
}

/// The metrics of a metered stage (for the stage it feeds: `metered_stage_after`).
pub fn stage_metrics_of<In, S, const ID: u32, const C: bool>(
    t: &Typed<In, Named<Metered<S, C>, ID>>,
) -> std::sync::Arc<crate::metrics::NodeMetrics> {
    std::sync::Arc::clone(t.stage.inner().metrics())
}

pub fn named_stage<In, S, const ID: u32>(
    t: Typed<In, S>,
    b: &PipelineBuilder,
    name: &str,
) -> Typed<In, Named<S, ID>> {
    Typed {
        stage: b.named_at::<_, ID>(name, t.stage),
        input: PhantomData,
    }
}

pub fn identity<T>(_: &Marker<T>) -> Typed<T, Identity> {
    Typed {
        stage: Identity,
        input: PhantomData,
    }
}

pub fn into_stage<In, C>(t: Typed<In, C>) -> C {
    t.stage
}

pub fn edge_into_sink<T, K: Sink<T>>(_: &Marker<T>, out: SinkOutput<K>) -> SinkOutput<K> {
    out
}

pub fn edge_across_threads<T: CrossThread>(_: &Marker<T>, tx: &QueueSender<T>) -> QueueOutput<T> {
    QueueOutput::new(tx.clone())
}

pub fn keyed_edge_across_threads<T, K, F>(
    _: &Marker<T>,
    key: F,
    groups: usize,
    txs: &[QueueSender<T>],
) -> KeyedOutput<T, F>
where
    T: CrossThread,
    F: FnMut(&T) -> K + Send,
    K: Hash,
{
    KeyedOutput::with_key_groups(
        txs.iter().map(|t| QueueOutput::new(t.clone())).collect(),
        key,
        groups,
    )
}

pub use crate::exec::{KEY_GROUPS, key_groups_of};

/// A keyed worker's chain: one instance per key group it owns (see [`KeyGroups`]).
pub fn key_groups<In, C, K, F>(
    _: &Marker<In>,
    key: F,
    (worker, workers, groups): (usize, usize, usize),
    instances: Vec<Typed<In, C>>,
) -> Typed<In, KeyGroups<C, F>>
where
    C: Stage<In>,
    F: FnMut(&In) -> K + Send,
    K: Hash,
{
    Typed {
        stage: KeyGroups::new(
            groups,
            key_groups_of(worker, workers, groups),
            key,
            instances.into_iter().map(|t| t.stage).collect(),
        ),
        input: PhantomData,
    }
}

pub fn then_branch<In, C, O>(c: Typed<In, C>, out: O) -> Then<C, O>
where
    C: Stage<In> + Send,
    O: Output<C::Out>,
{
    Then::new(c.stage, out)
}

pub fn fan_out_to_several_nodes<T: FanOutItem<T>, A: Output<T>, B: Output<T>>(
    _: &Marker<T>,
    a: A,
    b: B,
) -> FanOut<A, B> {
    FanOut::new(a, b)
}

/// The macro's own handle on a queue, after every producer took a clone: ended, so the queue's
/// end of stream waits only for the real producers (dropping it would abandon the queue).
pub trait UnusedSender {
    fn release(self);
}

impl<T> UnusedSender for QueueSender<T> {
    fn release(mut self) {
        let _ = self.end();
    }
}

impl<T> UnusedSender for Vec<QueueSender<T>> {
    fn release(self) {
        for s in self {
            s.release();
        }
    }
}

pub fn release_unused_sender<S: UnusedSender>(s: S) {
    s.release();
}

pub fn assert_source_item<T, S: Source<Item = T>>(_: &S) {}

pub fn assert_sink_item<T, K: Sink<T>>(_: &K) {}

pub fn graph(
    nodes: &[(&str, NodeKind, usize)],
    edges: &[(&str, &str, Option<&str>)],
    segments: &[(&str, usize)],
) -> PipelineGraph {
    PipelineGraph::from_parts(nodes, edges, segments)
}

/// An output for a node with no outputs (never generated for a valid graph).
pub struct Discard;

impl<T> Emit<T> for Discard {
    fn emit(&mut self, _: T) {}
    fn fail(&mut self, _: StageError) {}
}

impl<T> Output<T> for Discard {
    fn delivered(&mut self, _: u64) {}
    fn begin_batch(&mut self, _: std::time::Instant) {}
    fn end_batch(&mut self) -> Result<(), PipelineError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), PipelineError> {
        Ok(())
    }
    fn watermark(&mut self, _: crate::stage::Watermark) -> Result<(), PipelineError> {
        Ok(())
    }
    fn barrier(&mut self, _: crate::stage::CheckpointId) -> Result<(), PipelineError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), PipelineError> {
        Ok(())
    }
    fn abort(&mut self) {}
}

/// The sink of one worker, from a `per_worker(..)` sink node.
pub fn worker_sink<F, K>(
    sinks: &mut crate::sink::PerWorker<F>,
    worker: usize,
    name: &str,
) -> Result<K, PipelineError>
where
    F: FnMut(usize) -> Result<K, crate::error::SinkError>,
{
    sinks
        .for_worker(worker)
        .map_err(|source| PipelineError::Sink {
            sink: format!("{name}#{worker}"),
            source,
        })
}
