//! [`App`]: the value a `pipeline!` block evaluates to.

use crate::config::PipelineConfig;
use crate::error::PipelineError;
use crate::exec::{Pipeline, PipelineHandle, RunReport};
use crate::graph::PipelineGraph;

/// A pipeline declared with `pipeline!`, ready to run.
///
/// ```
/// use eventflux_runtime::app::App;
/// use eventflux_runtime::prelude::*;
/// let sink = CollectSink::new();
/// let got = sink.handle();
/// let mut p = PipelineBuilder::new(PipelineConfig::default());
/// let out = p.sink("out", sink);
/// p.add_source("src", IterSource::new(0..3u8), Identity, out);
/// let config = p.config().clone();
/// let graph = eventflux_runtime::graph::PipelineGraph::from_parts(&[], &[], &[]);
/// let app = App::new(p.build(), Some(config), graph);
/// app.run()?;
/// assert_eq!(got.take(), [0, 1, 2]);
/// # Ok::<(), PipelineError>(())
/// ```
#[derive(Debug)]
pub struct App<'a> {
    pipeline: Result<Pipeline<'a>, PipelineError>,
    config: Option<PipelineConfig>,
    graph: PipelineGraph,
}

impl<'a> App<'a> {
    /// Wraps a built pipeline (or the error that prevented building it).
    pub fn new(
        pipeline: Result<Pipeline<'a>, PipelineError>,
        config: Option<PipelineConfig>,
        graph: PipelineGraph,
    ) -> Self {
        Self {
            pipeline,
            config,
            graph,
        }
    }

    /// What `pipeline!` evaluates to when it reported compile errors: never run, because the
    /// program does not compile; it only keeps follow-on type errors quiet.
    #[doc(hidden)]
    pub fn stub() -> Self {
        Self {
            pipeline: Err(PipelineError::Invalid(
                "the pipeline did not compile".into(),
            )),
            config: None,
            graph: PipelineGraph::from_parts(&[], &[], &[]),
        }
    }

    /// Runs to completion on the current thread (one segment) or one scoped thread per
    /// segment, so node expressions may borrow the caller's locals (a source over a borrowed
    /// slice, a sink pushing into a local `Vec`).
    pub fn run(self) -> Result<RunReport, PipelineError> {
        self.pipeline?.run()
    }

    /// Sets the checkpoint interval at run time; see [`Pipeline::with_checkpoint_interval`].
    pub fn with_checkpoint_interval(
        self,
        every: std::time::Duration,
    ) -> Result<Self, PipelineError> {
        let pipeline = self.pipeline?.with_checkpoint_interval(every)?;
        let config = Some(pipeline.config().clone());
        Ok(Self {
            pipeline: Ok(pipeline),
            config,
            graph: self.graph,
        })
    }

    /// Takes checkpoints into `dir` and first resumes from it as `recovery` says; see
    /// [`Pipeline::checkpoints`].
    pub fn checkpoints(
        self,
        dir: impl AsRef<std::path::Path>,
        recovery: crate::exec::Recovery,
    ) -> Result<Self, PipelineError> {
        Ok(Self {
            pipeline: Ok(self.pipeline?.checkpoints(dir, recovery)?),
            config: self.config,
            graph: self.graph,
        })
    }

    /// Publishes metrics through the `metrics` facade while running; see
    /// [`Pipeline::publish_metrics`].
    pub fn publish_metrics(self, publish: crate::observe::PublishMetrics) -> Self {
        Self {
            pipeline: self.pipeline.map(|p| p.publish_metrics(publish)),
            ..self
        }
    }

    /// Writes a periodic progress line while running; see [`Pipeline::progress`].
    pub fn progress(self, progress: crate::observe::Progress) -> Self {
        Self {
            pipeline: self.pipeline.map(|p| p.progress(progress)),
            ..self
        }
    }

    /// The configuration (`None` only if it failed to build, which `pipeline!` rules out at
    /// compile time).
    pub fn config(&self) -> Option<&PipelineConfig> {
        self.config.as_ref()
    }

    /// The graph that was built: nodes, edges, segments.
    pub fn graph(&self) -> &PipelineGraph {
        &self.graph
    }
}

impl App<'static> {
    /// Starts the pipeline and returns a handle: `metrics()`, `stop()`, `join()`. The threads
    /// outlive this call, so every node must own what it uses (`'static`); use
    /// [`run`](Self::run) for a pipeline that borrows locals.
    pub fn spawn(self) -> Result<PipelineHandle, PipelineError> {
        let mut handle = self.pipeline?.spawn()?;
        handle.set_graph(self.graph);
        Ok(handle)
    }
}
