//! `ChannelSource`: events pushed into a running pipeline by user threads.
//!
//! [`channel_source`] returns the source (give it to the pipeline) and a [`ChannelHandle`]
//! (clone it for every producing thread). Sends follow the channel's backpressure strategy —
//! normally the pipeline's: `Block` waits for room, `DropNewest` hands the rejected event back,
//! `DropOldest` evicts the oldest queued event and hands that back, `Unbounded` grows. The source
//! ends when every handle is dropped (or [`ChannelHandle::close`]d) and the queue is empty. On a
//! graceful stop it refuses new sends (`SendFailure::Closed`, the event handed back) and delivers
//! every event it had already accepted before ending.
//! A parked source thread is woken by the next send, so an idle channel costs no CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::backpressure::{Backpressure, Lane, SendError, SendOutcome};
use crate::config::PipelineConfig;
use crate::error::SourceError;
use crate::idle::IdleStrategy;
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::Emit;

struct Shared<T> {
    lane: Lane<T>,
    handles: AtomicUsize,
    /// Set when the pipeline stops: sends are refused from then on.
    stopped: AtomicBool,
    /// Sends past the `stopped` check and not yet finished.
    in_flight: AtomicUsize,
    never_abort: AtomicBool,
    idle: IdleStrategy,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// A side output: it ends when every *attached* writer (a window) has ended, whatever
    /// plain handles are still held; a writer dropped without ending (it failed) keeps it from
    /// ever ending, so a failure is not an end of stream.
    side_output: bool,
    attached: AtomicUsize,
    abandoned: AtomicBool,
}

/// Creates a channel source holding up to `capacity` events under `backpressure`.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let config = PipelineConfig::default();
/// let (source, handle) = channel_source::<u32>(1024, config.backpressure(), config.idle());
/// let h2 = handle.clone();
/// std::thread::spawn(move || { h2.send(1).unwrap(); });
/// # drop((source, handle));
/// ```
pub fn channel_source<T: Send>(
    capacity: usize,
    backpressure: Backpressure,
    idle: IdleStrategy,
) -> (ChannelSource<T>, ChannelHandle<T>) {
    channel(capacity, backpressure, idle, false)
}

/// An unbounded channel whose source is a side output (see [`late_output`](crate::window::late_output)).
pub(crate) fn side_output<T: Send>(idle: IdleStrategy) -> (ChannelSource<T>, ChannelHandle<T>) {
    channel(1, Backpressure::Unbounded, idle, true)
}

/// A bounded, blocking side output (the dead-letter node's channel).
pub(crate) fn side_output_bounded<T: Send>(
    capacity: usize,
) -> (ChannelSource<T>, ChannelHandle<T>) {
    channel(
        capacity,
        Backpressure::Block,
        IdleStrategy::balanced(),
        true,
    )
}

fn channel<T: Send>(
    capacity: usize,
    backpressure: Backpressure,
    idle: IdleStrategy,
    side_output: bool,
) -> (ChannelSource<T>, ChannelHandle<T>) {
    let shared = Arc::new(Shared {
        lane: Lane::new(capacity.max(1), backpressure),
        handles: AtomicUsize::new(1),
        stopped: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        never_abort: AtomicBool::new(false),
        idle,
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        side_output,
        attached: AtomicUsize::new(0),
        abandoned: AtomicBool::new(false),
    });
    (
        ChannelSource {
            shared: Arc::clone(&shared),
        },
        ChannelHandle {
            shared,
            closed: false,
            attached: false,
        },
    )
}

/// The source side of [`channel_source`].
pub struct ChannelSource<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for ChannelSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSource").finish_non_exhaustive()
    }
}

impl<T: Send> ChannelSource<T> {
    /// A channel sized and configured like the pipeline's queues.
    pub fn with_config(config: &PipelineConfig) -> (ChannelSource<T>, ChannelHandle<T>) {
        channel_source(
            config.queue_capacity(),
            config.backpressure(),
            config.idle(),
        )
    }
}

impl<T> Drop for ChannelSource<T> {
    fn drop(&mut self) {
        self.shared.lane.close();
    }
}

impl<T> Shared<T> {
    /// No further event can arrive.
    fn finished(&self) -> bool {
        let writers_done = if self.side_output {
            self.attached.load(Ordering::SeqCst) == 0 && !self.abandoned.load(Ordering::SeqCst)
        } else {
            self.handles.load(Ordering::SeqCst) == 0
        };
        writers_done
            || (self.stopped.load(Ordering::SeqCst) && self.in_flight.load(Ordering::SeqCst) == 0)
    }
}

impl<T: Send> Source for ChannelSource<T> {
    type Item = T;

    fn is_side_output(&self) -> bool {
        self.shared.side_output
    }

    fn stop(&mut self) -> bool {
        self.shared.stopped.store(true, Ordering::SeqCst);
        true
    }

    fn poll<E: Emit<T>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        for i in 0..cx.max_items() {
            match self.shared.lane.pop() {
                Some(item) => out.emit(item),
                None if i > 0 => return Ok(SourcePoll::Pending),
                None => {
                    // Handles drop *after* their last push, and a stopped channel's senders
                    // leave `in_flight` after theirs, so an empty lane seen after either is
                    // final.
                    if self.shared.finished() {
                        return Ok(match self.shared.lane.pop() {
                            Some(item) => {
                                out.emit(item);
                                SourcePoll::Ready
                            }
                            None => SourcePoll::Done,
                        });
                    }
                    return Ok(SourcePoll::Pending);
                }
            }
        }
        Ok(SourcePoll::Ready)
    }

    fn wait(&mut self, bound: Duration) {
        let s = &*self.shared;
        let _ = s.lane.not_empty.wait_until(
            &s.idle,
            &s.never_abort,
            Some(Instant::now() + bound),
            || (!s.lane.is_empty() || s.finished()).then_some(()),
        );
    }
}

/// Pushes events into a [`ChannelSource`]. Clone it for each producing thread.
pub struct ChannelHandle<T> {
    shared: Arc<Shared<T>>,
    closed: bool,
    attached: bool,
}

impl<T> std::fmt::Debug for ChannelHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelHandle")
            .field("closed", &self.closed)
            .finish()
    }
}

impl<T> Clone for ChannelHandle<T> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::SeqCst);
        Self {
            shared: Arc::clone(&self.shared),
            closed: false,
            attached: false,
        }
    }
}

impl<T> ChannelHandle<T> {
    /// Sends one event under the channel's backpressure strategy. A dropped event (the rejected
    /// one, or the evicted oldest) is handed back in the outcome and counted. `Err` (with the
    /// event) means the pipeline is gone.
    pub fn send(&self, item: T) -> Result<SendOutcome<T>, SendError<T>> {
        let s = &*self.shared;
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        if s.stopped.load(Ordering::SeqCst) {
            s.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(SendError {
                item,
                reason: crate::backpressure::SendFailure::Closed,
            });
        }
        let sent = s.lane.send(item, &s.idle, &s.never_abort, None);
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        if s.stopped.load(Ordering::SeqCst) {
            // A stopping source waits for the last in-flight send: let it re-check.
            s.lane.not_empty.notify();
        }
        let outcome = sent?;
        s.sent.fetch_add(1, Ordering::Relaxed);
        if !matches!(outcome, SendOutcome::Sent) {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// Events sent so far through any handle.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Events dropped by the backpressure strategy so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Ends this handle's stream (as dropping it does).
    pub fn close(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if !self.closed {
            self.closed = true;
            self.shared.handles.fetch_sub(1, Ordering::SeqCst);
            self.shared.lane.not_empty.notify();
        }
    }

    /// A writer of a side output (a window's late output): the side output's source ends when
    /// every attached writer has [`end`](Self::end)ed.
    pub(crate) fn attach(&self) -> Self {
        let mut h = self.clone();
        h.shared.attached.fetch_add(1, Ordering::SeqCst);
        h.attached = true;
        h
    }

    /// An attached writer's stream is complete.
    pub(crate) fn end(mut self) {
        if self.attached {
            self.attached = false;
            self.shared.attached.fetch_sub(1, Ordering::SeqCst);
        }
        self.release();
    }
}

impl<T> Drop for ChannelHandle<T> {
    fn drop(&mut self) {
        if self.attached {
            // Dropped without `end`: its window failed. The side output must not end.
            self.shared.abandoned.store(true, Ordering::SeqCst);
        }
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::DeadLetters;

    #[test]
    fn ends_when_every_handle_is_gone() {
        let (mut src, h) = channel_source::<u32>(8, Backpressure::Block, IdleStrategy::balanced());
        let h2 = h.clone();
        assert_eq!(h.send(1), Ok(SendOutcome::Sent));
        h.close();
        let dl = DeadLetters::collect();
        let mut cx = SourceContext::new(10, &dl);
        let mut out = Vec::new();
        assert_eq!(src.poll(&mut cx, &mut out).unwrap(), SourcePoll::Pending);
        assert_eq!(h2.send(2), Ok(SendOutcome::Sent));
        drop(h2);
        assert_eq!(src.poll(&mut cx, &mut out).unwrap(), SourcePoll::Pending);
        assert_eq!(src.poll(&mut cx, &mut out).unwrap(), SourcePoll::Done);
        assert_eq!(out, [1, 2]);
    }
}
