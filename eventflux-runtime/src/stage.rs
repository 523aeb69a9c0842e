//! The stage model: typed, push-based processing steps composed statically.
//!
//! A [`Stage<In>`] receives one event at a time by value and pushes zero or more outputs into an
//! [`Emit`]ter. Stages joined with [`StageExt::then`] form a [`Chain`], a plain generic struct:
//! calls between its parts are static and inlined, there is no `Box<dyn>` and no allocation per
//! event. Besides events, a stage sees the in-band control flow of the stream through hooks:
//! the end of each input batch, watermarks (event-time progress, the trigger for event-time
//! timers), checkpoint barriers and the end of the stream. Hooks may emit events (a window
//! closing on a watermark, say) and are forwarded down the chain in order.
//!
//! ```
//! use eventflux_runtime::prelude::*;
//!
//! let mut chain = filter(|x: &u32| x % 2 == 0).then(map(|x: u32| x * 10));
//! let mut out = Vec::new();
//! for x in 1..=6 {
//!     chain.process(x, &mut out);
//! }
//! assert_eq!(out, vec![20, 40, 60]);
//! ```

mod filter;
mod flat_map;
mod inspect;
mod map;
mod metered;
mod stateful;

pub use filter::{Filter, filter};
pub use flat_map::{FlatMap, flat_map};
pub use inspect::{Inspect, inspect};
pub use map::{Map, map};
pub use metered::Metered;
pub use stateful::{Finish, NoFinish, Stateful, stateful};

use crate::error::StageError;

/// Event-time progress: no event with a timestamp at or below this value is expected any more.
///
/// ```
/// use eventflux_runtime::Watermark;
/// assert!(Watermark(10) < Watermark::END);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Watermark(pub u64);

impl Watermark {
    /// The watermark of a finished stream: every timestamp is complete.
    pub const END: Watermark = Watermark(u64::MAX);
}

/// Identifies one checkpoint; barriers carrying it flow in-band through every queue.
///
/// ```
/// use eventflux_runtime::CheckpointId;
/// assert_eq!(CheckpointId(3).0, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct CheckpointId(pub u64);

/// Receives the events a stage produces.
///
/// `Vec<T>` implements it (handy in tests); inside a pipeline the emitter is the next stage of the
/// chain or the segment's output (a queue, a sink, a fan-out).
///
/// ```
/// use eventflux_runtime::Emit;
/// let mut out: Vec<u8> = Vec::new();
/// out.emit(7);
/// assert_eq!(out, [7]);
/// ```
pub trait Emit<T> {
    /// Pushes one event downstream.
    fn emit(&mut self, item: T);

    /// Reports a failure that must stop the pipeline. The segment checks for it after the current
    /// batch and ends the run with [`PipelineError::Stage`](crate::PipelineError::Stage).
    fn fail(&mut self, error: StageError);
}

impl<T> Emit<T> for Vec<T> {
    #[inline]
    fn emit(&mut self, item: T) {
        self.push(item);
    }

    fn fail(&mut self, error: StageError) {
        panic!("stage failed while emitting into a Vec: {error}");
    }
}

/// A push-based processing step from `In` to [`Stage::Out`].
///
/// Only [`process`](Stage::process) is required; the hooks default to doing nothing.
/// The runtime calls them in stream order, on the stage's own thread, never concurrently.
///
/// ```
/// use eventflux_runtime::prelude::*;
///
/// /// Emits the running total of its inputs.
/// struct RunningSum(u64);
/// impl Stage<u64> for RunningSum {
///     type Out = u64;
///     fn process<E: Emit<u64>>(&mut self, item: u64, out: &mut E) {
///         self.0 += item;
///         out.emit(self.0);
///     }
/// }
///
/// let mut out = Vec::new();
/// let mut s = RunningSum(0);
/// for x in [1, 2, 3] { s.process(x, &mut out); }
/// assert_eq!(out, [1, 3, 6]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot process events of type `{In}`",
    label = "this stage does not accept `{In}`",
    note = "a stage's input type must equal the output type of the stage (or source) that feeds it"
)]
pub trait Stage<In> {
    /// The type of the events this stage emits.
    type Out;

    /// Handles one event.
    fn process<E: Emit<Self::Out>>(&mut self, item: In, out: &mut E);

    /// Called after the last event of each input batch (a queue batch or a source poll).
    #[inline]
    fn on_batch_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        let _ = out;
    }

    /// Called when event time advances; event-time timers fire here.
    #[inline]
    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: Watermark, out: &mut E) {
        let _ = (watermark, out);
    }

    /// Called when a checkpoint barrier passes this stage; every earlier event has been processed
    /// and no later one has.
    #[inline]
    fn on_barrier<E: Emit<Self::Out>>(&mut self, checkpoint: CheckpointId, out: &mut E) {
        let _ = (checkpoint, out);
    }

    /// Called once when the input ends; a stage holding events (a window) emits them here.
    #[inline]
    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        let _ = out;
    }
}

/// Two stages fused: `first`'s outputs are pushed straight into `second`.
///
/// Built with [`StageExt::then`]; nest it for longer chains. Calls are static, so a chain
/// compiles to the same code as the hand-written loop.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut c = map(|x: i32| x + 1).then(map(|x: i32| x * 2));
/// let mut out = Vec::new();
/// c.process(1, &mut out);
/// assert_eq!(out, [4]);
/// ```
#[derive(Debug, Clone)]
pub struct Chain<A, B> {
    first: A,
    second: B,
}

impl<A, B> Chain<A, B> {
    /// Fuses two stages.
    pub fn new(first: A, second: B) -> Self {
        Self { first, second }
    }

    /// The two parts.
    pub fn parts(&self) -> (&A, &B) {
        (&self.first, &self.second)
    }
}

/// An emitter that feeds a stage: the glue inside a [`Chain`] and between a segment's input and
/// its stages.
pub struct Link<'a, S, E> {
    stage: &'a mut S,
    out: &'a mut E,
}

impl<'a, S, E> Link<'a, S, E> {
    /// Feeds events into `stage`, whose outputs go to `out`.
    pub fn new(stage: &'a mut S, out: &'a mut E) -> Self {
        Self { stage, out }
    }
}

impl<T, S, E> Emit<T> for Link<'_, S, E>
where
    S: Stage<T>,
    E: Emit<S::Out>,
{
    #[inline(always)]
    fn emit(&mut self, item: T) {
        self.stage.process(item, self.out);
    }

    #[inline]
    fn fail(&mut self, error: StageError) {
        self.out.fail(error);
    }
}

impl<In, A, B> Stage<In> for Chain<A, B>
where
    A: Stage<In>,
    B: Stage<A::Out>,
{
    type Out = B::Out;

    #[inline(always)]
    fn process<E: Emit<Self::Out>>(&mut self, item: In, out: &mut E) {
        self.first
            .process(item, &mut Link::new(&mut self.second, out));
    }

    #[inline]
    fn on_batch_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.first
            .on_batch_end(&mut Link::new(&mut self.second, out));
        self.second.on_batch_end(out);
    }

    fn on_watermark<E: Emit<Self::Out>>(&mut self, watermark: Watermark, out: &mut E) {
        self.first
            .on_watermark(watermark, &mut Link::new(&mut self.second, out));
        self.second.on_watermark(watermark, out);
    }

    fn on_barrier<E: Emit<Self::Out>>(&mut self, checkpoint: CheckpointId, out: &mut E) {
        self.first
            .on_barrier(checkpoint, &mut Link::new(&mut self.second, out));
        self.second.on_barrier(checkpoint, out);
    }

    fn on_end<E: Emit<Self::Out>>(&mut self, out: &mut E) {
        self.first.on_end(&mut Link::new(&mut self.second, out));
        self.second.on_end(out);
    }
}

/// The identity stage: passes every event through. The chain of a segment without stages.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let mut out = Vec::new();
/// Identity.process(5u8, &mut out);
/// assert_eq!(out, [5]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<T> Stage<T> for Identity {
    type Out = T;

    #[inline(always)]
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        out.emit(item);
    }
}

/// Combinators available on every stage.
pub trait StageExt: Sized {
    /// Fuses `self` with `next`: `self`'s outputs feed `next` on the same thread.
    ///
    /// ```
    /// use eventflux_runtime::prelude::*;
    /// let mut c = filter(|x: &u8| *x > 1).then(map(|x: u8| x as u32));
    /// let mut out = Vec::new();
    /// c.process(1, &mut out);
    /// c.process(2, &mut out);
    /// assert_eq!(out, [2u32]);
    /// ```
    fn then<B>(self, next: B) -> Chain<Self, B> {
        Chain::new(self, next)
    }
}

impl<S> StageExt for S {}
