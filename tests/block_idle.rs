//! Idle threads use no CPU: a producer blocked on a full `Block` queue, a consumer waiting on an
//! empty one, and a whole pipeline whose source has nothing to read all park instead of
//! spinning (this machine has 2 cores; a spinning waiter would starve its peer).
//!
//! These tests need wall time to pass (a second of waiting); they assert on CPU time, with a
//! generous bound, never on timing.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use eventflux::io::CollectHandle;
use eventflux::prelude::*;
use eventflux::queue::{EventQueue, Message, QueueOptions};

fn first_field(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time of one task from its procfs directory: `schedstat` (nanoseconds) when the kernel
/// has it, else `stat`'s utime + stime in clock ticks (100 Hz on Linux).
fn task_cpu(dir: &std::path::Path) -> Duration {
    if let Some(ns) = std::fs::read_to_string(dir.join("schedstat"))
        .ok()
        .and_then(|s| first_field(&s))
    {
        return Duration::from_nanos(ns);
    }
    let stat = std::fs::read_to_string(dir.join("stat")).expect("procfs is available");
    let after = &stat[stat.rfind(')').expect("stat has a comm field") + 2..];
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((f[11] + f[12]) * 10)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    task_cpu(std::path::Path::new("/proc/thread-self"))
}

/// CPU time of this process's threads with the given names (pipeline threads are named after
/// their segments).
fn named_threads_cpu(names: &[&str]) -> Duration {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .flatten()
    {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if names.contains(&comm.trim()) {
            total += task_cpu(&entry.path());
        }
    }
    total
}

const WAIT: Duration = Duration::from_secs(1);
const BUDGET: Duration = Duration::from_millis(200);

#[test]
fn blocked_producer_parks() {
    let (mut tx, mut rx) = EventQueue::<u64>::channel(QueueOptions {
        slots: 1,
        batch_size: 1,
        backpressure: Backpressure::Block,
        ..QueueOptions::default()
    });
    let (report_tx, report_rx) = mpsc::channel();
    let producer = thread::spawn(move || {
        tx.send_items(vec![1]).expect("fills the only slot");
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        tx.send_items(vec![2]).expect("blocks, then is accepted");
        let waited = t0.elapsed();
        report_tx
            .send((waited, thread_cpu() - cpu0))
            .expect("test alive");
        tx.end().expect("consumer alive");
    });
    thread::sleep(WAIT);
    let mut got = Vec::new();
    loop {
        match rx.recv().expect("no abort") {
            Message::Batch(b) => {
                got.extend_from_slice(b.items());
                rx.recycle(b);
            }
            Message::End => break,
            _ => {}
        }
    }
    producer.join().expect("producer panicked");
    let (waited, cpu) = report_rx.recv().expect("producer reported");
    assert_eq!(got, [1, 2]);
    assert!(
        waited >= WAIT / 2,
        "the producer really blocked ({waited:?})"
    );
    assert!(
        cpu < BUDGET,
        "blocked producer used {cpu:?} of CPU in {waited:?}"
    );
}

#[test]
fn waiting_consumer_parks() {
    let (mut tx, mut rx) = EventQueue::<u64>::channel(QueueOptions::default());
    let consumer = thread::spawn(move || {
        let cpu0 = thread_cpu();
        let msg = rx.recv().expect("no abort");
        let cpu = thread_cpu() - cpu0;
        let first = match msg {
            Message::Batch(b) => b.items().to_vec(),
            other => panic!("expected a batch, got {other:?}"),
        };
        (first, cpu)
    });
    thread::sleep(WAIT);
    tx.send_items(vec![42]).expect("consumer alive");
    let (first, cpu) = consumer.join().expect("consumer panicked");
    assert_eq!(first, [42]);
    assert!(cpu < BUDGET, "waiting consumer used {cpu:?}");
}

/// `channel` → queue → `double` (× 2) → `out`, built: the pipeline, its channel, and what
/// `out` collected.
fn channel_pipeline() -> (Pipeline<'static>, ChannelHandle<u64>, CollectHandle<u64>) {
    let config = PipelineConfig::default();
    let (source, handle) = ChannelSource::<u64>::with_config(&config);
    let mut p = PipelineBuilder::new(config);
    let (tx, rx) = p.queue::<u64>("q");
    let sink = CollectSink::new();
    let got = sink.handle();
    let out = p.sink("out", sink);
    p.add_source("channel", source, Identity, QueueOutput::new(tx));
    p.add_queue_segment("double", rx, map(|x: u64| x * 2), out);
    (p.build().expect("valid"), handle, got)
}

#[test]
fn idle_pipeline_uses_no_cpu_and_wakes_on_input() {
    let (pipeline, handle, got) = channel_pipeline();
    let running = pipeline.spawn().expect("starts");

    let cpu0 = named_threads_cpu(&["channel", "double"]);
    thread::sleep(WAIT);
    let idle_cpu = named_threads_cpu(&["channel", "double"]) - cpu0;

    for x in 0..10 {
        assert_eq!(handle.send(x).expect("running"), SendOutcome::Sent);
    }
    drop(handle);
    let report = running.join().expect("runs to the end");
    assert_eq!(got.take(), (0..10).map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(report.events_out, 10);
    assert!(
        idle_cpu < BUDGET,
        "idle pipeline used {idle_cpu:?} in {WAIT:?}"
    );
}

/// Watching an idle pipeline costs no CPU either: the monitor thread (metrics published and a
/// progress line written every 50 ms) sleeps between reads, and the dashboard's server thread
/// waits for requests (the HTTP library's own acceptor thread, unnamed, blocks in `accept`).
#[test]
fn watching_an_idle_pipeline_uses_no_cpu() {
    use eventflux::observe::{Progress, PublishMetrics};
    let (pipeline, handle, _) = channel_pipeline();
    let running = pipeline
        .publish_metrics(PublishMetrics::new("idle").every(Duration::from_millis(50)))
        .progress(Progress::to_writer(std::io::sink()).every(Duration::from_millis(50)))
        .spawn()
        .expect("starts");
    running.serve_dashboard("127.0.0.1:0").expect("serves");
    let watched = ["channel", "double", "ef-monitor", "ef-dashboard"];
    let cpu0 = named_threads_cpu(&watched);
    thread::sleep(WAIT);
    let idle_cpu = named_threads_cpu(&watched) - cpu0;
    // (Checked after the wait: a new thread names itself once it runs.)
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("comm")).unwrap_or_default())
        .map(|c| c.trim().to_string())
        .collect();
    for name in ["ef-monitor", "ef-dashboard"] {
        assert!(threads.iter().any(|t| t == name), "{name} in {threads:?}");
    }
    drop(handle);
    let report = running.join().expect("runs to the end");
    assert_eq!(report.events_out, 0);
    assert!(
        idle_cpu < BUDGET,
        "idle watched pipeline used {idle_cpu:?} in {WAIT:?}"
    );
}

/// Processing-time timers do not turn idling into spinning: an idle source with an idleness
/// timeout, and behind `=>` a stage whose timer is always due (the worst a buggy stage can
/// ask), stay within the CPU budget while the input is quiet — the runtime waits at least
/// 1 ms between timer calls.
#[test]
fn idle_timers_do_not_spin() {
    struct AlwaysDue(u64);
    impl Stage<u64> for AlwaysDue {
        type Out = u64;
        fn process<E: Emit<u64>>(&mut self, x: u64, out: &mut E) {
            out.emit(x);
        }
        fn next_timer(&self) -> Option<Duration> {
            Some(Duration::ZERO)
        }
        fn on_timer<E: Emit<u64>>(&mut self, _: &mut E) {
            self.0 += 1;
        }
    }
    let config = PipelineConfig::default();
    let (source, handle) = ChannelSource::<u64>::with_config(&config);
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        source quiet = source;
        stage  marks = watermarks(|x: &u64| *x, 0).idle_timeout(Duration::from_millis(50));
        stage  timer = AlwaysDue(0);
        sink   out   = sink;
        quiet -> marks => timer -> out;
    };
    let running = app.spawn().expect("starts");
    assert_eq!(handle.send(7).expect("running"), SendOutcome::Sent);
    let cpu0 = named_threads_cpu(&["quiet", "timer"]);
    thread::sleep(WAIT);
    let idle_cpu = named_threads_cpu(&["quiet", "timer"]) - cpu0;
    drop(handle);
    running.join().expect("runs to the end");
    assert_eq!(got.take(), [7]);
    assert!(
        idle_cpu < BUDGET,
        "idle pipeline with timers used {idle_cpu:?} in {WAIT:?}"
    );
}

/// A checkpointing pipeline stays idle too: with a checkpoint every 20 ms and no input, its
/// segments and the checkpoint writer use little CPU — the 50 checkpoints a second are taken
/// and written (measured: ~70 ms of CPU a second, mostly the writer's file work), and nothing
/// spins between them — and the pipeline still runs to the end exactly.
#[test]
fn an_idle_checkpointing_pipeline_does_not_spin() {
    let config = PipelineConfig::builder()
        .checkpoint_interval(Duration::from_millis(20))
        .build()
        .expect("valid");
    let (source, handle) = ChannelSource::<u64>::with_config(&config);
    let mut p = PipelineBuilder::new(config);
    let (tx, rx) = p.queue::<u64>("q");
    let sink = CollectSink::new();
    let got = sink.handle();
    let out = p.sink("out", sink);
    let sum = p.named(
        "sum",
        stateful(0u64, |s: &mut u64, x: u64| {
            *s += x;
            Some(*s)
        }),
    );
    p.add_source("ckpt-source", source, Identity, QueueOutput::new(tx));
    p.add_queue_segment("ckpt-sum", rx, sum, out);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let running = p
        .build()
        .and_then(|p| p.checkpoints(dir.path(), Recovery::StartFresh))
        .and_then(|p| p.spawn())
        .expect("starts");

    // Thread names unique to this test (tests run in parallel); the writer is `ef-checkpoint`.
    let names = ["ckpt-source", "ckpt-sum", "ef-checkpoint"];
    let cpu0 = named_threads_cpu(&names);
    thread::sleep(WAIT);
    let idle_cpu = named_threads_cpu(&names).saturating_sub(cpu0);

    for x in 1..=4 {
        assert_eq!(handle.send(x).expect("running"), SendOutcome::Sent);
    }
    drop(handle);
    let report = running.join().expect("runs to the end");
    assert_eq!(got.take(), [1, 3, 6, 10]);
    assert!(
        report.checkpoints.completed >= 5,
        "{:?}",
        report.checkpoints
    );
    assert!(
        idle_cpu < BUDGET,
        "idle checkpointing pipeline used {idle_cpu:?} in {WAIT:?}"
    );
}
