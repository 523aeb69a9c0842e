//! The crash test's pipeline and checker, shared by `examples/crash_test.rs` and the test suite:
//! a pipeline with a keyed window behind a queue and a fan-in into a two-phase-commit file sink
//! is killed with SIGKILL at random instants, restarted from its checkpoint directory each
//! time, and its committed output compared with an uninterrupted run's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use eventflux::io::{JsonLinesParts, JsonLinesSource};
use eventflux::prelude::*;

/// One input event.
#[derive(Clone, Debug, Serialize, Deserialize, Checkpoint)]
pub struct Tick {
    pub ts: u64,
    pub symbol: u32,
    pub price: i64,
    pub qty: u32,
}

/// One output row: a symbol's window.
#[derive(Debug, Serialize)]
pub struct Bar {
    pub symbol: u32,
    pub start: u64,
    pub trades: u64,
    pub volume: i128,
    pub high: i64,
    pub mean: f64,
}

/// A small deterministic generator (xorshift).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Writes `n` ticks as JSON lines (a few malformed lines among them, which go to dead letters
/// in every run alike).
pub fn write_input(path: &Path, n: u64, seed: u64) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut ts = 0;
    for i in 0..n {
        ts += rng.below(3);
        if i % 10_007 == 5 {
            writeln!(out, "{{\"ts\": \"not a number\"}}")?;
        }
        let t = Tick {
            ts,
            symbol: rng.below(50) as u32,
            price: 1_000 + rng.below(500) as i64,
            qty: 1 + rng.below(100) as u32,
        };
        serde_json::to_writer(&mut out, &t)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The pipeline with `$workers` keyed workers (a literal, as `pipeline!` takes it).
macro_rules! crash_pipeline {
    ($workers:tt, $source:expr, $sink:expr) => {{
        let (source, sink) = ($source, $sink);
        pipeline! {
            config { batch_size: 256, checkpoint_interval_ms: 10 }
            source ticks = source;
            stage big = filter(|t: &Tick| t.qty > 5);
            stage bars = tumbling(100, |t: &Tick| t.ts)
                .out_of_orderness(2)
                .group_by(|t: &Tick| t.symbol)
                .aggregate((count(), sum(|t: &Tick| t.qty), max(|t: &Tick| t.price), avg(|t: &Tick| t.price)))
                .select(|symbol, bounds, (trades, volume, high, mean)| Bar {
                    symbol,
                    start: bounds.start,
                    trades,
                    volume,
                    high,
                    mean,
                });
            sink out = sink;
            ticks -> big =>[workers = $workers, key = |t: &Tick| t.symbol] bars => out;
        }
    }};
}

/// Runs the pipeline, with `workers` keyed workers (1 to 4), over `input`
/// into the part files of `out`; with `state`, it checkpoints there every 10 ms and first
/// resumes from it (whatever number of workers took the checkpoint: keyed state is saved by
/// key group).
pub fn run(
    input: &Path,
    out: &Path,
    state: Option<&Path>,
    workers: usize,
) -> Result<(), PipelineError> {
    let source =
        JsonLinesSource::<Tick>::open(input).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    let sink =
        JsonLinesParts::<Bar>::create(out).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    let app = match workers {
        1 => crash_pipeline!(1, source, sink),
        2 => crash_pipeline!(2, source, sink),
        3 => crash_pipeline!(3, source, sink),
        4 => crash_pipeline!(4, source, sink),
        other => {
            return Err(PipelineError::Invalid(format!(
                "the crash test runs 1 to 4 workers, not {other}"
            )));
        }
    };
    match state {
        Some(dir) => app.checkpoints(dir, Recovery::ResumeOrStart)?.run()?,
        None => app.run()?,
    };
    Ok(())
}

/// Lines missing from `got` and lines `got` has too many of, against `want` (as multisets:
/// the workers' rows interleave at the fan-in).
pub fn compare(want: &[String], got: &[String]) -> (u64, u64) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for w in want {
        *count.entry(w).or_default() += 1;
    }
    for g in got {
        *count.entry(g).or_default() -= 1;
    }
    let lost = count.values().filter(|&&c| c > 0).map(|&c| c as u64).sum();
    let duplicated = count
        .values()
        .filter(|&&c| c < 0)
        .map(|&c| (-c) as u64)
        .sum();
    (lost, duplicated)
}

/// What a crash run found.
pub struct Outcome {
    pub kills: u32,
    /// The newest checkpoint the killed runs left (0: none).
    pub resumed_from: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub rows: usize,
}

/// The crash test: a reference run (2 workers), then `rounds` runs of `child` (which runs
/// [`run`] with a state directory and the number of workers it is given) killed with SIGKILL
/// after a random delay, then one run to completion; the committed output is compared with
/// the reference. Run `i` has `workers[i % workers.len()]` workers: with several numbers,
/// every restart may resume another number's checkpoint (rescaling).
pub fn crash_rounds(
    work: &Path,
    events: u64,
    (rounds, workers): (u32, &[usize]),
    seed: u64,
    child: impl Fn(&Path, &Path, &Path, usize) -> Command,
) -> Result<Outcome, String> {
    let workers_of = |round: u32| {
        let n = workers.len().max(1);
        workers.get(round as usize % n).copied().unwrap_or(2)
    };
    let input = work.join("ticks.jsonl");
    write_input(&input, events, seed).map_err(|e| e.to_string())?;
    let reference_out = work.join("reference");
    let t0 = Instant::now();
    run(&input, &reference_out, None, 2).map_err(|e| format!("reference run: {e}"))?;
    let full = t0.elapsed();
    let want = JsonLinesParts::<Bar>::read_committed(&reference_out).map_err(|e| e.to_string())?;
    let (state, out) = (work.join("state"), work.join("out"));
    let mut rng = Rng::new(seed ^ 0x9e37_79b9);
    let mut kills = 0;
    for round in 0..rounds {
        let mut c = child(&input, &state, &out, workers_of(round))
            .spawn()
            .map_err(|e| format!("cannot start the child: {e}"))?;
        // Kills spread over about one full run's time in all (each restart resumes where
        // the last checkpoint was, so the runs progress): 0.2 to 1.8 × full / rounds, at
        // least 30 ms. A run that ends before its kill ends the round without one.
        let slot = (full.as_millis() as u64 / u64::from(rounds.max(1))).max(30);
        let delay = Duration::from_millis(slot / 5 + rng.below(slot * 8 / 5));
        let deadline = Instant::now() + delay;
        let mut exited = None;
        while Instant::now() < deadline {
            if let Some(status) = c.try_wait().map_err(|e| e.to_string())? {
                exited = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match exited {
            Some(status) if !status.success() => return Err(format!("the child failed: {status}")),
            Some(_) => {}
            None => {
                c.kill().map_err(|e| e.to_string())?; // SIGKILL
                let _ = c.wait();
                kills += 1;
            }
        }
    }
    let resumed_from = eventflux::state::LocalDir::open(&state, 3)
        .and_then(|d| d.checkpoints())
        .map(|ids| ids.last().copied().unwrap_or(0))
        .map_err(|e| format!("the state directory after the kills: {e}"))?;
    let status = child(&input, &state, &out, workers_of(rounds))
        .status()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    if !status.success() {
        return Err(format!("the final run failed: {status}"));
    }
    let got = JsonLinesParts::<Bar>::read_committed(&out).map_err(|e| e.to_string())?;
    let (lost, duplicated) = compare(&want, &got);
    Ok(Outcome {
        kills,
        resumed_from,
        lost,
        duplicated,
        rows: want.len(),
    })
}

/// A fresh work directory under the system's temporary directory.
pub fn work_dir(tag: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("eventflux-{tag}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
