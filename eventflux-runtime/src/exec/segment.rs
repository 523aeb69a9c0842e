//! Segment drivers: the loop that runs one fused chain on one thread.
//!
//! A [`SourceSegment`] polls a source; a [`QueueSegment`] receives batches from an
//! [`EventQueue`](crate::queue::EventQueue). Both push every event through their chain into their
//! output, call the batch hooks, flush partial batches when their input has nothing ready,
//! forward control messages in order, and end the stream through the chain (so windows can
//! flush) and the output.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{PipelineError, StageError};
use crate::exec::output::{Output, Tally, push};
use crate::exec::{Runtime, Segment};
use crate::metrics::{DropReason, NodeMetrics};
use crate::queue::{Message, QueueReceiver, RecvError};
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::{Emit, Link, Stage};

/// Counts events a source emits on their way into the chain.
struct Counted<'a, C, O> {
    chain: &'a mut C,
    out: &'a mut O,
    n: u64,
}

impl<T, C: Stage<T>, O: Emit<C::Out>> Emit<T> for Counted<'_, C, O> {
    #[inline(always)]
    fn emit(&mut self, item: T) {
        self.n += 1;
        push(self.chain, self.out, item);
    }

    fn fail(&mut self, error: StageError) {
        self.out.fail(error);
    }

    fn emit_watermark(&mut self, watermark: crate::stage::Watermark) {
        Link::new(self.chain, self.out).emit_watermark(watermark);
    }
}

/// Runs `f` with a counting view of `out`, then reports the count to `out`.
#[inline(always)]
fn tallied<O: Output<T>, T, R>(out: &mut O, f: impl FnOnce(&mut Tally<'_, O>) -> R) -> R {
    let mut tally = Tally::new(out);
    let r = f(&mut tally);
    let n = tally.count();
    out.delivered(n);
    r
}

/// A source, its fused chain and its output, run on one thread.
pub struct SourceSegment<S, C, O> {
    pub(crate) name: String,
    pub(crate) source: S,
    pub(crate) chain: C,
    pub(crate) output: O,
    pub(crate) metrics: Option<Arc<NodeMetrics>>,
}

impl<S, C, O> Segment for SourceSegment<S, C, O>
where
    S: Source,
    C: Stage<S::Item> + Send,
    O: Output<C::Out>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn is_source(&self) -> bool {
        true
    }

    fn open(&mut self) -> Result<(), PipelineError> {
        self.output.open()?;
        self.source.open().map_err(|source| PipelineError::Source {
            segment: self.name.clone(),
            source,
        })
    }

    fn run(self: Box<Self>, rt: &Runtime) -> Result<(), PipelineError> {
        // The segment's parts become locals of this frame: the optimiser can then keep a
        // stage's counters and small state in registers across the whole batch loop.
        let SourceSegment {
            name,
            mut source,
            mut chain,
            mut output,
            metrics,
        } = *self;
        let batch = rt.config.batch_size();
        let park = rt.config.idle().park;
        let timing = rt.config.metrics();
        let mut produced = 0u64;
        let mut malformed = 0u64;
        let mut stopping = false;
        loop {
            if rt.lifecycle.aborted() {
                return Err(PipelineError::Aborted);
            }
            if !stopping && rt.lifecycle.stop_requested() {
                stopping = true;
                if !source.stop() {
                    break;
                }
            }
            if timing {
                output.begin_batch(Instant::now());
            }
            let mut cx = SourceContext::new(batch, &rt.dead_letters);
            let (polled, n) = tallied(&mut output, |out| {
                let mut counted = Counted {
                    chain: &mut chain,
                    out,
                    n: 0,
                };
                let polled = source.poll(&mut cx, &mut counted);
                counted.chain.on_batch_end(counted.out);
                (polled, counted.n)
            });
            produced += n;
            if cx.dead_lettered > 0 {
                malformed += cx.dead_lettered;
                if let Some(m) = &metrics {
                    m.add_dropped(DropReason::Malformed, cx.dead_lettered);
                }
            }
            if let Some(m) = &metrics {
                m.publish(produced, produced, malformed);
            }
            let failure = cx.failure.take();
            let polled = polled.map_err(|source| PipelineError::Source {
                segment: name.clone(),
                source,
            })?;
            if let Some(source) = failure {
                return Err(PipelineError::Source {
                    segment: name.clone(),
                    source,
                });
            }
            output.end_batch()?;
            match polled {
                SourcePoll::Ready => {}
                SourcePoll::Pending => {
                    output.flush()?;
                    source.wait(park);
                }
                SourcePoll::Done => break,
            }
        }
        tallied(&mut output, |out| chain.on_end(out));
        output.finish()
    }
}

/// A queue's consumer, its fused chain and its output, run on one thread.
pub struct QueueSegment<T, C, O> {
    pub(crate) name: String,
    pub(crate) input: QueueReceiver<T>,
    pub(crate) chain: C,
    pub(crate) output: O,
}

impl<T, C, O> Segment for QueueSegment<T, C, O>
where
    T: Send,
    C: Stage<T> + Send,
    O: Output<C::Out>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn is_source(&self) -> bool {
        false
    }

    fn open(&mut self) -> Result<(), PipelineError> {
        self.output.open()
    }

    fn run(mut self: Box<Self>, rt: &Runtime) -> Result<(), PipelineError> {
        let this = &mut *self;
        let (input, chain, output) = (&mut this.input, &mut this.chain, &mut this.output);
        loop {
            if rt.lifecycle.aborted() {
                return Err(PipelineError::Aborted);
            }
            let msg = input.recv().map_err(|e| match e {
                RecvError::Aborted => PipelineError::Aborted,
            })?;
            match msg {
                Message::Batch(b) => {
                    output.begin_batch(b.origin());
                    let mut items = b.into_items();
                    tallied(output, |out| {
                        for item in items.drain(..) {
                            push(chain, out, item);
                        }
                        chain.on_batch_end(out);
                    });
                    input.recycle_buffer(items);
                    output.end_batch()?;
                    if input.is_empty() {
                        output.flush()?;
                    }
                }
                Message::Watermark(w) => {
                    tallied(output, |out| chain.on_watermark(w, out));
                    output.watermark(w)?;
                }
                Message::Barrier(c) => {
                    tallied(output, |out| chain.on_barrier(c, out));
                    output.barrier(c)?;
                }
                Message::End => break,
            }
        }
        tallied(output, |out| chain.on_end(out));
        output.finish()
    }
}
