//! End to end, in process: a pipeline that checkpoints, crashes (a panic in a stage) and is
//! resumed from its checkpoint directory commits exactly the output of a run that never
//! crashed — nothing lost, nothing duplicated, same order — through a two-phase-commit sink.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use eventflux::prelude::*;
use eventflux::state::{LocalDir, StateBackend};

#[derive(Clone, Copy, Debug, PartialEq, Checkpoint)]
struct Ev {
    ts: u64,
    group: u8,
    v: i32,
}

fn events(n: u64) -> Vec<Ev> {
    (0..n)
        .map(|i| Ev {
            ts: i / 3,
            group: (i * 7 % 5) as u8,
            v: (i as i32 % 101) - 50,
        })
        .collect()
}

/// What a transactional sink has made visible, and what it staged per checkpoint (kept across
/// "processes": it stands for files on disk).
#[derive(Default)]
struct Ledger {
    committed: Vec<String>,
    staged: BTreeMap<u64, Vec<String>>,
    /// Checkpoints committed so far (all runs).
    commits: u64,
}

impl Ledger {
    /// Makes what was staged up to `checkpoint` visible.
    fn publish(&mut self, checkpoint: CheckpointId) {
        let later = self.staged.split_off(&(checkpoint.0 + 1));
        let done = std::mem::replace(&mut self.staged, later);
        for (_, rows) in done {
            self.committed.extend(rows);
        }
    }
}

/// A two-phase-commit sink over a [`Ledger`].
struct TxSink {
    ledger: Arc<Mutex<Ledger>>,
    pending: Vec<String>,
}

impl TxSink {
    fn over(ledger: &Arc<Mutex<Ledger>>) -> Self {
        TxSink {
            ledger: Arc::clone(ledger),
            pending: Vec::new(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: std::fmt::Debug> Sink<R> for TxSink {
    fn send(&mut self, row: R) -> Result<(), SinkError> {
        self.pending.push(format!("{row:?}"));
        Ok(())
    }
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let rows = std::mem::take(&mut self.pending);
        self.ledger()
            .staged
            .entry(checkpoint.0)
            .or_default()
            .extend(rows);
        Ok(())
    }
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let mut l = self.ledger();
        l.commits += 1;
        l.publish(checkpoint);
        Ok(())
    }
    fn recover(&mut self, checkpoint: CheckpointId) -> Result<(), SinkError> {
        let mut l = self.ledger();
        l.publish(checkpoint);
        // Staged after the checkpoint: produced again by the resumed run.
        l.staged.clear();
        Ok(())
    }
    fn close(&mut self) -> Result<(), SinkError> {
        // End of stream: everything is final.
        let rows = std::mem::take(&mut self.pending);
        let mut l = self.ledger();
        let staged = std::mem::take(&mut l.staged);
        for (_, r) in staged {
            l.committed.extend(r);
        }
        l.committed.extend(rows);
        Ok(())
    }
    fn abort(&mut self) {
        self.pending.clear();
    }
}

/// Passes events on, and panics at its `crash_at`-th (its count is checkpointed, so a resumed
/// run crashes only if it has not passed that point yet).
fn crashing(crash_at: Option<u64>) -> impl Stage<Ev, Out = Ev> {
    stateful(0u64, move |n: &mut u64, e: Ev| {
        *n += 1;
        if Some(*n) == crash_at {
            panic!("injected crash at event {n}");
        }
        Some(e)
    })
}

/// Like [`crashing`], but only once this run has committed a checkpoint of its own (a test
/// that resumes with another number of workers needs one): from its `crash_at`-th event on,
/// it panics at the first event after that commit. Until then it holds each event back a
/// little (up to 20 ms, looking for the commit every 0.2 ms) — a throttle so that on a loaded
/// machine the stream does not end before the checkpoint completes (the source still starts
/// checkpoints between its batches of 4); no assertion depends on the timing.
fn crashing_after_commit(
    crash_at: Option<u64>,
    ledger: Arc<Mutex<Ledger>>,
) -> impl Stage<Ev, Out = Ev> {
    let commits = move || {
        ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .commits
    };
    let before = commits();
    stateful(0u64, move |n: &mut u64, e: Ev| {
        *n += 1;
        if crash_at.is_some_and(|c| *n >= c) {
            for _ in 0..100 {
                if commits() > before {
                    panic!("injected crash at event {n}");
                }
                std::thread::park_timeout(std::time::Duration::from_micros(200));
            }
        }
        Some(e)
    })
}

/// A keyed tumbling window with several aggregates.
fn window() -> impl Stage<Ev, Out = Row<u8, (u64, i128, i32, f64)>> {
    tumbling(10, |e: &Ev| e.ts)
        .group_by(|e: &Ev| e.group)
        .aggregate((
            count(),
            sum(|e: &Ev| e.v),
            min(|e: &Ev| e.v),
            avg(|e: &Ev| f64::from(e.v)),
        ))
}

/// The pipeline: a stage that can crash at its `crash_at`-th event, a queue, and a keyed
/// tumbling window with several aggregates.
fn app(
    events: Vec<Ev>,
    crash_at: Option<u64>,
    ledger: &Arc<Mutex<Ledger>>,
    keyed: bool,
) -> App<'static> {
    let sink = TxSink::over(ledger);
    if keyed {
        // Keyed workers, then a fan-in of their outputs into one sink: barriers are aligned
        // at the fan-in.
        return pipeline! {
            config { batch_size: 1, queue_capacity: 64, checkpoint_interval_ms: 1 }
            source feed = IterSource::new(events);
            stage boom = crashing(crash_at);
            stage stats = window();
            stage rows = map(|r: Row<u8, (u64, i128, i32, f64)>| (r.window.start, r.key, r.values));
            sink out = sink;
            feed -> boom =>[workers = 3, key = |e: &Ev| e.group] stats -> rows => out;
        };
    }
    pipeline! {
        config { batch_size: 1, queue_capacity: 64, checkpoint_interval_ms: 1 }
        source feed = IterSource::new(events);
        stage boom = crashing(crash_at);
        stage stats = window();
        sink out = sink;
        feed -> boom => stats -> out;
    }
}

fn committed(ledger: &Arc<Mutex<Ledger>>) -> Vec<String> {
    ledger
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .committed
        .clone()
}

#[test]
fn a_crashed_run_resumed_from_its_checkpoint_commits_exactly_the_uninterrupted_output() {
    crashed_and_resumed(false);
}

#[test]
fn keyed_workers_and_their_fan_in_recover_exactly() {
    crashed_and_resumed(true);
}

fn crashed_and_resumed(keyed: bool) {
    let n = 6_000;
    let reference = Arc::new(Mutex::new(Ledger::default()));
    app(events(n), None, &reference, keyed)
        .run()
        .unwrap_or_else(|e| panic!("reference run: {e}"));
    let want = committed(&reference);
    assert_eq!(want.len(), 1_000, "200 windows of 5 groups");

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for crash_at in [1_500, 4_000] {
        let err = app(events(n), Some(crash_at), &ledger, keyed)
            .checkpoints(dir.path(), Recovery::ResumeOrStart)
            .and_then(App::run)
            .err()
            .unwrap_or_else(|| panic!("the run was to crash"));
        assert!(err.to_string().contains("injected crash"), "{err}");
    }
    let taken = LocalDir::open(dir.path(), 3)
        .and_then(|d| d.checkpoints())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!taken.is_empty(), "the crashed runs completed checkpoints");
    let report = app(events(n), None, &ledger, keyed)
        .checkpoints(dir.path(), Recovery::Resume)
        .and_then(App::run)
        .unwrap_or_else(|e| panic!("resumed run: {e}"));
    let got = committed(&ledger);
    assert_eq!(got.len(), want.len(), "lost or duplicated rows");
    if keyed {
        // Workers' rows interleave at the fan-in: compare as multisets.
        let (mut got, mut want) = (got, want);
        got.sort();
        want.sort();
        assert_eq!(got, want);
    } else {
        assert_eq!(got, want);
    }
    assert!(report.checkpoints.completed > 0);
}

/// A job that ran to its end is not resumed: `Resume` is an error, `ResumeOrStart` runs it
/// again from the beginning.
#[test]
fn a_finished_job_is_not_resumed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    app(events(3_000), None, &ledger, false)
        .checkpoints(dir.path(), Recovery::ResumeOrStart)
        .and_then(App::run)
        .unwrap_or_else(|e| panic!("{e}"));
    let err = resume_error(dir.path(), app(events(3_000), None, &ledger, false));
    assert!(err.contains("ran to its end"), "{err}");
    let report = app(events(3_000), None, &ledger, false)
        .checkpoints(dir.path(), Recovery::ResumeOrStart)
        .and_then(App::run)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.events_in, 3_000, "ran again from the beginning");
}

/// A savepoint (`stop_with_checkpoint`) does not end the job: a later run resumes where the
/// stopped one left off, and together they write every event exactly once through a
/// two-phase-commit sink (the stopped run's output after its savepoint is dropped and written
/// again).
#[test]
fn a_savepoint_resumes_where_the_stopped_run_left_off() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let parts = dir.path().join("out");
    let build = || {
        let sink = JsonLinesParts::<u64>::create(&parts).unwrap_or_else(|e| panic!("{e}"));
        let app = pipeline! {
            source nums = IterSource::new(0..400_000u64);
            stage  odd  = filter(|x: &u64| x % 2 == 1);
            sink   out  = sink;
            nums -> odd => out;
        };
        app.checkpoints(dir.path().join("state"), Recovery::ResumeOrStart)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let stopped = build()
        .spawn()
        .and_then(PipelineHandle::stop_with_checkpoint)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stopped.checkpoints.completed, 1, "the savepoint");
    // Not marked as a job that ran to its end: the next run resumes instead of starting over.
    let finished = std::fs::read_dir(dir.path().join("state"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .any(|e| e.file_name() == "FINISHED");
    assert!(!finished, "a stopped job is not finished");
    build()
        .run()
        .unwrap_or_else(|e| panic!("resuming from the savepoint: {e}"));
    let mut got: Vec<u64> = JsonLinesParts::<u64>::read_committed(&parts)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|l| l.parse().unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..400_000).filter(|x| x % 2 == 1).collect::<Vec<u64>>()
    );
}

#[test]
fn resuming_an_empty_directory_is_an_error_unless_starting_is_allowed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let err = resume_error(dir.path(), app(events(10), None, &ledger, false));
    assert!(err.contains("no checkpoint to resume from"), "{err}");
    app(events(10), None, &ledger, false)
        .checkpoints(dir.path(), Recovery::ResumeOrStart)
        .and_then(App::run)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Where a [`Flaky`] stage panics.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// In its `snapshot` for this checkpoint (counted in this run).
    Snapshot(u64),
    /// In its `restore`.
    Restore,
}

/// A pass-through stage with state (events seen) that panics where it is told to.
struct Flaky {
    seen: u64,
    snapshots: std::cell::Cell<u64>,
    fault: Fault,
}

impl Stage<Ev> for Flaky {
    type Out = (u64, Ev);
    fn process<E: Emit<(u64, Ev)>>(&mut self, e: Ev, out: &mut E) {
        self.seen += 1;
        out.emit((self.seen, e));
    }
    fn snapshot(
        &self,
        s: &mut eventflux::state::Snapshot,
    ) -> Result<(), eventflux::state::StateError> {
        self.snapshots.set(self.snapshots.get() + 1);
        if self.fault == Fault::Snapshot(self.snapshots.get()) {
            panic!("injected panic in snapshot {}", self.snapshots.get());
        }
        s.save(&self.seen)
    }
    fn restore(
        &mut self,
        r: &mut eventflux::state::Restore,
    ) -> Result<(), eventflux::state::StateError> {
        if self.fault == Fault::Restore {
            panic!("injected panic in restore");
        }
        if let Some(seen) = r.load()? {
            self.seen = seen;
        }
        Ok(())
    }
}

fn flaky_app(events: Vec<Ev>, fault: Fault, ledger: &Arc<Mutex<Ledger>>) -> App<'static> {
    let sink = TxSink::over(ledger);
    pipeline! {
        config { batch_size: 1, queue_capacity: 64, checkpoint_interval_ms: 1 }
        source feed = IterSource::new(events);
        stage flaky = Flaky { seen: 0, snapshots: std::cell::Cell::new(0), fault };
        stage stats = tumbling(10, |x: &(u64, Ev)| x.1.ts)
            .group_by(|x: &(u64, Ev)| x.1.group)
            .aggregate((count(), sum(|x: &(u64, Ev)| x.0), max(|x: &(u64, Ev)| x.1.v)));
        sink out = sink;
        feed -> flaky => stats -> out;
    }
}

/// Lost, duplicated and reordered rows of `got` against `want`.
fn verify(want: &[String], got: &[String]) -> (usize, usize, usize) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for w in want {
        *count.entry(w).or_default() += 1;
    }
    for g in got {
        *count.entry(g).or_default() -= 1;
    }
    let lost = count
        .values()
        .filter(|&&c| c > 0)
        .map(|&c| c as usize)
        .sum();
    let duplicated = count
        .values()
        .filter(|&&c| c < 0)
        .map(|&c| (-c) as usize)
        .sum();
    let reordered = want.iter().zip(got).filter(|(w, g)| w != g).count();
    (lost, duplicated, reordered)
}

/// Panics in a snapshot and in a restore, after checkpoints have completed: the pipeline (or
/// the resume) fails with an error naming what panicked, and a later resume still commits
/// exactly the uninterrupted output, in order.
#[test]
fn panics_in_snapshot_and_restore_lose_and_duplicate_nothing() {
    // Long enough for three checkpoints (one at a time, each written and fsynced) on a fast
    // machine.
    let n = 60_000;
    let reference = Arc::new(Mutex::new(Ledger::default()));
    flaky_app(events(n), Fault::None, &reference)
        .run()
        .unwrap_or_else(|e| panic!("reference run: {e}"));
    let want = committed(&reference);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // A panic in the third snapshot of the run: two checkpoints have completed.
    let err = flaky_app(events(n), Fault::Snapshot(3), &ledger)
        .checkpoints(dir.path(), Recovery::StartFresh)
        .and_then(App::run)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("injected panic in snapshot 3"), "{err}");
    let taken = LocalDir::open(dir.path(), 3)
        .and_then(|d| d.checkpoints())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken.last(), Some(&2), "checkpoints 1 and 2 completed");
    // A panic while restoring: an error, not a panic of the caller; nothing changes on disk.
    let err = resume_error(dir.path(), flaky_app(events(n), Fault::Restore, &ledger));
    assert!(
        err.contains("restoring segment") && err.contains("injected panic in restore"),
        "{err}"
    );
    // The resume that works.
    finish_in(
        dir.path(),
        flaky_app(events(n), Fault::None, &ledger),
        "resumed run",
    );
    assert_eq!(
        verify(&want, &committed(&ledger)),
        (0, 0, 0),
        "lost, duplicated, reordered"
    );
}

/// Running totals per key in an incrementally checkpointed map.
struct Totals {
    by_key: eventflux::state::Keyed<u32, (u64, i64)>,
    /// A key comes back after this many timestamps.
    cycle: u64,
}

impl Totals {
    fn new(cycle: u64) -> Self {
        Totals {
            by_key: eventflux::state::Keyed::new(),
            cycle,
        }
    }
}

impl Stage<Ev> for Totals {
    type Out = (u32, u64, i64);
    fn process<E: Emit<(u32, u64, i64)>>(&mut self, e: Ev, out: &mut E) {
        // Many keys, few of them changing between two checkpoints (a key comes back after
        // `cycle` timestamps); some removed again.
        let key = (e.ts % self.cycle) as u32 * 64 + u32::from(e.group);
        if e.v == 49 {
            self.by_key.remove(&key);
            return;
        }
        let t = self.by_key.get_or_insert_with(key, || (0, 0));
        t.0 += 1;
        t.1 += i64::from(e.v);
        let t = *t;
        out.emit((key, t.0, t.1));
    }
    fn snapshot(
        &self,
        s: &mut eventflux::state::Snapshot,
    ) -> Result<(), eventflux::state::StateError> {
        s.save_keyed(&self.by_key)
    }
    fn restore(
        &mut self,
        r: &mut eventflux::state::Restore,
    ) -> Result<(), eventflux::state::StateError> {
        r.load_keyed(&mut self.by_key).map(drop)
    }
}

fn keyed_state_app(
    events: Vec<Ev>,
    crash_at: Option<u64>,
    ledger: &Arc<Mutex<Ledger>>,
) -> App<'static> {
    let sink = TxSink::over(ledger);
    pipeline! {
        config { batch_size: 1, queue_capacity: 64, checkpoint_interval_ms: 1, checkpoint_full_every: 3 }
        source feed = IterSource::new(events);
        stage boom = crashing_after_commit(crash_at, Arc::clone(ledger));
        stage totals = Totals::new(50);
        sink out = sink;
        feed -> boom => totals -> out;
    }
}

/// Incremental checkpoints (a full copy every 3rd, deltas between): the manifests hold the
/// chains, and a crashed run resumed from them commits exactly the uninterrupted output.
#[test]
fn incremental_keyed_state_recovers_exactly_from_full_copies_and_deltas() {
    let n = 9_000;
    let reference = Arc::new(Mutex::new(Ledger::default()));
    keyed_state_app(events(n), None, &reference)
        .run()
        .unwrap_or_else(|e| panic!("reference run: {e}"));
    let want = committed(&reference);
    assert_eq!(want.len() as u64, n - n / 101);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut deltas_seen = 0;
    for crash_at in [2_500, 5_000, 7_500] {
        let app = keyed_state_app(events(n), Some(crash_at), &ledger);
        let app = app
            .checkpoints(dir.path(), Recovery::ResumeOrStart)
            .unwrap_or_else(|e| panic!("{e}"));
        let err = app.run().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("injected crash"), "{err}");
        // Every kept checkpoint's chain (each crashed run took one of its own at least, so
        // after the second run two consecutive ids are kept: one of them is not a multiple of
        // 3, i.e. a delta).
        let store = LocalDir::open(dir.path(), 3).unwrap_or_else(|e| panic!("{e}"));
        let kept = store.checkpoints().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !kept.is_empty(),
            "no checkpoint after the crash at {crash_at}"
        );
        for id in kept {
            let path = dir
                .path()
                .join(format!("chk-{id:020}"))
                .join("MANIFEST.json");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            let m: eventflux::state::Manifest =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
            let parts = m
                .states
                .iter()
                .filter(|s| s.state.ends_with("/totals"))
                .count();
            deltas_seen += parts.saturating_sub(1);
        }
    }
    assert!(deltas_seen > 0, "some checkpoint was a delta chain");
    finish_in(
        dir.path(),
        keyed_state_app(events(n), None, &ledger),
        "resumed run",
    );
    assert_eq!(
        verify(&want, &committed(&ledger)),
        (0, 0, 0),
        "lost, duplicated, reordered"
    );
}

/// Checkpoint metrics: counts, the last checkpoint's id, duration, bytes and alignment (at the
/// fan-in after keyed workers), in the report and in the metrics snapshot; a source that cannot
/// replay is named as at most once.
#[test]
fn checkpoint_metrics_are_reported() {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let report = app(events(6_000), None, &ledger, true)
        .checkpoints(dir.path(), Recovery::StartFresh)
        .and_then(App::run)
        .unwrap_or_else(|e| panic!("{e}"));
    let c = &report.checkpoints;
    assert!(c.completed > 0);
    assert_eq!(c.durations_ms.len() as u64, c.completed);
    let last = c
        .last
        .as_ref()
        .unwrap_or_else(|| panic!("a last checkpoint"));
    assert!(last.bytes > 0);
    assert!(c.at_most_once.is_empty(), "{:?}", c.at_most_once);
    assert_eq!(report.metrics.checkpoints.as_ref(), Some(c));
    let text = report.to_string();
    assert!(
        text.contains(&format!("checkpoints: {} completed", c.completed)),
        "{text}"
    );

    // A channel source cannot replay: reported, not silently exactly-once.
    let config = PipelineConfig::default();
    let (source, input) = ChannelSource::<u64>::with_config(&config);
    let mut p = PipelineBuilder::new(config);
    let out = p.sink("out", CollectSink::<u64>::new());
    p.add_source("live", source, Identity, out);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let handle = p
        .build()
        .and_then(|p| p.checkpoints(dir.path(), Recovery::StartFresh))
        .and_then(|p| p.spawn())
        .unwrap_or_else(|e| panic!("{e}"));
    input.close();
    let report = handle.join().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.checkpoints.at_most_once, ["live"]);
    assert!(
        report
            .to_string()
            .contains("at most once after a crash (cannot replay): live")
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(6))]

    /// Random crash points (and so random checkpoint points: they come every millisecond of a
    /// run whose speed varies), fused and across a queue, plain and keyed: exact recovery.
    #[test]
    fn random_crash_points_recover_exactly(
        crashes in proptest::collection::vec(200u64..5_800, 1..4),
        keyed: bool,
    ) {
        let n = 6_000;
        let reference = Arc::new(Mutex::new(Ledger::default()));
        app(events(n), None, &reference, keyed)
            .run()
            .unwrap_or_else(|e| panic!("reference run: {e}"));
        let want = committed(&reference);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut finished = false;
        for crash_at in crashes {
            // A crash point already behind the resumed position is not reached: that run goes
            // to the end, and the job is done.
            finished = app(events(n), Some(crash_at), &ledger, keyed)
                .checkpoints(dir.path(), Recovery::ResumeOrStart)
                .and_then(App::run)
                .is_ok();
            if finished {
                break;
            }
        }
        if !finished {
            app(events(n), None, &ledger, keyed)
                .checkpoints(dir.path(), Recovery::ResumeOrStart)
                .and_then(App::run)
                .unwrap_or_else(|e| panic!("resumed run: {e}"));
        }
        let (mut got, mut want) = (committed(&ledger), want);
        if keyed {
            got.sort();
            want.sort();
        }
        proptest::prop_assert_eq!(verify(&want, &got), (0, 0, 0));
    }
}

/// A checkpoint that cannot complete (its sink hangs in `pre_commit`) is given up after the
/// checkpoint timeout, and later checkpoints go on once the sink recovers.
#[test]
fn a_stuck_checkpoint_times_out_and_later_ones_complete() {
    use std::time::{Duration, Instant};
    struct Hangs(std::sync::mpsc::Receiver<()>);
    impl Sink<u64> for Hangs {
        fn send(&mut self, _: u64) -> Result<(), SinkError> {
            Ok(())
        }
        fn pre_commit(&mut self, c: CheckpointId) -> Result<(), SinkError> {
            if c.0 == 1 {
                // Until the test lets go (or gives up waiting itself).
                let _ = self.0.recv_timeout(Duration::from_secs(20));
            }
            Ok(())
        }
    }
    let (release, hold) = std::sync::mpsc::channel();
    let config = PipelineConfig::builder()
        .checkpoint_interval(Duration::from_millis(5))
        .checkpoint_timeout(Duration::from_millis(400))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let (source, input) = ChannelSource::<u64>::with_config(&config);
    let mut p = PipelineBuilder::new(config);
    let (tx, rx) = p.queue::<u64>("q");
    p.add_source("live", source, Identity, QueueOutput::new(tx));
    let out = p.sink("out", Hangs(hold));
    p.add_queue_segment("sink", rx, Identity, out);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let handle = p
        .build()
        .and_then(|p| p.checkpoints(dir.path(), Recovery::StartFresh))
        .and_then(|p| p.spawn())
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = input.send(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = || handle.metrics().checkpoints.map_or(0, |c| c.failed);
    while failed() == 0 {
        assert!(Instant::now() < deadline, "checkpoint 1 was never given up");
        std::thread::park_timeout(Duration::from_millis(2));
    }
    let _ = release.send(());
    let info = handle
        .checkpoint()
        .unwrap_or_else(|e| panic!("{e}; {:?}", handle.metrics().checkpoints));
    assert!(info.id > 1, "a later checkpoint completed: {}", info.id);
    input.close();
    let report = handle.join().unwrap_or_else(|e| panic!("{e}"));
    assert!(report.checkpoints.failed >= 1);
    assert!(report.checkpoints.completed >= 1);
}

/// Events over 37 keys, so that every worker of up to 8 owns some.
fn many_keyed_events(n: u64) -> Vec<Ev> {
    (0..n)
        .map(|i| Ev {
            ts: i / 7,
            group: (i * 11 % 37) as u8,
            v: (i as i32 % 101) - 50,
        })
        .collect()
}

/// Keyed workers whose fused run keeps three kinds of state per key group: a `stateful`
/// count of the group's events, an incrementally checkpointed map ([`Totals`]'s) and a keyed
/// tumbling window; their rows merge into one transactional sink. `$workers` is the number of
/// keyed workers.
macro_rules! rescalable_app {
    ($workers:tt, $events:expr, $crash_at:expr, $ledger:expr $(, $setting:ident = $value:tt)*) => {{
        let ledger: &Arc<Mutex<Ledger>> = $ledger;
        let sink = TxSink::over(ledger);
        let crash_at: Option<u64> = $crash_at;
        pipeline! {
            config {
                batch_size: 4, queue_capacity: 64,
                checkpoint_interval_ms: 1, checkpoint_full_every: 1000
            }
            source feed = IterSource::new($events);
            stage boom = crashing_after_commit(crash_at, Arc::clone(ledger));
            // Each key group's own count of its events, folded into the values.
            stage tally = stateful(0u64, |n: &mut u64, e: Ev| {
                *n += 1;
                Some(Ev { v: e.v + (*n % 3) as i32, ..e })
            });
            stage totals = Totals::new(128);
            stage back = map(|(key, n, total): (u32, u64, i64)| Ev {
                ts: u64::from(key / 8) * 10 + n / 2,
                group: (key % 8) as u8 + (total.rem_euclid(5) as u8) * 8,
                v: (total % 1000) as i32,
            });
            stage stats = window();
            stage rows = map(|r: Row<u8, (u64, i128, i32, f64)>| (r.window.start, r.key, r.values));
            sink out = sink;
            feed -> boom =>[workers = $workers, key = |e: &Ev| e.group $(, $setting = $value)*]
                tally -> totals -> back -> stats -> rows => out;
        }
    }};
}

/// Runs `app` until its injected crash, into the checkpoint directory `dir`.
fn crash_in(dir: &std::path::Path, app: App<'static>) {
    let err = app
        .checkpoints(dir, Recovery::ResumeOrStart)
        .and_then(App::run)
        .err()
        .unwrap_or_else(|| panic!("the run was to crash"));
    assert!(err.to_string().contains("injected crash"), "{err}");
}

/// Why resuming `app` from the checkpoint directory `dir` is refused ("" if it is not).
fn resume_error(dir: &std::path::Path, app: App<'static>) -> String {
    app.checkpoints(dir, Recovery::Resume)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// Resumes `app` from the checkpoint directory `dir` and runs it to its end.
fn finish_in(dir: &std::path::Path, app: App<'static>, what: &str) {
    app.checkpoints(dir, Recovery::Resume)
        .and_then(App::run)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// The number of keyed workers of `tally` the newest checkpoint in `dir` was taken with.
fn workers_in(dir: &std::path::Path) -> usize {
    workers_in_of(dir, "tally")
}

/// The number of keyed workers of `segment` the newest checkpoint in `dir` was taken with.
fn workers_in_of(dir: &std::path::Path, segment: &str) -> usize {
    let store = LocalDir::open(dir, 3).unwrap_or_else(|e| panic!("{e}"));
    let m = store
        .latest()
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint"));
    m.workers.get(segment).copied().unwrap_or(0)
}

/// Rescaling: keyed state is saved by key group, so a checkpoint taken with 4 workers restores
/// into 2 or 8 (and on, into another number again: 4 → 8 → 2 → 2), and the final committed
/// output is exactly that of an uninterrupted 4-worker run — nothing lost, nothing duplicated.
#[test]
fn keyed_state_restores_into_a_different_number_of_workers() {
    let n = 12_000;
    let reference = Arc::new(Mutex::new(Ledger::default()));
    rescalable_app!(4, many_keyed_events(n), None, &reference)
        .run()
        .unwrap_or_else(|e| panic!("reference run: {e}"));
    let mut want = committed(&reference);
    want.sort();
    assert!(want.len() > 400, "{} rows", want.len());
    let check = |ledger: &Arc<Mutex<Ledger>>, what: &str| {
        let mut got = committed(ledger);
        got.sort();
        assert_eq!(
            verify(&want, &got),
            (0, 0, 0),
            "{what}: lost, duplicated, reordered"
        );
    };
    // The same output with 2 and 8 workers, uninterrupted: a key group's state and rows do
    // not depend on the number of workers.
    let (two, eight) = (
        Arc::new(Mutex::new(Ledger::default())),
        Arc::new(Mutex::new(Ledger::default())),
    );
    rescalable_app!(2, many_keyed_events(n), None, &two)
        .run()
        .unwrap_or_else(|e| panic!("2 workers: {e}"));
    check(&two, "2 workers, uninterrupted");
    rescalable_app!(8, many_keyed_events(n), None, &eight)
        .run()
        .unwrap_or_else(|e| panic!("8 workers: {e}"));
    check(&eight, "8 workers, uninterrupted");

    // 4 → 2 and 4 → 8: a crash after a checkpoint with 4 workers, resumed with `$to`.
    macro_rules! four_to {
        ($to:tt) => {{
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let ledger = Arc::new(Mutex::new(Ledger::default()));
            crash_in(
                dir.path(),
                rescalable_app!(4, many_keyed_events(n), Some(5_000), &ledger),
            );
            assert_eq!(workers_in(dir.path()), 4);
            let to = concat!("4 → ", stringify!($to), " workers");
            finish_in(
                dir.path(),
                rescalable_app!($to, many_keyed_events(n), None, &ledger),
                to,
            );
            check(&ledger, to);
        }};
    }
    four_to!(2);
    four_to!(8);

    // 4 → 8 → 2 → 2, a crash in each run: incremental state relocated twice, then resumed
    // without rescaling from checkpoints the 2-worker run took after relocating.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    crash_in(
        dir.path(),
        rescalable_app!(4, many_keyed_events(n), Some(3_000), &ledger),
    );
    assert_eq!(workers_in(dir.path()), 4);
    crash_in(
        dir.path(),
        rescalable_app!(8, many_keyed_events(n), Some(6_000), &ledger),
    );
    assert_eq!(
        workers_in(dir.path()),
        8,
        "the resumed run checkpointed with 8 workers"
    );
    crash_in(
        dir.path(),
        rescalable_app!(2, many_keyed_events(n), Some(9_500), &ledger),
    );
    assert_eq!(
        workers_in(dir.path()),
        2,
        "the resumed run checkpointed with 2 workers"
    );
    finish_in(
        dir.path(),
        rescalable_app!(2, many_keyed_events(n), None, &ledger),
        "resumed with 2 workers",
    );
    check(&ledger, "4 → 8 → 2 → 2 workers");
}

/// Keyed workers with a fan-out inside them: the stages after it keep their state per worker
/// (not per key group).
macro_rules! branching_app {
    ($workers:tt, $events:expr, $crash_at:expr, $ledger:expr) => {{
        let ledger: &Arc<Mutex<Ledger>> = $ledger;
        let sink = TxSink::over(ledger);
        let crash_at: Option<u64> = $crash_at;
        let count = || {
            stateful(0u64, |n: &mut u64, e: Ev| {
                *n += 1;
                Some((*n, e))
            })
        };
        pipeline! {
            config { batch_size: 4, queue_capacity: 64, checkpoint_interval_ms: 1 }
            source feed = IterSource::new($events);
            stage boom = crashing_after_commit(crash_at, Arc::clone(ledger));
            stage pass = map(|e: Ev| e);
            stage left = count();
            stage right = count();
            sink out = sink;
            feed -> boom =>[workers = $workers, key = |e: &Ev| e.group] pass;
            pass -> left => out;
            pass -> right => out;
        }
    }};
}

/// State kept per worker cannot follow its keys to another number of workers: resuming with
/// a different number is an error that names the state and the numbers — and the same number
/// still resumes.
#[test]
fn per_worker_state_does_not_rescale_and_says_so() {
    let n = 6_000;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    crash_in(
        dir.path(),
        branching_app!(4, many_keyed_events(n), Some(3_000), &ledger),
    );
    assert_eq!(workers_in_of(dir.path(), "pass"), 4);
    let err = resume_error(
        dir.path(),
        branching_app!(2, many_keyed_events(n), None, &ledger),
    );
    assert!(
        err.contains("the keyed workers of `pass` keep state `left` per worker")
            && err.contains("taken with 4 workers, restores only into 4 workers, not 2"),
        "{err}"
    );
    finish_in(
        dir.path(),
        branching_app!(4, many_keyed_events(n), None, &ledger),
        "resumed with 4 workers",
    );
    assert_eq!(
        committed(&ledger).len(),
        2 * n as usize,
        "every event, once per branch"
    );
}

/// Fewer key groups (`key_groups = 8`, for few keys): rescaling 4 → 2 gives the output of
/// an uninterrupted run with the same key groups (a `stateful` stage's state is per key group,
/// so it differs from 128 groups' by design); and the number of key groups is fixed for a
/// job's life — resuming with another is an error that says how to fix it.
#[test]
fn key_groups_can_be_fewer_and_stay_fixed() {
    let n = 8_000;
    let reference = Arc::new(Mutex::new(Ledger::default()));
    rescalable_app!(4, many_keyed_events(n), None, &reference, key_groups = 8)
        .run()
        .unwrap_or_else(|e| panic!("reference run: {e}"));
    let mut want = committed(&reference);
    want.sort();

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    crash_in(
        dir.path(),
        rescalable_app!(
            4,
            many_keyed_events(n),
            Some(4_000),
            &ledger,
            key_groups = 8
        ),
    );
    let err = resume_error(
        dir.path(),
        rescalable_app!(2, many_keyed_events(n), None, &ledger),
    );
    assert!(
        err.contains("was saved with 8 key groups, but this keyed edge has 128")
            && err.contains("set `key_groups = 8` on the edge"),
        "{err}"
    );
    finish_in(
        dir.path(),
        rescalable_app!(2, many_keyed_events(n), None, &ledger, key_groups = 8),
        "resumed with 2 workers of 8 key groups",
    );
    let mut got = committed(&ledger);
    got.sort();
    assert_eq!(
        verify(&want, &got),
        (0, 0, 0),
        "lost, duplicated, reordered"
    );
}
