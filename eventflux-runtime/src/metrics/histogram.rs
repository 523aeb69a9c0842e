//! A log-linear latency histogram (HDR-style) with lock-free single-writer recording.
//!
//! Values are nanoseconds (any `u64`). Each power of two is split into 32 linear sub-buckets, so
//! a reported percentile is within 1/32 (≈ 3.1 %) of the true value — the midpoint of the bucket
//! is reported, which halves that bound in practice. Values below 32 are exact.
//!
//! Each histogram has one writer (the thread that owns a stage or queue end), which records with
//! relaxed atomic adds on cache lines nobody else writes; readers merge any number of histograms
//! into a [`HistogramSnapshot`]. Nothing is averaged or decayed: percentiles are exact over
//! everything recorded, up to the bucket precision.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Number of buckets: 32 exact ones, then 32 for each power of two from 2^5 to 2^63.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// Index of the bucket holding `v`.
#[inline]
fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let mantissa = (v >> shift) as usize; // in [SUB, 2*SUB)
    (msb - SUB_BITS + 1) as usize * SUB + (mantissa - SUB)
}

/// Lowest value and width of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let group = (i / SUB) as u32; // >= 1
    let mantissa = (SUB + i % SUB) as u64;
    let shift = group - 1;
    (mantissa << shift, 1u64 << shift)
}

/// A recording histogram: 32 linear sub-buckets per power of two, so a percentile is within
/// 1/32 of the true value (values below 32 are exact); one writer, any number of readers.
///
/// ```
/// use eventflux_runtime::metrics::Histogram;
/// let h = Histogram::new();
/// for v in 1..=1000u64 { h.record(v); }
/// let s = h.snapshot();
/// assert_eq!(s.count(), 1000);
/// let p50 = s.percentile(0.5);
/// assert!((485..=515).contains(&p50), "{p50}");
/// ```
pub struct Histogram {
    /// Allocated at the first record: most nodes' histograms (a stage's, one per key group in
    /// a keyed segment) are never written.
    buckets: OnceLock<Box<[AtomicU64]>>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// An empty histogram (about 15 KiB once something is recorded; nothing before).
    pub fn new() -> Self {
        Self {
            buckets: OnceLock::new(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `n` occurrences of `value` (a batch of events that shared one latency).
    #[inline]
    pub fn record_n(&self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        let buckets = self
            .buckets
            .get_or_init(|| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect());
        if let Some(bucket) = buckets.get(bucket_of(value)) {
            bucket.fetch_add(n, Relaxed);
        }
        self.count.fetch_add(n, Relaxed);
        self.sum
            .fetch_add(value.saturating_mul(n).min(u64::MAX / 4), Relaxed);
        if value > self.max.load(Relaxed) {
            self.max.fetch_max(value, Relaxed);
        }
    }

    /// A copy of the current contents.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::empty();
        s.merge_from(self);
        s
    }
}

/// A point-in-time, mergeable copy of one or more [`Histogram`]s.
///
/// ```
/// use eventflux_runtime::metrics::{Histogram, HistogramSnapshot};
/// let (a, b) = (Histogram::new(), Histogram::new());
/// a.record(10);
/// b.record(30);
/// let mut s = HistogramSnapshot::empty();
/// s.merge_from(&a);
/// s.merge_from(&b);
/// assert_eq!((s.count(), s.max(), s.percentile(1.0)), (2, 30, 30));
/// ```
#[derive(Clone, Debug)]
pub struct HistogramSnapshot {
    buckets: Vec<u64>,
    count: u64,
    sum: u64,
    max: u64,
}

impl HistogramSnapshot {
    /// A snapshot with nothing recorded.
    pub fn empty() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    /// Adds the contents of a live histogram (merge on read).
    pub fn merge_from(&mut self, h: &Histogram) {
        let live = h.buckets.get().map_or(&[][..], |b| &b[..]);
        for (dst, src) in self.buckets.iter_mut().zip(live) {
            *dst += src.load(Relaxed);
        }
        self.count += h.count.load(Relaxed);
        self.sum = self.sum.saturating_add(h.sum.load(Relaxed));
        self.max = self.max.max(h.max.load(Relaxed));
    }

    /// Adds another snapshot.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (dst, src) in self.buckets.iter_mut().zip(&other.buckets) {
            *dst += *src;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest recorded value (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.0–1.0): the midpoint of the bucket holding the
    /// `ceil(q × count)`-th smallest value, capped at the exact maximum. 0 when empty.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                return (low + (width - 1) / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut expected_low = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bucket_range(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(low + (width - 1)), i);
            expected_low = low.wrapping_add(width);
        }
        assert_eq!(expected_low, 0, "last bucket ends at u64::MAX");
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact() {
        let h = Histogram::new();
        for v in [0u64, 1, 2, 3, 31] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.percentile(0.0), 0);
        assert_eq!(s.percentile(0.4), 1);
        assert_eq!(s.percentile(0.6), 2);
        assert_eq!(s.percentile(1.0), 31);
    }

    #[test]
    fn relative_error_is_bounded() {
        for v in [33u64, 1000, 123_456, 9_999_999_999, u64::MAX / 3] {
            let h = Histogram::new();
            h.record(v);
            let got = h.snapshot().percentile(0.5) as f64;
            let err = (got - v as f64).abs() / v as f64;
            assert!(err <= 1.0 / 32.0, "{v}: {got}");
        }
    }

    #[test]
    fn weighted_records_count_every_event() {
        let h = Histogram::new();
        h.record_n(100, 99);
        h.record_n(10_000, 1);
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.percentile(0.99), 100);
        assert!((9_700..=10_000).contains(&s.percentile(0.999)));
        assert_eq!(s.max(), 10_000);
    }
}
