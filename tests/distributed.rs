//! Scale-out on Redis Streams, with real processes: 3 worker processes on 6 partitions
//! produce exactly the single-process result; with one worker SIGKILLed mid-run and restarted
//! from its checkpoint directory, still exactly (lost 0, duplicated 0); and with the Redis
//! server itself restarted mid-run (AOF, `appendfsync always`), still exactly.
//!
//! Needs `REDIS_URL` (`.ci/run` starts a server); skips with a message without it. The test
//! binary is its own worker process: `worker_child` runs one worker when the parent starts it
//! with `EVENTFLUX_WORKER_CHILD` set (and does nothing otherwise).

mod common;
#[path = "../examples/common/distributed.rs"]
mod distributed;
#[path = "../examples/common/trades.rs"]
#[allow(dead_code)]
mod trades;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventflux::io::RedisStream;

const CHILD: &str = "EVENTFLUX_WORKER_CHILD";
const TRADES: usize = 120_000;

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("EVENTFLUX_REQUIRE_REDIS").is_none(),
                "EVENTFLUX_REQUIRE_REDIS is set but REDIS_URL is not"
            );
            eprintln!(
                "SKIPPED: set REDIS_URL (for example redis://127.0.0.1:6379) to run the distributed tests"
            );
            None
        }
    }
}

fn streams(url: &str, name: &str) -> (RedisStream, RedisStream) {
    let base = format!("ef-dist-{name}-{}", std::process::id());
    (
        RedisStream::new(url, format!("{base}-in"), 6).unwrap(),
        RedisStream::new(url, format!("{base}-out"), 6).unwrap(),
    )
}

#[test]
fn worker_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = spec.split('\n').collect();
    let [url, input, output, worker, dir] = parts[..] else {
        panic!("{CHILD}: url, input, output, worker, dir");
    };
    let input = RedisStream::new(url, input, 6).unwrap();
    let output = RedisStream::new(url, output, 6).unwrap();
    let worker: usize = worker.parse().unwrap();
    distributed::work(
        &input,
        &output,
        worker,
        3,
        Path::new(dir),
        Duration::from_millis(50),
        true,
    )
    .unwrap_or_else(|e| panic!("worker {worker}: {e}"));
}

fn spawn_worker(
    url: &str,
    input: &RedisStream,
    output: &RedisStream,
    w: usize,
    dir: &Path,
) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args(["worker_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(
            CHILD,
            format!(
                "{url}\n{}\n{}\n{w}\n{}",
                input.name(),
                output.name(),
                dir.display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits until `dir` holds a completed checkpoint (the worker is mid-run), at most 30 s.
fn wait_for_checkpoint(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let any = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("chk-"))
            })
            .unwrap_or(false);
        if any {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no checkpoint in {} within 30 s", dir.display());
}

/// A job in progress: its streams (trades produced, output empty), the workers' checkpoint
/// directories, and 3 worker processes started.
struct Job {
    url: String,
    input: RedisStream,
    output: RedisStream,
    dirs: tempfile::TempDir,
    workers: Vec<Child>,
}

impl Job {
    fn start(url: &str, name: &str) -> Self {
        let (input, output) = streams(url, name);
        distributed::produce(&input, TRADES).unwrap();
        distributed::clear(&output).unwrap();
        let dirs = tempfile::tempdir().unwrap();
        let mut job = Self {
            url: url.to_string(),
            input,
            output,
            dirs,
            workers: Vec::new(),
        };
        job.workers = (0..3).map(|w| job.spawn(w)).collect();
        job
    }

    fn dir(&self, w: usize) -> std::path::PathBuf {
        self.dirs.path().join(format!("w{w}"))
    }

    /// Worker `w`'s process (resuming from its checkpoint directory if it has one).
    fn spawn(&self, w: usize) -> Child {
        spawn_worker(&self.url, &self.input, &self.output, w, &self.dir(w))
    }
}

fn check(output: &RedisStream) {
    let want = distributed::expected(TRADES).unwrap();
    let got = distributed::read_rows(output).unwrap();
    let (lost, extra) = distributed::compare(&want, &got);
    assert!(!want.is_empty());
    assert_eq!(
        (lost, extra),
        (0, 0),
        "lost {lost}, duplicated or wrong {extra} of {} rows",
        want.len()
    );
}

#[test]
fn three_worker_processes_equal_one_and_survive_a_sigkill() {
    let Some(url) = redis_url() else { return };
    // Uninterrupted: 3 processes, 6 partitions.
    let job = Job::start(&url, "plain");
    for (w, mut c) in job.workers.into_iter().enumerate() {
        common::wait_success(&mut c, &format!("worker {w}"));
    }
    check(&job.output);

    // Worker 1 killed with SIGKILL after its first checkpoint, then restarted from its
    // checkpoint directory.
    let mut job = Job::start(&url, "killed");
    wait_for_checkpoint(&job.dir(1));
    let victim = &mut job.workers[1];
    let killed = victim.try_wait().unwrap().is_none();
    victim.kill().unwrap();
    let _ = victim.wait();
    job.workers[1] = job.spawn(1);
    for (w, mut c) in job.workers.into_iter().enumerate() {
        common::wait_success(&mut c, &format!("worker {w}"));
    }
    eprintln!("worker 1 killed mid-run: {killed}");
    check(&job.output);
}

/// A `redis-server` of the test's own, on a free loopback port, persisting every write to its
/// append-only file before acknowledging it.
struct OwnServer {
    dir: std::path::PathBuf,
    port: u16,
    process: Child,
}

impl OwnServer {
    fn start(dir: std::path::PathBuf, port: u16) -> Self {
        let process = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { dir, port, process }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no shutdown work) and starts it again on the same port and
    /// files.
    fn crash_and_restart(mut self) -> Self {
        self.process.kill().unwrap();
        let _ = self.process.wait();
        Self::start(self.dir.clone(), self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The Redis server is killed and restarted mid-run: a worker rides it out (retrying) or
/// fails and is restarted from its checkpoints; either way the committed rows are exact.
#[test]
fn a_redis_restart_mid_run_loses_and_duplicates_nothing() {
    if redis_url().is_none() {
        return;
    }
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found,
        "REDIS_URL is set but there is no redis-server on the PATH to restart"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let server = OwnServer::start(files.path().to_path_buf(), port);
    let url = server.url();
    let mut job = Job::start(&url, "restart");
    wait_for_checkpoint(&job.dir(0));
    let server = server.crash_and_restart();
    // Each worker either rode the restart out or failed; a failed one is started again.
    let mut workers = std::mem::take(&mut job.workers);
    for (w, worker) in workers.iter_mut().enumerate() {
        let mut attempts = 0;
        loop {
            let status = {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    if let Some(s) = worker.try_wait().unwrap() {
                        break s;
                    }
                    assert!(Instant::now() < deadline, "worker {w} hangs");
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            if status.success() {
                break;
            }
            attempts += 1;
            assert!(attempts <= 3, "worker {w} failed {attempts} times");
            eprintln!("worker {w} failed across the restart; starting it again");
            *worker = job.spawn(w);
        }
    }
    check(&job.output);
    drop(server);
}
