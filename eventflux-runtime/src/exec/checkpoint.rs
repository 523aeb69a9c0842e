//! The checkpoint coordinator: aligned-barrier checkpoints (Flink's asynchronous barrier
//! snapshotting, made synchronous per segment).
//!
//! Checkpoint *n* starts when it is requested — every `checkpoint_interval`, or by
//! [`PipelineHandle::checkpoint`](crate::PipelineHandle::checkpoint). Each source segment sees
//! the request between two polls: its chain handles the barrier, its source's position and its
//! stages' states are taken, and barrier *n* goes downstream in band, behind every event
//! emitted before it. A queue with several producers aligns: what a producer sends after its
//! barrier waits until every producer's barrier has arrived. Each segment saves its states
//! when the barrier passes and acknowledges; sinks pre-commit when it reaches them. When every
//! running segment has acknowledged, a writer thread writes the states to the
//! [`StateBackend`] with a manifest of the sources' positions, and sinks commit. One
//! checkpoint is in flight at a time: an interval checkpoint is not started before the
//! previous one is stored or given up.
//!
//! Not on the hot path: the per-poll check is one atomic load (and one clock read when an
//! interval is set); acknowledgements take a lock once per segment per checkpoint; files are
//! written and fsynced off the segments' threads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::PipelineConfig;
use crate::state::{Compression, Manifest, StateBackend, StorageError};

/// Checkpoint durations kept in [`CheckpointStats::durations_ms`].
const KEPT_DURATIONS: usize = 1024;

/// What a completed checkpoint took.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointInfo {
    /// Its id.
    pub id: u64,
    /// From the request to the durable manifest.
    pub duration: Duration,
    /// Bytes of state written (for incremental states, their deltas).
    pub bytes: u64,
    /// The longest barrier alignment at a queue with several producers.
    pub alignment: Duration,
}

/// Counts of the checkpoints of a run, for its report and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointStats {
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints that failed (storage errors) or were superseded before completing.
    pub failed: u64,
    /// The last completed one.
    pub last: Option<CheckpointInfo>,
    /// Durations of the last completed checkpoints (at most 1024, so a long run's report
    /// stays small), in milliseconds, oldest first.
    pub durations_ms: Vec<u64>,
    /// Sources that cannot replay: after a crash, the events they had emitted since the last
    /// checkpoint are not seen again (at most once for those).
    pub at_most_once: Vec<String>,
}

/// One checkpoint being taken.
struct Pending {
    started: Instant,
    alignment: Duration,
    acked: BTreeSet<String>,
    states: BTreeMap<String, Vec<u8>>,
    /// States saved as deltas, with the completed checkpoint each is a delta against.
    deltas: BTreeMap<String, u64>,
    sources: BTreeMap<String, serde_json::Value>,
}

impl Pending {
    fn new(started: Instant) -> Self {
        Pending {
            started,
            alignment: Duration::ZERO,
            acked: BTreeSet::new(),
            states: BTreeMap::new(),
            deltas: BTreeMap::new(),
            sources: BTreeMap::new(),
        }
    }
}

struct State {
    /// Segments still running: a checkpoint completes when all of them have acknowledged.
    live: BTreeSet<String>,
    /// Final positions of sources whose segments have finished.
    finished_sources: BTreeMap<String, serde_json::Value>,
    pending: BTreeMap<u64, Pending>,
    stats: CheckpointStats,
    /// The last failure, with the checkpoint it concerned.
    failure: Option<(u64, String)>,
}

/// Coordinates the checkpoints of one run (see the [module documentation](self)): the shared
/// part, used by segments and by the writer thread that stores completed checkpoints.
pub(crate) struct Inner {
    requested: AtomicU64,
    completed: AtomicU64,
    /// The newest checkpoint stored, failed or given up.
    settled: AtomicU64,
    /// Nanoseconds after `epoch` when the newest checkpoint was requested.
    requested_at: AtomicU64,
    /// A checkpoint not stored within this long is given up (nanoseconds).
    timeout_ns: u64,
    /// The checkpoint interval (nanoseconds), if checkpoints are taken on a timer.
    interval_ns: Option<u64>,
    epoch: Instant,
    /// Nanoseconds after `epoch` when the next interval checkpoint is due.
    next_due: AtomicU64,
    state: Mutex<State>,
    changed: Condvar,
    backend: Mutex<Box<dyn StateBackend>>,
    compression: Compression,
    /// Incremental states save in full every this many checkpoints.
    full_every: u64,
    /// The writer thread's queue (`None`: write on the acknowledging thread, or shut down).
    writer: Mutex<Option<mpsc::Sender<Work>>>,
    /// Each keyed segment's number of workers (recorded in manifests).
    workers: BTreeMap<String, usize>,
}

/// A keyed worker's segment name, `name#worker` (as `pipeline!` names them), split into the
/// segment's name and the worker's index; `None` for any other segment.
pub(crate) fn keyed_worker(segment: &str) -> Option<(&str, &str)> {
    segment.split_once('#')
}

/// The keyed segments among `segments` and their number of workers.
pub(crate) fn keyed_workers<'a>(
    segments: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, usize> {
    let mut workers = BTreeMap::new();
    for name in segments {
        if let Some((base, _)) = keyed_worker(name) {
            *workers.entry(base.to_string()).or_insert(0) += 1;
        }
    }
    workers
}

/// What the writer thread does.
enum Work {
    /// Store a checkpoint every segment acknowledged.
    Write(Completed),
    /// Reply once everything sent before is stored.
    Flush(mpsc::Sender<()>),
}

/// A checkpoint every segment acknowledged, to be stored.
struct Completed {
    id: u64,
    started: Instant,
    alignment: Duration,
    states: BTreeMap<String, Vec<u8>>,
    deltas: BTreeMap<String, u64>,
    sources: BTreeMap<String, serde_json::Value>,
}

/// The coordinator with its writer thread: state files are written and fsynced there, off the
/// segments' threads, in checkpoint order; dropping it finishes the writes queued.
pub(crate) struct Coordinator {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl std::ops::Deref for Coordinator {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has stored what was queued.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Coordinator {
    /// A coordinator storing into `backend` as `config` says (interval, compression, full
    /// copies, timeout), whose checkpoint ids continue after `last` (the checkpoint resumed
    /// from, or 0).
    pub(crate) fn new(
        backend: Box<dyn StateBackend>,
        config: &PipelineConfig,
        last: u64,
        segments: impl IntoIterator<Item = String>,
    ) -> Self {
        let inner = Arc::new(Inner::new(backend, config, last, segments));
        let (tx, rx) = mpsc::channel();
        let writer = Arc::clone(&inner);
        let thread = thread::Builder::new()
            .name("ef-checkpoint".into())
            .spawn(move || writer.write_loop(rx))
            .ok();
        if thread.is_some() {
            *inner.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
        }
        Coordinator { inner, thread }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("requested", &self.requested)
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn new(
        backend: Box<dyn StateBackend>,
        config: &PipelineConfig,
        last: u64,
        segments: impl IntoIterator<Item = String>,
    ) -> Self {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let interval_ns = config.checkpoint_interval().map(nanos);
        let live: BTreeSet<String> = segments.into_iter().collect();
        Inner {
            workers: keyed_workers(live.iter().map(String::as_str)),
            requested: AtomicU64::new(last),
            completed: AtomicU64::new(last),
            settled: AtomicU64::new(last),
            requested_at: AtomicU64::new(0),
            timeout_ns: nanos(config.checkpoint_timeout()),
            interval_ns,
            epoch: Instant::now(),
            next_due: AtomicU64::new(interval_ns.unwrap_or(u64::MAX)),
            state: Mutex::new(State {
                live,
                finished_sources: BTreeMap::new(),
                pending: BTreeMap::new(),
                stats: CheckpointStats::default(),
                failure: None,
            }),
            changed: Condvar::new(),
            backend: Mutex::new(backend),
            compression: config.checkpoint_compression(),
            full_every: config.checkpoint_full_every().max(1),
            writer: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest checkpoint a source segment that has started `last` should start now, if
    /// any: one requested by hand, or the interval's when it is due (the first source to see
    /// it due requests it for all).
    #[inline]
    pub(crate) fn due(&self, last: u64) -> Option<u64> {
        if let Some(step) = self.interval_ns {
            let now = self.epoch.elapsed().as_nanos() as u64;
            let due = self.next_due.load(Ordering::Relaxed);
            if now >= due {
                self.interval_due(now, due, step);
            }
        }
        let requested = self.requested.load(Ordering::Acquire);
        (requested > last).then_some(requested)
    }

    /// The interval has come round (`due`, seen at `now`): requests the next checkpoint — one
    /// at a time, so the last one must be stored first (an incremental checkpoint's base is
    /// then always the newest stored one), or given up once it has taken longer than the
    /// timeout.
    #[cold]
    fn interval_due(&self, now: u64, due: u64, step: u64) {
        let requested = self.requested.load(Ordering::Acquire);
        if self.settled.load(Ordering::Acquire) < requested {
            if now.saturating_sub(self.requested_at.load(Ordering::Acquire)) <= self.timeout_ns {
                return;
            }
            self.give_up(requested);
        }
        // The first source to see it due requests it for all.
        if self
            .next_due
            .compare_exchange(
                due,
                now.saturating_add(step),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.requested.fetch_add(1, Ordering::AcqRel);
            self.requested_at.store(now, Ordering::Release);
        }
    }

    /// Requests a checkpoint now; returns its id.
    pub(crate) fn request(&self) -> u64 {
        self.requested_at
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Release);
        self.requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Gives up checkpoints up to `id` that did not complete in time (a segment stuck in a
    /// sink, say): later checkpoints may start.
    #[cold]
    fn give_up(&self, id: u64) {
        let mut st = self.lock();
        let stuck: Vec<u64> = st.pending.keys().copied().filter(|&p| p <= id).collect();
        for p in stuck {
            st.pending.remove(&p);
            st.stats.failed += 1;
        }
        if self.settled.fetch_max(id, Ordering::AcqRel) < id {
            let limit = Duration::from_nanos(self.timeout_ns);
            tracing::warn!(checkpoint = id, timeout = ?limit, "checkpoint given up: not complete in time");
            st.failure = Some((id, format!("not complete within {limit:?}")));
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Whether a checkpoint newer than `committed` was requested: one a sink may soon have
    /// to commit.
    #[inline]
    pub(crate) fn in_flight(&self, committed: u64) -> bool {
        self.requested.load(Ordering::Acquire) > committed
    }

    /// How incremental states save checkpoint `id`: against which completed checkpoint, and
    /// whether in full (every `full_every`-th checkpoint, and when there is no base).
    pub(crate) fn increments(&self, id: u64) -> (Option<u64>, bool) {
        let base = self.completed();
        let full = base == 0 || id.is_multiple_of(self.full_every);
        ((base > 0).then_some(base), full)
    }

    /// The newest completed checkpoint (0: none yet).
    #[inline]
    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// A segment's part of checkpoint `id`: its states (by state id) and, for a source
    /// segment, its source's position. Completes the checkpoint if it was the last part.
    pub(crate) fn ack(
        &self,
        id: u64,
        segment: &str,
        states: BTreeMap<String, Vec<u8>>,
        deltas: (&BTreeSet<String>, u64),
        source: Option<serde_json::Value>,
    ) {
        let mut st = self.lock();
        // A segment that acknowledges `id` will never acknowledge an older checkpoint it
        // skipped (it saw only the newest request): those can never complete.
        let skipped: Vec<u64> = st
            .pending
            .iter()
            .filter(|&(&old, p)| old < id && !p.acked.contains(segment))
            .map(|(&old, _)| old)
            .collect();
        for old in skipped {
            st.pending.remove(&old);
            st.stats.failed += 1;
            self.settled.fetch_max(old, Ordering::AcqRel);
        }
        if id <= self.settled.load(Ordering::Acquire) {
            return;
        }
        let p = st
            .pending
            .entry(id)
            .or_insert_with(|| Pending::new(Instant::now()));
        p.acked.insert(segment.to_string());
        for (state, bytes) in states {
            let key = format!("{segment}/{state}");
            if deltas.0.contains(&state) {
                p.deltas.insert(key.clone(), deltas.1);
            }
            p.states.insert(key, bytes);
        }
        if let Some(position) = source {
            p.sources.insert(segment.to_string(), position);
        }
        self.complete_ready(st);
    }

    /// Segment `segment` cannot take part in checkpoint `id` (`why`): the checkpoint fails at
    /// once (later ones may start), and acknowledgements of it that follow are ignored.
    pub(crate) fn decline(&self, id: u64, segment: &str, why: &str) {
        let mut st = self.lock();
        st.pending.remove(&id);
        if self.settled.fetch_max(id, Ordering::AcqRel) < id {
            st.stats.failed += 1;
            tracing::warn!(
                checkpoint = id,
                segment,
                reason = why,
                "checkpoint declined"
            );
            st.failure = Some((id, format!("declined by `{segment}`: {why}")));
        }
        drop(st);
        self.changed.notify_all();
    }

    /// A queue-fed segment's barrier `id` took `alignment` to align.
    pub(crate) fn aligned(&self, id: u64, alignment: Duration) {
        if alignment.is_zero() {
            return;
        }
        if id <= self.settled.load(Ordering::Acquire) {
            return;
        }
        let mut st = self.lock();
        let p = st
            .pending
            .entry(id)
            .or_insert_with(|| Pending::new(Instant::now()));
        p.alignment = p.alignment.max(alignment);
    }

    /// Records the sources that cannot replay.
    pub(crate) fn set_at_most_once(&self, sources: Vec<String>) {
        self.lock().stats.at_most_once = sources;
    }

    /// A segment finished (its stream ended): checkpoints no longer wait for it. A source
    /// segment leaves its final position, recorded in every later checkpoint.
    pub(crate) fn finished(&self, segment: &str, source: Option<serde_json::Value>) {
        let mut st = self.lock();
        st.live.remove(segment);
        if let Some(position) = source {
            st.finished_sources.insert(segment.to_string(), position);
        }
        self.complete_ready(st);
    }

    /// Writes out every pending checkpoint that all live segments have acknowledged, oldest
    /// first, and wakes whoever waits for one.
    fn complete_ready(&self, mut st: MutexGuard<'_, State>) {
        loop {
            let ready = st
                .pending
                .iter()
                .find(|(_, p)| st.live.iter().all(|s| p.acked.contains(s)))
                .map(|(&id, _)| id);
            let Some(id) = ready else { break };
            let Some(p) = st.pending.remove(&id) else {
                break;
            };
            let mut sources = st.finished_sources.clone();
            sources.extend(p.sources);
            let done = Completed {
                id,
                started: p.started,
                alignment: p.alignment,
                states: p.states,
                deltas: p.deltas,
                sources,
            };
            // Older ones can no longer complete once a newer one is stored (or failed).
            let stale: Vec<u64> = st.pending.keys().copied().filter(|&o| o < id).collect();
            for old in stale {
                st.pending.remove(&old);
                st.stats.failed += 1;
                self.settled.fetch_max(old, Ordering::AcqRel);
            }
            // To the writer thread, in order; without one, written here (under the lock:
            // acks, once per segment per checkpoint, wait meanwhile, never events).
            let queued = match &*self.writer.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(tx) => tx.send(Work::Write(done)).map_err(|e| match e.0 {
                    Work::Write(done) => done,
                    Work::Flush(_) => unreachable!("only a write was sent"),
                }),
                None => Err(done),
            };
            if let Err(done) = queued {
                let result = self.store(&done);
                self.record(&mut st, &done, result);
            }
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Stores a completed checkpoint's states and manifest; returns the bytes written.
    fn store(&self, c: &Completed) -> Result<u64, StorageError> {
        self.persist(c.id, &c.states, &c.deltas, c.sources.clone())
    }

    /// Records how storing checkpoint `c` went, and makes it the completed one.
    fn record(&self, st: &mut State, c: &Completed, result: Result<u64, StorageError>) {
        match result {
            Ok(bytes) => {
                let info = CheckpointInfo {
                    id: c.id,
                    duration: c.started.elapsed(),
                    bytes,
                    alignment: c.alignment,
                };
                tracing::info!(
                    checkpoint = c.id,
                    millis = info.duration.as_secs_f64() * 1e3,
                    bytes,
                    alignment_millis = info.alignment.as_secs_f64() * 1e3,
                    "checkpoint completed"
                );
                st.stats.completed += 1;
                let d = &mut st.stats.durations_ms;
                if d.len() == KEPT_DURATIONS {
                    d.remove(0);
                }
                d.push(u64::try_from(info.duration.as_millis()).unwrap_or(u64::MAX));
                st.stats.last = Some(info);
                self.completed.fetch_max(c.id, Ordering::AcqRel);
            }
            Err(e) => {
                st.stats.failed += 1;
                tracing::warn!(checkpoint = c.id, error = %e, "checkpoint failed to store");
                st.failure = Some((c.id, e.to_string()));
            }
        }
        self.settled.fetch_max(c.id, Ordering::AcqRel);
    }

    /// The writer thread: stores completed checkpoints in order until the queue closes.
    fn write_loop(&self, work: mpsc::Receiver<Work>) {
        for w in work {
            match w {
                Work::Write(done) => {
                    let result = self.store(&done);
                    let mut st = self.lock();
                    self.record(&mut st, &done, result);
                    drop(st);
                    self.changed.notify_all();
                }
                Work::Flush(reply) => {
                    let _ = reply.send(());
                }
            }
        }
    }

    /// Waits until every checkpoint queued so far is stored.
    fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        let sent = match &*self.writer.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(w) => w.send(Work::Flush(tx)).is_ok(),
            None => false,
        };
        if sent {
            let _ = rx.recv();
        }
    }

    /// Stores the states and the manifest of checkpoint `id`; returns the bytes written.
    fn persist(
        &self,
        id: u64,
        states: &BTreeMap<String, Vec<u8>>,
        deltas: &BTreeMap<String, u64>,
        sources: BTreeMap<String, serde_json::Value>,
    ) -> Result<u64, StorageError> {
        let mut backend = self.backend.lock().unwrap_or_else(PoisonError::into_inner);
        let mut manifest = Manifest::new(id);
        manifest.sources = sources;
        manifest.workers.clone_from(&self.workers);
        let mut bytes = 0;
        for (state, payload) in states {
            let framed = crate::state::frame(payload, self.compression);
            bytes += framed.len() as u64;
            let stored = match deltas.get(state) {
                Some(&base) => backend.put_delta(id, state, &framed, base),
                None => backend.put(id, state, &framed).map(|f| vec![f]),
            };
            match stored {
                Ok(files) => manifest.states.extend(files),
                Err(e) => {
                    let _ = backend.abort(id);
                    return Err(e);
                }
            }
        }
        if let Err(e) = backend.commit(&manifest) {
            let _ = backend.abort(id);
            return Err(e);
        }
        Ok(bytes)
    }

    /// Waits until checkpoint `id` completed (`Ok`), failed or was superseded (`Err` with the
    /// reason), or `timeout` passed.
    pub(crate) fn wait(&self, id: u64, timeout: Duration) -> Result<CheckpointInfo, String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if self.completed() >= id
                && let Some(info) = &st.stats.last
            {
                // This one, or a newer one that covers everything it would have.
                return Ok(info.clone());
            }
            if let Some((failed, why)) = &st.failure
                && *failed >= id
            {
                return Err(format!("checkpoint {failed} failed: {why}"));
            }
            if st.live.is_empty() {
                // Every segment has finished: what can complete is queued for the writer.
                drop(st);
                self.flush();
                st = self.lock();
                if self.completed() >= id
                    && let Some(info) = &st.stats.last
                {
                    return Ok(info.clone());
                }
                return Err(format!(
                    "the pipeline finished before checkpoint {id} completed"
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "checkpoint {id} did not complete within {timeout:?}"
                ));
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The run ended successfully: once every queued checkpoint is stored, records it in the
    /// storage.
    pub(crate) fn finish_job(&self) -> Result<(), StorageError> {
        self.flush();
        self.backend
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .mark_finished()
    }

    /// The run's checkpoint counts (after every checkpoint queued so far is stored).
    pub(crate) fn stats(&self) -> CheckpointStats {
        self.flush();
        self.lock().stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LocalDir;

    /// A declined checkpoint fails at once with the segment's reason; acknowledgements of it
    /// that come later are ignored, and the next checkpoint completes.
    #[test]
    fn a_declined_checkpoint_fails_and_the_next_one_completes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        let segments = ["src".to_string(), "merge".to_string()];
        let cp = Coordinator::new(Box::new(store), &PipelineConfig::default(), 0, segments);
        let one = cp.request();
        cp.decline(one, "merge", "not aligned");
        cp.ack(one, "src", BTreeMap::new(), (&BTreeSet::new(), 0), None);
        let err = cp.wait(one, Duration::from_secs(10)).err();
        assert_eq!(
            err.as_deref(),
            Some("checkpoint 1 failed: declined by `merge`: not aligned"),
            "the reason, at once"
        );
        let two = cp.request();
        for segment in ["src", "merge"] {
            cp.ack(two, segment, BTreeMap::new(), (&BTreeSet::new(), 0), None);
        }
        let info = cp.wait(two, Duration::from_secs(10));
        assert_eq!(info.map(|i| i.id), Ok(2));
        let stats = cp.stats();
        assert_eq!((stats.completed, stats.failed), (1, 1));
    }
}
