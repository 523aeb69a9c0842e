//! Pipeline configuration, validated on construction.
//!
//! Every field has a documented range; [`PipelineConfigBuilder::build`] returns
//! [`ConfigError`] naming the first offending field and its allowed range, so a bad value never
//! reaches a running pipeline.

use crate::state::Compression;
use std::time::Duration;

use crate::backpressure::Backpressure;
use crate::error::ConfigError;
use crate::idle::IdleStrategy;

/// Largest queue capacity, in events.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 28;
/// Largest batch size, in events.
pub const MAX_BATCH_SIZE: usize = 1 << 20;
/// Most batches one queue holds (`queue_capacity / batch_size`, rounded up): each is a slot
/// allocated up front.
pub const MAX_QUEUE_SLOTS: usize = 1 << 16;
/// Default bound on the memory one queue may reserve for its events, in bytes (1 GiB).
pub const DEFAULT_QUEUE_MEMORY_LIMIT: usize = 1 << 30;

/// How a pipeline runs. Build one with [`PipelineConfig::builder`].
///
/// ```
/// use eventflux_runtime::{Backpressure, PipelineConfig};
/// let config = PipelineConfig::builder()
///     .queue_capacity(65_536)
///     .batch_size(1024)
///     .backpressure(Backpressure::Block)
///     .build()?;
/// assert_eq!(config.queue_slots(), 64);
/// # Ok::<(), eventflux_runtime::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    queue_capacity: usize,
    batch_size: usize,
    backpressure: Backpressure,
    metrics: bool,
    idle: IdleStrategy,
    stop_timeout: Duration,
    queue_memory_limit: usize,
    checkpoint_interval: Option<Duration>,
    checkpoints_kept: usize,
    checkpoint_compression: Compression,
    checkpoint_full_every: u64,
    checkpoint_timeout: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 1024,
            backpressure: Backpressure::Block,
            metrics: true,
            idle: IdleStrategy::balanced(),
            stop_timeout: Duration::from_secs(5),
            queue_memory_limit: DEFAULT_QUEUE_MEMORY_LIMIT,
            checkpoint_interval: None,
            checkpoints_kept: 3,
            checkpoint_compression: Compression::None,
            checkpoint_full_every: 10,
            checkpoint_timeout: Duration::from_secs(600),
        }
    }
}

impl PipelineConfig {
    /// A builder starting from the defaults: capacity 65 536 events, batches of 1024, `Block`,
    /// metrics on, [`IdleStrategy::balanced`], stop timeout 5 s.
    pub fn builder() -> PipelineConfigBuilder {
        PipelineConfigBuilder {
            config: PipelineConfig::default(),
        }
    }

    /// Events a queue buffers at most (rounded up to whole batches).
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Events per batch crossing a queue.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches a queue holds: `ceil(queue_capacity / batch_size)`.
    pub fn queue_slots(&self) -> usize {
        self.queue_capacity.div_ceil(self.batch_size)
    }

    /// The default backpressure strategy of queues.
    pub fn backpressure(&self) -> Backpressure {
        self.backpressure
    }

    /// Whether latency histograms and metric publication are on.
    pub fn metrics(&self) -> bool {
        self.metrics
    }

    /// How idle threads wait.
    pub fn idle(&self) -> IdleStrategy {
        self.idle
    }

    pub(crate) fn set_checkpoint_interval(&mut self, every: Duration) {
        self.checkpoint_interval = Some(every);
    }

    /// The checkpoint interval, if checkpoints are taken on a timer.
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        self.checkpoint_interval
    }

    /// Completed checkpoints kept.
    pub fn checkpoints_kept(&self) -> usize {
        self.checkpoints_kept
    }

    /// The compression of state files.
    pub fn checkpoint_compression(&self) -> Compression {
        self.checkpoint_compression
    }

    /// How long a checkpoint may take before it is given up.
    pub fn checkpoint_timeout(&self) -> Duration {
        self.checkpoint_timeout
    }

    /// How often incremental states save in full (in checkpoints).
    pub fn checkpoint_full_every(&self) -> u64 {
        self.checkpoint_full_every
    }

    /// How long `stop()` waits for a graceful drain before aborting.
    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout
    }

    /// The most memory, in bytes, one queue may reserve for its events. A bounded queue
    /// allocates all of it up front (so it never allocates while running):
    /// `(queue_slots + 3) × batch_size × size_of::<Event>()` bytes.
    pub fn queue_memory_limit(&self) -> usize {
        self.queue_memory_limit
    }

    /// Checks that a queue of events of `event_size` bytes under these settings fits in
    /// [`queue_memory_limit`](Self::queue_memory_limit).
    pub fn check_queue_memory(
        &self,
        capacity: usize,
        batch_size: usize,
        event_size: usize,
    ) -> Result<(), ConfigError> {
        let buffers = capacity.div_ceil(batch_size.max(1)).saturating_add(3);
        let bytes = buffers
            .saturating_mul(batch_size)
            .saturating_mul(event_size.max(1));
        if bytes > self.queue_memory_limit {
            return Err(ConfigError::OutOfRange {
                field: "queue_capacity",
                value: capacity.to_string(),
                allowed: format!(
                    "a queue that fits in queue_memory_limit ({} bytes): {capacity} events of {event_size} bytes \
                     in batches of {batch_size} reserve {bytes} bytes; lower queue_capacity or raise queue_memory_limit",
                    self.queue_memory_limit
                ),
            });
        }
        Ok(())
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity) {
            return Err(ConfigError::OutOfRange {
                field: "queue_capacity",
                value: self.queue_capacity.to_string(),
                allowed: format!("1 to {MAX_QUEUE_CAPACITY} events"),
            });
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(ConfigError::OutOfRange {
                field: "batch_size",
                value: self.batch_size.to_string(),
                allowed: format!("1 to {MAX_BATCH_SIZE} events"),
            });
        }
        if self.batch_size > self.queue_capacity {
            return Err(ConfigError::OutOfRange {
                field: "batch_size",
                value: self.batch_size.to_string(),
                allowed: format!(
                    "1 to queue_capacity ({}): a queue must hold at least one batch",
                    self.queue_capacity
                ),
            });
        }
        let slots = self.queue_slots();
        if slots > MAX_QUEUE_SLOTS {
            return Err(ConfigError::OutOfRange {
                field: "batch_size",
                value: self.batch_size.to_string(),
                allowed: format!(
                    "at least queue_capacity / {MAX_QUEUE_SLOTS} ({}): a queue holds at most \
                     {MAX_QUEUE_SLOTS} batches, and queue_capacity {} in batches of {} needs {slots}",
                    self.queue_capacity.div_ceil(MAX_QUEUE_SLOTS),
                    self.queue_capacity,
                    self.batch_size
                ),
            });
        }
        if self.queue_memory_limit < 1024 {
            return Err(ConfigError::OutOfRange {
                field: "queue_memory_limit",
                value: self.queue_memory_limit.to_string(),
                allowed: "at least 1024 bytes".into(),
            });
        }
        self.idle.validate()?;
        if self.stop_timeout < Duration::from_millis(1)
            || self.stop_timeout > Duration::from_secs(3600)
        {
            return Err(ConfigError::OutOfRange {
                field: "stop_timeout",
                value: format!("{:?}", self.stop_timeout),
                allowed: "1ms to 1h".into(),
            });
        }
        if let Some(i) = self.checkpoint_interval
            && (i < Duration::from_millis(1) || i > Duration::from_secs(86_400))
        {
            return Err(ConfigError::OutOfRange {
                field: "checkpoint_interval_ms",
                value: i.as_millis().to_string(),
                allowed: "1 to 86400000 (1 ms to a day)".into(),
            });
        }
        if self.checkpoint_timeout < Duration::from_millis(1)
            || self.checkpoint_timeout > Duration::from_secs(86_400)
        {
            return Err(ConfigError::OutOfRange {
                field: "checkpoint_timeout",
                value: format!("{:?}", self.checkpoint_timeout),
                allowed: "1ms to 1 day".into(),
            });
        }
        if self.checkpoint_full_every == 0 || self.checkpoint_full_every > 1000 {
            return Err(ConfigError::OutOfRange {
                field: "checkpoint_full_every",
                value: self.checkpoint_full_every.to_string(),
                allowed: "1 to 1000".into(),
            });
        }
        if self.checkpoints_kept == 0 || self.checkpoints_kept > 1000 {
            return Err(ConfigError::OutOfRange {
                field: "checkpoints_kept",
                value: self.checkpoints_kept.to_string(),
                allowed: "1 to 1000".into(),
            });
        }
        Ok(())
    }
}

/// Builds a validated [`PipelineConfig`].
#[derive(Debug, Clone)]
pub struct PipelineConfigBuilder {
    config: PipelineConfig,
}

impl PipelineConfigBuilder {
    /// Events a queue buffers (1 – 2^28; at least `batch_size`).
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.config.queue_capacity = events;
        self
    }

    /// Events per batch (1 – 2^20).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.config.batch_size = events;
        self
    }

    /// The queues' backpressure strategy.
    pub fn backpressure(mut self, strategy: Backpressure) -> Self {
        self.config.backpressure = strategy;
        self
    }

    /// Turns latency histograms and metric publication on or off.
    pub fn metrics(mut self, on: bool) -> Self {
        self.config.metrics = on;
        self
    }

    /// How idle threads wait.
    pub fn idle(mut self, idle: IdleStrategy) -> Self {
        self.config.idle = idle;
        self
    }

    /// How long `stop()` waits for a graceful drain (1 ms – 1 h).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.config.stop_timeout = timeout;
        self
    }

    /// The most memory one queue may reserve, in bytes (default 1 GiB; at least 1024).
    pub fn queue_memory_limit(mut self, bytes: usize) -> Self {
        self.config.queue_memory_limit = bytes;
        self
    }

    /// Takes a checkpoint this often, when the pipeline checkpoints (see
    /// [`Pipeline::checkpoints`](crate::Pipeline::checkpoints)); 1 ms – 1 day. Without it,
    /// checkpoints are taken only when asked for
    /// ([`PipelineHandle::checkpoint`](crate::PipelineHandle::checkpoint)).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.config.checkpoint_interval = Some(interval);
        self
    }

    /// Completed checkpoints kept in the directory (1 – 1000; default 3).
    pub fn checkpoints_kept(mut self, n: usize) -> Self {
        self.config.checkpoints_kept = n;
        self
    }

    /// Whether state files are compressed (default: not).
    pub fn checkpoint_compression(mut self, compression: Compression) -> Self {
        self.config.checkpoint_compression = compression;
        self
    }

    /// Incremental states ([`Keyed`](crate::state::Keyed)) save everything every this many
    /// checkpoints and only their changes in between (1 – 1000; default 10; 1: always full).
    pub fn checkpoint_full_every(mut self, n: u64) -> Self {
        self.config.checkpoint_full_every = n;
        self
    }

    /// A checkpoint not stored within this long (a segment stuck in a sink, say) is given up,
    /// so that the next can start (1 ms – 1 day; default 10 minutes).
    pub fn checkpoint_timeout(mut self, timeout: Duration) -> Self {
        self.config.checkpoint_timeout = timeout;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<PipelineConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ConfigError) -> &'static str {
        match e {
            ConfigError::OutOfRange { field, .. } | ConfigError::UnknownValue { field, .. } => {
                field
            }
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let b = PipelineConfig::builder;
        assert_eq!(
            field_of(b().queue_capacity(0).build().unwrap_err()),
            "queue_capacity"
        );
        assert_eq!(
            field_of(b().batch_size(0).build().unwrap_err()),
            "batch_size"
        );
        assert_eq!(
            field_of(b().queue_capacity(10).batch_size(11).build().unwrap_err()),
            "batch_size"
        );
        assert_eq!(
            field_of(b().stop_timeout(Duration::ZERO).build().unwrap_err()),
            "stop_timeout"
        );
        let idle = IdleStrategy {
            spin: 1_000_000,
            ..IdleStrategy::balanced()
        };
        assert_eq!(field_of(b().idle(idle).build().unwrap_err()), "idle.spin");
        let msg = b().queue_capacity(0).build().unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid `queue_capacity`: 0 is out of range; allowed: 1 to 268435456 events"
        );
    }

    #[test]
    fn settings_that_cannot_be_allocated_are_rejected() {
        // 2^28 events in batches of 1 would be 2^28 slots: rejected before anything allocates.
        let e = PipelineConfig::builder()
            .queue_capacity(268_435_456)
            .batch_size(1)
            .build()
            .unwrap_err();
        assert_eq!(field_of(e.clone()), "batch_size");
        assert!(e.to_string().contains("at most 65536 batches"), "{e}");
        // Within the slot bound, the memory the event type implies is checked per queue.
        let c = PipelineConfig::builder()
            .queue_capacity(1 << 28)
            .batch_size(1 << 12)
            .build()
            .unwrap();
        let e = c.check_queue_memory(1 << 28, 1 << 12, 64).unwrap_err();
        assert_eq!(field_of(e.clone()), "queue_capacity");
        assert!(e.to_string().contains("queue_memory_limit"), "{e}");
        assert!(c.check_queue_memory(1 << 16, 1 << 10, 64).is_ok());
        assert_eq!(
            field_of(b_limit(100).unwrap_err()),
            "queue_memory_limit",
            "a limit below 1 KiB is a mistake"
        );
    }

    fn b_limit(bytes: usize) -> Result<PipelineConfig, ConfigError> {
        PipelineConfig::builder().queue_memory_limit(bytes).build()
    }

    #[test]
    fn slots_round_up() {
        let c = PipelineConfig::builder()
            .queue_capacity(1000)
            .batch_size(300)
            .build()
            .unwrap();
        assert_eq!(c.queue_slots(), 4);
    }
}
