//! `IterSource`: events from any iterator.

use crate::error::SourceError;
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::Emit;

/// A source reading an iterator to its end. Never `Pending`.
///
/// It replays for checkpoints by count: recovery builds it again and skips the events emitted
/// before the checkpoint, so the iterator must yield the same events each time. An iterator
/// that blocks (a channel's receiver) holds the segment while it waits, checkpoints included:
/// feed live input through [`channel_source`](crate::io::channel_source) instead.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let source = IterSource::new(vec![1, 2, 3]);
/// # let _ = source;
/// ```
#[derive(Debug, Clone)]
pub struct IterSource<I> {
    iter: I,
    /// Events emitted so far: the replay position.
    emitted: u64,
}

impl<I: Iterator> IterSource<I> {
    /// Reads `iter` (anything `IntoIterator`: a `Vec`, a range, a generator).
    pub fn new(iter: impl IntoIterator<IntoIter = I>) -> Self {
        Self {
            iter: iter.into_iter(),
            emitted: 0,
        }
    }
}

impl<I> Source for IterSource<I>
where
    I: Iterator + Send,
{
    type Item = I::Item;

    #[inline]
    fn poll<E: Emit<I::Item>>(
        &mut self,
        cx: &mut SourceContext<'_>,
        out: &mut E,
    ) -> Result<SourcePoll, SourceError> {
        // One run per poll: a fused chain processes it as a single loop.
        let max = cx.max_items();
        let mut taken = 0usize;
        out.emit_all(self.iter.by_ref().take(max).inspect(|_| taken += 1));
        self.emitted += taken as u64;
        Ok(if taken < max {
            SourcePoll::Done
        } else {
            SourcePoll::Ready
        })
    }

    /// The number of events emitted.
    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "events": self.emitted }))
    }

    /// Skips the events emitted before `position` (the iterator must yield the same events
    /// again: build the source the same way).
    fn seek(&mut self, position: &serde_json::Value) -> Result<(), SourceError> {
        let bad = |reason: String| SourceError::seek(position, reason);
        let n = position
            .get("events")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("expected {\"events\": <count>}".into()))?;
        let skipped = self.iter.by_ref().take(n as usize).count() as u64;
        if skipped < n {
            return Err(bad(format!("the iterator ends after {skipped} events")));
        }
        self.emitted = n;
        Ok(())
    }
}
