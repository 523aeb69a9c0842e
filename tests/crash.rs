//! Real crashes in the test suite: the crash test of `examples/crash_test.rs` with 3 rounds,
//! rescaling the keyed workers at every restart.
//! The test binary is its own child process: `crash_child` runs the pipeline once when the
//! parent starts it with `EVENTFLUX_CRASH_CHILD` set (and does nothing otherwise).

use std::process::Command;

#[path = "../examples/common/crash.rs"]
mod crash;

const CHILD: &str = "EVENTFLUX_CRASH_CHILD";

#[test]
fn crash_child() {
    let Ok(paths) = std::env::var(CHILD) else {
        return;
    };
    let paths: Vec<&str> = paths.split('\n').collect();
    let [input, state, out, workers] = paths[..] else {
        panic!("{CHILD} must hold three paths and a number of workers");
    };
    let workers: usize = workers
        .parse()
        .unwrap_or_else(|e| panic!("{CHILD}: workers: {e}"));
    crash::run(
        input.as_ref(),
        out.as_ref(),
        Some(std::path::Path::new(state)),
        workers,
    )
    .unwrap_or_else(|e| panic!("child run: {e}"));
}

#[test]
fn sigkill_at_random_instants_loses_and_duplicates_nothing() {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let work = crash::work_dir("crash-suite").unwrap_or_else(|e| panic!("{e}"));
    let child = |input: &std::path::Path,
                 state: &std::path::Path,
                 out: &std::path::Path,
                 workers: usize| {
        let mut c = Command::new(&exe);
        c.args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(
                CHILD,
                format!(
                    "{}\n{}\n{}\n{workers}",
                    input.display(),
                    state.display(),
                    out.display()
                ),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    // Each restart has another number of keyed workers (2, 4, 1, then 3 for the final run):
    // it resumes a checkpoint another number took.
    let outcome = crash::crash_rounds(&work, 200_000, (3, &[2, 4, 1, 3]), 11, child);
    let _ = std::fs::remove_dir_all(&work);
    let o = outcome.unwrap_or_else(|e| panic!("{e}"));
    assert!(o.rows > 10_000, "{} rows", o.rows);
    assert_eq!((o.lost, o.duplicated), (0, 0), "lost, duplicated");
    assert!(o.kills > 0, "no run was killed");
    assert!(o.resumed_from > 0, "no killed run completed a checkpoint");
}
