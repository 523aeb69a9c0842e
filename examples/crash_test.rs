//! Real crashes: runs a checkpointing pipeline (a keyed window behind a queue, a fan-in, a
//! two-phase-commit file sink) as a child process over a file of events, kills it with SIGKILL
//! at random instants, restarts it from its checkpoint directory each time, and compares the
//! committed output with an uninterrupted run's.
//!
//! ```text
//! cargo run --release --example crash_test -- --rounds 20 [--events 2000000] [--seed 7] [--rescale]
//! ```
//!
//! With `--rescale`, the restarts cycle through 2, 4, 1 and 3 keyed workers, each resuming
//! the checkpoint another number of workers took.
//!
//! Prints `lost L, duplicated D` (its real counts) and exits non-zero unless both are 0.

use std::path::Path;
use std::process::{Command, ExitCode};

#[path = "common/crash.rs"]
mod crash;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match arg(args, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name} takes a number, not `{v}`")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The child: one run of the pipeline, resuming from the state directory.
    if args.iter().any(|a| a == "--child") {
        let (Some(input), Some(state), Some(out), Ok(workers)) = (
            arg(&args, "--input"),
            arg(&args, "--state"),
            arg(&args, "--out"),
            number(&args, "--workers", 2),
        ) else {
            eprintln!("--child needs --input, --state, --out and a number of --workers");
            return ExitCode::from(2);
        };
        let state = Some(Path::new(&state));
        return match crash::run(Path::new(&input), Path::new(&out), state, workers as usize) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let parsed = (|| {
        Ok::<_, String>((
            number(&args, "--rounds", 20)? as u32,
            number(&args, "--events", 2_000_000)?,
            number(&args, "--seed", 7)?,
        ))
    })();
    let (rounds, events, seed) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cannot find this program: {e}");
            return ExitCode::FAILURE;
        }
    };
    let work = match crash::work_dir("crash-test") {
        Ok(w) => w,
        Err(e) => {
            eprintln!("cannot make a work directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers: &[usize] = if args.iter().any(|a| a == "--rescale") {
        &[2, 4, 1, 3]
    } else {
        &[2]
    };
    let child = |input: &Path, state: &Path, out: &Path, workers: usize| {
        let mut c = Command::new(&exe);
        c.arg("--child")
            .arg("--workers")
            .arg(workers.to_string())
            .arg("--input")
            .arg(input)
            .arg("--state")
            .arg(state)
            .arg("--out")
            .arg(out);
        c
    };
    let outcome = crash::crash_rounds(&work, events, (rounds, workers), seed, child);
    let _ = std::fs::remove_dir_all(&work);
    match outcome {
        Ok(o) => {
            println!(
                "{} rounds, {} kills, last resumed from checkpoint {}, {} rows: lost {}, duplicated {}",
                rounds, o.kills, o.resumed_from, o.rows, o.lost, o.duplicated
            );
            if o.lost == 0 && o.duplicated == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("crash test failed: {e}");
            ExitCode::FAILURE
        }
    }
}
