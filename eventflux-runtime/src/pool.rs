//! Object pools: recycled batch buffers and user objects, so a steady-state pipeline allocates
//! nothing.
//!
//! A [`Pool`] is a lock-free bounded free list (`ArrayQueue`). [`acquire`](Pool::acquire) takes a
//! free object (a *hit*) or makes a new one (a *miss*); [`release`](Pool::release) resets the
//! object and keeps it if there is room (otherwise it is dropped and counted as *discarded*).
//! [`EventPool`] is the pool of batch buffers (`Vec<T>`) that queues use: after warm-up every
//! acquire is a hit.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam::queue::ArrayQueue;

/// Objects that can be cleared for reuse.
///
/// ```
/// use eventflux_runtime::pool::Reset;
/// let mut v = vec![1, 2];
/// v.reset();
/// assert!(v.is_empty() && v.capacity() >= 2);
/// ```
pub trait Reset {
    /// Clears the object's contents, keeping its allocations.
    fn reset(&mut self);
}

impl<T> Reset for Vec<T> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl Reset for String {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<T> Reset for std::collections::VecDeque<T> {
    fn reset(&mut self) {
        self.clear();
    }
}

impl<K, V, S> Reset for std::collections::HashMap<K, V, S> {
    fn reset(&mut self) {
        self.clear();
    }
}

/// Counters of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct PoolStats {
    /// Acquires served from the free list.
    pub hits: u64,
    /// Acquires that had to create an object.
    pub misses: u64,
    /// Released objects that were kept.
    pub returned: u64,
    /// Released objects dropped because the free list was full (or they were too small).
    pub discarded: u64,
}

/// A bounded, lock-free pool of reusable objects. See the [module docs](self).
///
/// ```
/// use eventflux_runtime::pool::Pool;
/// let pool = Pool::new(4, || String::with_capacity(64));
/// let mut s = pool.acquire();
/// s.push_str("hello");
/// pool.release(s);
/// let s = pool.acquire();
/// assert!(s.is_empty() && s.capacity() >= 64);
/// assert_eq!((pool.stats().hits, pool.stats().misses), (1, 1));
/// ```
pub struct Pool<T> {
    free: ArrayQueue<T>,
    make: Box<dyn Fn() -> T + Send + Sync>,
    hits: AtomicU64,
    misses: AtomicU64,
    returned: AtomicU64,
    discarded: AtomicU64,
}

impl<T: Reset> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("free", &self.free.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T: Reset> Pool<T> {
    /// A pool keeping at most `capacity` (≥ 1) free objects, creating new ones with `make`.
    pub fn new(capacity: usize, make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            free: ArrayQueue::new(capacity.max(1)),
            make: Box::new(make),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    /// Takes a free object, or creates one.
    #[inline]
    pub fn acquire(&self) -> T {
        match self.free.pop() {
            Some(t) => {
                self.hits.fetch_add(1, Relaxed);
                t
            }
            None => {
                self.misses.fetch_add(1, Relaxed);
                (self.make)()
            }
        }
    }

    /// Resets `item` and keeps it for reuse if there is room.
    #[inline]
    pub fn release(&self, mut item: T) {
        item.reset();
        if self.free.push(item).is_ok() {
            self.returned.fetch_add(1, Relaxed);
        } else {
            self.discarded.fetch_add(1, Relaxed);
        }
    }

    /// Adds `n` new objects to the free list, as far as it has room (to take misses out of a
    /// steady state).
    pub fn prefill(&self, n: usize) {
        for _ in 0..n {
            if self.free.push((self.make)()).is_err() {
                break;
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            returned: self.returned.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
        }
    }

    /// Free objects held now.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

/// The pool of batch buffers: `Vec<T>`s of a fixed capacity, cleared on release.
///
/// Buffers whose capacity shrank below the batch size (a consumer that took ownership of the
/// allocation, say) are discarded rather than kept, so every acquired buffer can hold a whole
/// batch without reallocating.
///
/// ```
/// use eventflux_runtime::pool::EventPool;
/// let pool: EventPool<u64> = EventPool::new(8, 256);
/// let mut batch = pool.acquire();
/// assert!(batch.capacity() >= 256);
/// batch.extend(0..256);
/// pool.release(batch);
/// assert_eq!(pool.acquire().len(), 0);
/// assert_eq!(pool.stats().hits, 1);
/// ```
pub struct EventPool<T> {
    pool: Pool<Vec<T>>,
    batch_size: usize,
}

impl<T> fmt::Debug for EventPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPool")
            .field("batch_size", &self.batch_size)
            .field("pool", &self.pool)
            .finish()
    }
}

impl<T> EventPool<T> {
    /// A pool of at most `buffers` free buffers of capacity `batch_size`.
    pub fn new(buffers: usize, batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        let pool = Pool::new(buffers, move || Vec::with_capacity(batch_size));
        Self { pool, batch_size }
    }

    /// A cleared buffer with room for a whole batch.
    #[inline]
    pub fn acquire(&self) -> Vec<T> {
        self.pool.acquire()
    }

    /// Clears `batch` and keeps it for reuse.
    #[inline]
    pub fn release(&self, batch: Vec<T>) {
        if batch.capacity() < self.batch_size {
            self.pool.discarded.fetch_add(1, Relaxed);
            return;
        }
        self.pool.release(batch);
    }

    /// Adds `n` new buffers to the free list, as far as it has room.
    pub fn prefill(&self, n: usize) {
        self.pool.prefill(n);
    }

    /// The batch size buffers are made for.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The counters so far.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discards_when_full_and_when_shrunk() {
        let pool: EventPool<u8> = EventPool::new(1, 16);
        pool.release(Vec::with_capacity(16));
        pool.release(Vec::with_capacity(16));
        pool.release(Vec::new());
        let s = pool.stats();
        assert_eq!((s.returned, s.discarded), (1, 2));
        assert_eq!(pool.acquire().capacity(), 16);
        assert_eq!(pool.acquire().capacity(), 16);
        let s = pool.stats();
        assert_eq!((s.hits, s.misses), (1, 1));
    }
}
