//! `Named`: attributes a stage's failures and panics to its node name.
//!
//! `pipeline!` wraps every stage in one, so an error says which node failed (`win`), not only
//! the segment (thread) it runs on. The emitter wrapper inlines away; hooks and per-event
//! `process` run under panic guards that are forgotten on return, so the normal path runs no
//! code for them (see `exec::site`).

use crate::error::StageError;
use crate::exec::site::{ConstStageGuard, InputGuarded, StageGuard, in_node};
use crate::stage::{CheckpointId, Emit, Stage, Watermark};
use crate::state::{Restore, Snapshot, StateError};

/// A stage known by its node name: failures it reports through `Emit::fail` and panics in its
/// code name the node. On the normal path no code runs for it: the panic guard around
/// `process` is forgotten on return and only a panic's unwinding drops it. Measured on W0 with
/// callgrind: free when the id is known at compile time (`pipeline!`); about 3 instructions per
/// event when it is given at run time ([`PipelineBuilder::named`](crate::PipelineBuilder::named)
/// and [`stage`](crate::PipelineBuilder::stage)), the cost of keeping the id where the unwinder
/// can read it.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// use eventflux_runtime::stage::Named;
///
/// /// Fails on zero.
/// struct NonZero;
/// impl Stage<u8> for NonZero {
///     type Out = u8;
///     fn process<E: Emit<u8>>(&mut self, x: u8, out: &mut E) {
///         if x == 0 { out.fail(StageError::new("zero")) } else { out.emit(x) }
///     }
/// }
/// /// Keeps the failure it is given.
/// struct Failures(Vec<StageError>);
/// impl Emit<u8> for Failures {
///     fn emit(&mut self, _: u8) {}
///     fn fail(&mut self, e: StageError) { self.0.push(e); }
/// }
/// let mut s = Named::new("check", NonZero);
/// let mut out = Failures(Vec::new());
/// s.process(0, &mut out);
/// assert_eq!(out.0[0].node(), Some("check"));
/// ```
///
/// `ID` is the stage's id when it is known at compile time (`pipeline!` numbers its nodes), so
/// the panic guard holds a constant; 0 (the default) means "the id given at run time".
#[derive(Debug, Clone)]
pub struct Named<S, const ID: u32 = 0> {
    stage: S,
    name: Box<str>,
    id: u32,
}

impl<S> Named<S> {
    /// Names `stage`. (Inside a pipeline, build it with
    /// [`PipelineBuilder::named`](crate::PipelineBuilder::named) so panics in its `process` can
    /// be attributed too.)
    pub fn new(name: &str, stage: S) -> Self {
        Self::with_id(name, 0, stage)
    }
}

impl<S, const ID: u32> Named<S, ID> {
    pub(crate) fn with_id(name: &str, id: u32, stage: S) -> Self {
        Self {
            stage,
            name: name.into(),
            id,
        }
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wrapped stage.
    pub fn inner(&self) -> &S {
        &self.stage
    }
}

/// The emitter a named stage sees: failures reported through it carry the node's name, and
/// after each downstream call the stage is marked running again.
struct Tag<'a, E> {
    out: &'a mut E,
    name: &'a str,
}

impl<T, E: Emit<T>> Emit<T> for Tag<'_, E> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        self.out.emit(item);
    }

    #[inline(always)]
    fn emit_all<I: Iterator<Item = T>>(&mut self, items: I) {
        self.out.emit_all(items);
    }

    fn fail(&mut self, error: StageError) {
        self.out.fail(error.at_node(self.name));
    }

    #[inline]
    fn emit_watermark(&mut self, watermark: Watermark) {
        self.out.emit_watermark(watermark);
    }
}

macro_rules! named_hook {
    ($self:ident, $out:ident, |$s:ident, $tag:ident| $call:expr) => {{
        let name = &*$self.name;
        let $s = &mut $self.stage;
        in_node(name, || {
            let $tag = &mut Tag { out: $out, name };
            $call
        })
    }};
}

/// Runs `f` under the stage's guard: a constant one when `pipeline!` numbered the stage (`ID`),
/// else one holding `id`. Forgotten on return, so nothing runs on the normal path; a panic
/// unwinding through it records the stage (see `exec::site`).
#[inline(always)]
fn guarded<const ID: u32, R>(id: u32, f: impl FnOnce() -> R) -> R {
    if ID == 0 {
        let guard = StageGuard(id);
        let r = f();
        std::mem::forget(guard);
        r
    } else {
        let guard = ConstStageGuard::<ID>;
        let r = f();
        std::mem::forget(guard);
        r
    }
}

impl<In, S: Stage<In>, const ID: u32> Stage<In> for Named<S, ID> {
    type Out = S::Out;

    #[inline(always)]
    fn process<E: Emit<S::Out>>(&mut self, item: In, out: &mut E) {
        // Per event: a guard forgotten on return — nothing runs on the normal path; a panic
        // unwinding through it records the stage (see `exec::site`).
        let name = &*self.name;
        guarded::<ID, _>(self.id, || self.stage.process(item, &mut Tag { out, name }));
    }

    /// The whole run under one guard (a panic in a stage pulled by this one is claimed by that
    /// stage's own guard first: see [`pull`](Stage::pull)).
    #[inline(always)]
    fn process_all<I: Iterator<Item = In>, E: Emit<S::Out>>(&mut self, items: I, out: &mut E) {
        let name = &*self.name;
        guarded::<ID, _>(self.id, || {
            self.stage
                .process_all(InputGuarded(items), &mut Tag { out, name });
        });
    }

    /// Each step of the adapter runs under the stage's guard; the inputs it pulls are guarded
    /// by their own stages.
    #[inline(always)]
    fn pull<I: Iterator<Item = In>>(&mut self, items: I) -> impl Iterator<Item = S::Out> {
        let id = self.id;
        let mut inner = self.stage.pull(InputGuarded(items));
        std::iter::from_fn(move || guarded::<ID, _>(id, || inner.next()))
    }

    #[inline]
    fn on_batch_end<E: Emit<S::Out>>(&mut self, out: &mut E) {
        named_hook!(self, out, |s, tag| s.on_batch_end(tag))
    }

    fn on_watermark<E: Emit<S::Out>>(&mut self, watermark: Watermark, out: &mut E) {
        named_hook!(self, out, |s, tag| s.on_watermark(watermark, tag))
    }

    fn on_barrier<E: Emit<S::Out>>(&mut self, checkpoint: CheckpointId, out: &mut E) {
        named_hook!(self, out, |s, tag| s.on_barrier(checkpoint, tag))
    }

    fn on_end<E: Emit<S::Out>>(&mut self, out: &mut E) {
        named_hook!(self, out, |s, tag| s.on_end(tag))
    }

    crate::stage::forward_stage_queries!();

    fn on_timer<E: Emit<S::Out>>(&mut self, out: &mut E) {
        named_hook!(self, out, |s, tag| s.on_timer(tag))
    }

    /// The stage's states are saved under this node's name.
    fn snapshot(&self, snapshot: &mut Snapshot) -> Result<(), StateError> {
        snapshot.scoped(&self.name, |s| self.stage.snapshot(s))
    }

    fn restore(&mut self, restore: &mut Restore) -> Result<(), StateError> {
        let name = &*self.name;
        restore.scoped(name, |r| self.stage.restore(r))
    }
}
