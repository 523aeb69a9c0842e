//! Backpressure: what a producer does when the queue in front of it is full.
//!
//! | strategy | when full | loses data | producer blocks |
//! |---|---|---|---|
//! | [`Block`](Backpressure::Block) | waits (spin → yield → park) until there is room | never | yes |
//! | [`DropOldest`](Backpressure::DropOldest) | evicts the oldest queued item, atomically with the push | yes, counted | never |
//! | [`DropNewest`](Backpressure::DropNewest) | rejects the incoming item and hands it back | yes, counted | never |
//! | [`Unbounded`](Backpressure::Unbounded) | grows (a lock-free segmented queue) | never | never |
//!
//! Eviction under `DropOldest` uses `ArrayQueue::force_push`, which replaces the oldest element
//! in one atomic step, so concurrent producers and a concurrent consumer can never lose an item
//! uncounted or see one twice. `Unbounded` trades memory for never waiting; its depth has a
//! high-water metric so runaway growth is visible.
//!
//! Control messages (watermarks, barriers, end of stream) are never subject to a drop policy:
//! queues carry them on a separate, always-blocking lane (see [`queue`](crate::queue)).

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::queue::{ArrayQueue, SegQueue};

use crate::error::ConfigError;
use crate::idle::{IdleStrategy, Signal, WaitEnd};

/// What a producer does when its queue is full. See the [module docs](self).
///
/// ```
/// use eventflux_runtime::Backpressure;
/// assert_eq!("DropOldest".parse::<Backpressure>(), Ok(Backpressure::DropOldest));
/// assert!("drop_all".parse::<Backpressure>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum Backpressure {
    /// Wait for room; nothing is lost.
    #[default]
    Block,
    /// Evict the oldest queued item to make room; keeps the newest data.
    DropOldest,
    /// Reject the incoming item; keeps the oldest data.
    DropNewest,
    /// Grow without bound; nothing is lost, nobody waits; watch the high-water mark.
    Unbounded,
}

impl Backpressure {
    /// The accepted spellings, for error messages.
    pub const NAMES: &'static str = "Block, DropOldest, DropNewest, Unbounded";

    /// Whether this strategy may drop events.
    pub fn is_lossy(self) -> bool {
        matches!(self, Backpressure::DropOldest | Backpressure::DropNewest)
    }
}

impl FromStr for Backpressure {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Block" | "block" => Ok(Backpressure::Block),
            "DropOldest" | "drop_oldest" => Ok(Backpressure::DropOldest),
            "DropNewest" | "drop_newest" => Ok(Backpressure::DropNewest),
            "Unbounded" | "unbounded" => Ok(Backpressure::Unbounded),
            other => Err(ConfigError::UnknownValue {
                field: "backpressure",
                value: other.to_string(),
                allowed: Backpressure::NAMES,
            }),
        }
    }
}

/// The result of a send that did not fail.
///
/// ```
/// use eventflux_runtime::SendOutcome;
/// let o: SendOutcome<u8> = SendOutcome::Rejected(3);
/// assert_eq!(o.into_dropped(), Some(3));
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a dropped item is handed back; recycle or inspect it"]
pub enum SendOutcome<T> {
    /// The item was queued.
    Sent,
    /// `DropNewest`: the queue was full; this is the rejected item.
    Rejected(T),
    /// `DropOldest`: the item was queued and this older item was evicted to make room.
    Evicted(T),
}

impl<T> SendOutcome<T> {
    /// The item that was dropped, if any.
    pub fn into_dropped(self) -> Option<T> {
        match self {
            SendOutcome::Sent => None,
            SendOutcome::Rejected(t) | SendOutcome::Evicted(t) => Some(t),
        }
    }
}

/// Why a send failed; the item is handed back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("send failed: {reason}")]
pub struct SendError<T> {
    /// The item that was not sent.
    pub item: T,
    /// Why.
    pub reason: SendFailure,
}

/// Why a send failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendFailure {
    /// The receiving side is gone.
    #[error("the receiver is closed")]
    Closed,
    /// The pipeline is aborting.
    #[error("the pipeline is aborting")]
    Aborted,
}

enum Storage<T> {
    Bounded(ArrayQueue<T>),
    Unbounded(SegQueue<T>),
}

/// A lock-free FIFO with a backpressure strategy and wake-ups in both directions.
pub(crate) struct Lane<T> {
    storage: Storage<T>,
    strategy: Backpressure,
    not_full: Signal,
    pub(crate) not_empty: Signal,
    closed: AtomicBool,
}

impl<T> Lane<T> {
    /// `capacity` is ignored for `Unbounded`; it must be at least 1.
    pub(crate) fn new(capacity: usize, strategy: Backpressure) -> Self {
        let storage = match strategy {
            Backpressure::Unbounded => Storage::Unbounded(SegQueue::new()),
            _ => Storage::Bounded(ArrayQueue::new(capacity.max(1))),
        };
        Self {
            storage,
            strategy,
            not_full: Signal::default(),
            not_empty: Signal::default(),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn strategy(&self) -> Backpressure {
        self.strategy
    }

    /// Offers `item` under the lane's strategy. `Err` hands the item back.
    /// Time spent blocked on a full lane is added to `blocked_ns` (in nanoseconds).
    pub(crate) fn send(
        &self,
        item: T,
        idle: &IdleStrategy,
        abort: &AtomicBool,
        blocked_ns: Option<&AtomicU64>,
    ) -> Result<SendOutcome<T>, SendError<T>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SendError {
                item,
                reason: SendFailure::Closed,
            });
        }
        let outcome = match &self.storage {
            Storage::Unbounded(q) => {
                q.push(item);
                SendOutcome::Sent
            }
            Storage::Bounded(q) => match self.strategy {
                Backpressure::DropOldest => match q.force_push(item) {
                    None => SendOutcome::Sent,
                    Some(old) => SendOutcome::Evicted(old),
                },
                Backpressure::DropNewest => match q.push(item) {
                    Ok(()) => SendOutcome::Sent,
                    Err(item) => return Ok(SendOutcome::Rejected(item)),
                },
                Backpressure::Block | Backpressure::Unbounded => match q.push(item) {
                    Ok(()) => SendOutcome::Sent,
                    Err(item) => {
                        // The attempt owns the item while it retries; it hands it back on failure.
                        let mut slot = Some(item);
                        let since = blocked_ns.map(|_| std::time::Instant::now());
                        let waited = self.not_full.wait(idle, abort, || {
                            if self.closed.load(Ordering::Acquire) {
                                return Some(Err(SendFailure::Closed));
                            }
                            match q.push(slot.take()?) {
                                Ok(()) => Some(Ok(())),
                                Err(back) => {
                                    slot = Some(back);
                                    None
                                }
                            }
                        });
                        if let (Some(total), Some(since)) = (blocked_ns, since) {
                            total.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        }
                        let failure = match waited {
                            Ok(Ok(())) => None,
                            Ok(Err(reason)) => Some(reason),
                            Err(WaitEnd::Aborted) => Some(SendFailure::Aborted),
                        };
                        if let (Some(reason), Some(item)) = (failure, slot) {
                            return Err(SendError { item, reason });
                        }
                        SendOutcome::Sent
                    }
                },
            },
        };
        self.not_empty.notify();
        Ok(outcome)
    }

    /// Takes the oldest item, if any, and wakes a blocked producer once the lane is at most
    /// half full: a producer that went to sleep on a full lane is woken once per half a lane
    /// drained, not once per item (an unpark per item put a system call on the consumer's path
    /// for every batch when a producer outran its consumer). A producer still spinning or
    /// yielding retries by itself, so it refills as soon as there is room.
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        match &self.storage {
            Storage::Bounded(q) => {
                let item = q.pop();
                if item.is_some()
                    && self.strategy == Backpressure::Block
                    && q.len() <= q.capacity() / 2
                {
                    self.not_full.notify();
                }
                item
            }
            Storage::Unbounded(q) => q.pop(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match &self.storage {
            Storage::Bounded(q) => q.is_empty(),
            Storage::Unbounded(q) => q.is_empty(),
        }
    }

    /// Marks the consumer gone: blocked and future sends fail with `Closed`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.not_full.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> IdleStrategy {
        IdleStrategy::balanced()
    }

    #[test]
    fn drop_newest_hands_back_the_rejected_item() {
        let lane = Lane::new(2, Backpressure::DropNewest);
        let abort = AtomicBool::new(false);
        assert_eq!(lane.send(1, &idle(), &abort, None), Ok(SendOutcome::Sent));
        assert_eq!(lane.send(2, &idle(), &abort, None), Ok(SendOutcome::Sent));
        assert_eq!(
            lane.send(3, &idle(), &abort, None),
            Ok(SendOutcome::Rejected(3))
        );
        assert_eq!(
            (lane.pop(), lane.pop(), lane.pop()),
            (Some(1), Some(2), None)
        );
    }

    #[test]
    fn drop_oldest_evicts_and_keeps_newest() {
        let lane = Lane::new(2, Backpressure::DropOldest);
        let abort = AtomicBool::new(false);
        for i in 1..=2 {
            assert_eq!(lane.send(i, &idle(), &abort, None), Ok(SendOutcome::Sent));
        }
        assert_eq!(
            lane.send(3, &idle(), &abort, None),
            Ok(SendOutcome::Evicted(1))
        );
        assert_eq!(
            (lane.pop(), lane.pop(), lane.pop()),
            (Some(2), Some(3), None)
        );
    }

    #[test]
    fn unbounded_never_refuses() {
        let lane = Lane::new(1, Backpressure::Unbounded);
        let abort = AtomicBool::new(false);
        for i in 0..1000 {
            assert_eq!(lane.send(i, &idle(), &abort, None), Ok(SendOutcome::Sent));
        }
        assert_eq!((0..1000).map(|_| lane.pop()).last(), Some(Some(999)));
    }

    #[test]
    fn block_gives_the_item_back_on_abort_and_close() {
        let lane = Lane::new(1, Backpressure::Block);
        let abort = AtomicBool::new(true);
        assert_eq!(lane.send(1, &idle(), &abort, None), Ok(SendOutcome::Sent));
        let err = lane.send(2, &idle(), &abort, None).unwrap_err();
        assert_eq!((err.item, err.reason), (2, SendFailure::Aborted));
        lane.close();
        let err = lane
            .send(3, &idle(), &AtomicBool::new(false), None)
            .unwrap_err();
        assert_eq!((err.item, err.reason), (3, SendFailure::Closed));
    }
}
