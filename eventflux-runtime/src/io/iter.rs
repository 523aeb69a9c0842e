//! `IterSource`: events from any iterator.

use crate::error::SourceError;
use crate::source::{Source, SourceContext, SourcePoll};
use crate::stage::Emit;

/// A source reading an iterator to its end. Never `Pending`.
///
/// ```
/// use eventflux_runtime::prelude::*;
/// let source = IterSource::new(vec![1, 2, 3]);
/// # let _ = source;
/// ```
#[derive(Debug, Clone)]
pub struct IterSource<I> {
    iter: I,
}

impl<I: Iterator> IterSource<I> {
    /// Reads `iter` (anything `IntoIterator`: a `Vec`, a range, a generator).
    pub fn new(iter: impl IntoIterator<IntoIter = I>) -> Self {
        Self {
            iter: iter.into_iter(),
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
        Ok(if taken < max {
            SourcePoll::Done
        } else {
            SourcePoll::Ready
        })
    }
}
