//! The runtime of **eventflux**: typed push-based stages fused by static dispatch, batched
//! lock-free queues with real backpressure, pools, metrics, and an executor with a complete
//! lifecycle.
//!
//! Most users depend on the `eventflux` facade and write `pipeline!`; this crate is what the
//! macro compiles to, and it can be used directly. A tour, by concept:
//!
//! - [`stage`]: the [`Stage`] trait, [`Chain`]s, and built-in stages ([`filter`], [`map`],
//!   [`flat_map`], [`inspect`], [`stateful`]).
//! - [`source`] and [`sink`]: the [`Source`] and [`Sink`] traits; [`io`] has the built-ins
//!   and the dead-letter output.
//! - [`queue`]: [`EventQueue`](queue::EventQueue), batches plus in-band control messages,
//!   under a [`Backpressure`] strategy ([`backpressure`]); threads idle per [`IdleStrategy`].
//! - [`window`] and [`aggregate`]: windows (count, processing time, event time, sessions,
//!   sort, unique) and incremental aggregates with retraction.
//! - [`pool`]: recycled batch buffers and user objects.
//! - [`state`]: checkpointable state — the [`Checkpoint`](state::Checkpoint) trait and its
//!   derive, the snapshot codec (postcard, optional lz4, crc32c).
//! - [`config`]: [`PipelineConfig`], validated.
//! - [`metrics`]: counters, drops by reason, queue depths, latency histograms, snapshots.
//! - [`exec`]: segments, [`PipelineBuilder`], [`Pipeline`], [`PipelineHandle`], [`RunReport`].
//!
//! ```
//! use eventflux_runtime::prelude::*;
//!
//! let sink = CollectSink::new();
//! let got = sink.handle();
//! let mut p = PipelineBuilder::new(PipelineConfig::default());
//! let out = p.sink("out", sink);
//! p.add_source("src", IterSource::new(1..=5u32), filter(|x: &u32| x % 2 == 1).then(map(|x: u32| x * 10)), out);
//! p.build()?.run()?;
//! assert_eq!(got.take(), [10, 30, 50]);
//! # Ok::<(), PipelineError>(())
//! ```

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __private;
pub mod aggregate;
pub mod app;
pub mod backpressure;
pub mod config;
#[cfg(feature = "dashboard")]
pub mod dashboard;
pub mod error;
pub mod exec;
pub mod graph;
pub mod idle;
pub mod io;
pub mod metrics;
pub mod observe;
pub mod pool;
pub mod queue;
pub mod sink;
pub mod source;
pub mod stage;
pub mod state;
pub mod window;

pub use app::App;
pub use backpressure::{Backpressure, SendError, SendFailure, SendOutcome};
pub use config::{PipelineConfig, PipelineConfigBuilder};
pub use error::{ConfigError, PipelineError, SinkError, SourceError, StageError};
pub use exec::{Pipeline, PipelineBuilder, PipelineHandle, Recovery, RunReport};
pub use idle::IdleStrategy;
pub use sink::{PerWorker, Sink, per_worker};
pub use source::{Source, SourceContext, SourcePoll};
pub use stage::{
    Chain, CheckpointId, Emit, Identity, Stage, StageExt, Watermark, filter, flat_map, inspect,
    map, stateful,
};

/// Everything a pipeline author needs, in one import.
pub mod prelude {
    pub use crate::aggregate::{
        Aggregate, avg, count, distinct_count, first, last, max, min, stddev, sum, variance,
    };
    pub use crate::app::App;
    pub use crate::backpressure::{Backpressure, SendOutcome};
    pub use crate::config::PipelineConfig;
    pub use crate::error::{ConfigError, PipelineError, SinkError, SourceError, StageError};
    pub use crate::exec::{
        FanOut, Output, Pipeline, PipelineBuilder, PipelineHandle, QueueOutput, QueueSettings,
        Recovery, RunReport, SinkOutput, Then,
    };
    pub use crate::idle::IdleStrategy;
    pub use crate::io::{
        CallbackSink, ChannelHandle, ChannelSource, CollectSink, CsvSource, DeadLetter, IterSource,
        JsonLinesParts, JsonLinesSink, JsonLinesSource, StdoutSink, channel_source, dead_letters,
    };
    pub use crate::sink::{Sink, per_worker};
    pub use crate::source::{Source, SourceContext, SourcePoll};
    pub use crate::stage::{
        Chain, CheckpointId, Emit, Identity, Metered, Stage, StageExt, Watermark, filter, flat_map,
        inspect, map, stateful, watermarks,
    };
    pub use crate::state::Checkpoint;
    pub use crate::window::{
        Bounds, ManualClock, Row, SystemClock, WindowEvent, late_output, length, length_batch,
        session, sliding, sort, time, time_batch, tumbling, unique,
    };
}
