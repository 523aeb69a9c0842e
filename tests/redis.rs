//! Redis Streams sources and sinks against a real `redis-server` (`REDIS_URL`, for example
//! `redis://127.0.0.1:6390`; `.ci/run` starts one). Without `REDIS_URL` every test here skips
//! with a message.
//!
//! Each test uses its own stream names (the test's name and the process id), so tests run in
//! parallel against one server.

mod common;

use std::collections::BTreeMap;

use common::{BOUND, within};
use eventflux::io::{DeadLetters, RedisStream};
use eventflux::prelude::*;

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "SKIPPED: set REDIS_URL (for example redis://127.0.0.1:6379) to run the Redis tests"
            );
            None
        }
    }
}

fn unique(name: &str) -> String {
    format!("ef-test-{name}-{}", std::process::id())
}

fn redis_cmd(url: &str, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn).unwrap()
}

fn xlen(url: &str, key: &str) -> u64 {
    redis::from_redis_value(&redis_cmd(url, &["XLEN", key])).unwrap()
}

/// Entries in all of `stream`'s 2 partitions.
fn total_len(url: &str, stream: &RedisStream) -> u64 {
    (0..2).map(|p| xlen(url, &stream.partition_key(p))).sum()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: u32,
    value: u64,
}

/// Reading `i`: sensor `i`, value `i`.
fn reading(i: u64) -> Reading {
    Reading {
        sensor: i as u32,
        value: i,
    }
}

/// Reads a bounded source to its end, returning the events and the dead letters.
fn read_all(
    stream: &RedisStream,
    worker: usize,
    workers: usize,
) -> (Vec<Reading>, Vec<DeadLetter>) {
    let app = {
        let source = stream.source::<Reading>(worker, workers).unwrap().bounded();
        let out = CollectSink::new();
        let got = out.handle();
        let app = pipeline! {
            source readings = source;
            sink   out = out;
            readings -> out;
        };
        (app, got)
    };
    let report = app.0.run().unwrap();
    (app.1.take(), report.dead_letters)
}

fn write_all(stream: &RedisStream, readings: Vec<Reading>) {
    let sink = stream.sink("writer", |r: &Reading| r.sensor);
    let app = pipeline! {
        source readings = IterSource::new(readings);
        sink   out = sink;
        readings -> out;
    };
    app.run().unwrap();
}

/// Written by key into 6 partitions, read back by 3 workers: every event exactly once, each
/// sensor in one partition, in order within it.
#[test]
fn workers_read_their_partitions_exactly_once() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let stream = RedisStream::new(&url, unique("partitions"), 6).unwrap();
        let input: Vec<Reading> = (0..3_000u64)
            .map(|i| Reading {
                sensor: (i % 17) as u32,
                value: i,
            })
            .collect();
        write_all(&stream, input.clone());
        let total: u64 = (0..6).map(|p| xlen(&url, &stream.partition_key(p))).sum();
        assert_eq!(total, 3_000);
        let mut all = Vec::new();
        for w in 0..3 {
            let (got, dead) = read_all(&stream, w, 3);
            assert!(dead.is_empty());
            // Within a partition, and so within a sensor, the order is kept.
            let mut by_sensor: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for r in &got {
                assert_eq!(
                    stream.partition_of(&r.sensor) as usize % 3,
                    w,
                    "{r:?} read by worker {w}"
                );
                by_sensor.entry(r.sensor).or_default().push(r.value);
            }
            for values in by_sensor.values() {
                assert!(values.windows(2).all(|v| v[0] < v[1]), "{values:?}");
            }
            all.extend(got);
        }
        all.sort_by_key(|r| r.value);
        assert_eq!(all, input);
    });
}

/// The compact binary codec round-trips events exactly, and garbage under it is a dead letter.
#[test]
fn the_postcard_codec_round_trips_and_dead_letters_garbage() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let stream = RedisStream::new(&url, unique("postcard"), 3)
            .unwrap()
            .codec(eventflux::io::Codec::Postcard);
        // 999 events and one bad entry: the report keeps up to 1 000 dead letters.
        let input: Vec<Reading> = (0..999u64)
            .map(|i| Reading {
                sensor: (i % 5) as u32,
                value: i * 1_000_003,
            })
            .collect();
        write_all(&stream, input.clone());
        redis_cmd(
            &url,
            &["XADD", &stream.partition_key(0), "*", "data", "\u{1}"],
        );
        let (mut got, dead) = read_all(&stream, 0, 1);
        got.sort_by_key(|r| r.value);
        assert_eq!(got, input);
        assert_eq!(dead.len(), 1, "{dead:?}");
        // The same entries are not JSON: a JSON reader dead-letters every one.
        let as_json = RedisStream::new(&url, stream.name(), 3).unwrap();
        let (got, dead) = read_all(&as_json, 0, 1);
        assert!(got.is_empty());
        assert_eq!(dead.len(), 1_000);
    });
}

/// A source's position resumes exactly after what it emitted.
#[test]
fn a_source_resumes_from_its_position() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let stream = RedisStream::new(&url, unique("position"), 2).unwrap();
        let input: Vec<Reading> = (0..500u64).map(reading).collect();
        write_all(&stream, input.clone());
        let letters = DeadLetters::collect();
        let mut cx = SourceContext::new(100, &letters);
        let mut first = stream.source::<Reading>(0, 1).unwrap().bounded();
        first.open().unwrap();
        let mut got = Vec::new();
        first.poll(&mut cx, &mut got).unwrap();
        first.poll(&mut cx, &mut got).unwrap();
        assert_eq!(got.len(), 200);
        let at = first.position().unwrap();
        let mut second = stream.source::<Reading>(0, 1).unwrap().bounded();
        second.seek(&at).unwrap();
        second.open().unwrap();
        while second.poll(&mut cx, &mut got).unwrap() != SourcePoll::Done {}
        got.sort_by_key(|r| r.value);
        assert_eq!(got, input);
        // A position of another layout is refused, naming the partition.
        let mut other = stream.source::<Reading>(1, 2).unwrap();
        let bad = serde_json::json!({ "stream": "elsewhere", "partitions": {} });
        assert!(
            other
                .seek(&bad)
                .unwrap_err()
                .to_string()
                .contains("not a position in stream")
        );
    });
}

/// An entry that does not decode is a dead letter naming the stream, the entry id and why;
/// the rest are read.
#[test]
fn an_entry_that_does_not_decode_is_a_dead_letter() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let stream = RedisStream::new(&url, unique("dead"), 1).unwrap();
        let key = stream.partition_key(0);
        redis_cmd(
            &url,
            &["XADD", &key, "*", "data", r#"{"sensor":1,"value":1}"#],
        );
        let bad_id: String =
            redis::from_redis_value(&redis_cmd(&url, &["XADD", &key, "*", "data", "not json"]))
                .unwrap();
        redis_cmd(&url, &["XADD", &key, "*", "other", "x"]);
        redis_cmd(
            &url,
            &["XADD", &key, "*", "data", r#"{"sensor":2,"value":2}"#],
        );
        let (got, dead) = read_all(&stream, 0, 1);
        assert_eq!(
            got,
            [
                Reading {
                    sensor: 1,
                    value: 1
                },
                Reading {
                    sensor: 2,
                    value: 2
                }
            ]
        );
        assert_eq!(dead.len(), 2);
        assert!(
            dead[0]
                .origin
                .contains(&format!("stream {key} entry {bad_id}")),
            "{:?}",
            dead[0]
        );
        assert_eq!(dead[0].raw, "not json");
        assert!(dead[0].reason.contains("expected"), "{:?}", dead[0]);
        assert!(dead[1].reason.contains("no `data` field"), "{:?}", dead[1]);
    });
}

/// Refused connections, bad URLs and missing streams are clear errors, never panics.
#[test]
fn connection_and_configuration_errors_are_clear() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let e = RedisStream::new("http://localhost", "s", 1).unwrap_err();
        assert!(e.to_string().contains("`url`"), "{e}");
        assert!(
            RedisStream::new(&url, "s", 0)
                .unwrap_err()
                .to_string()
                .contains("`partitions`")
        );
        // Nothing listens on port 1: refused, retried, then an error naming the URL.
        let refused = RedisStream::new("redis://127.0.0.1:1", "s", 1).unwrap();
        let app = pipeline! {
            source readings = refused.source::<Reading>(0, 1).unwrap().bounded();
            sink   out = CollectSink::new();
            readings -> out;
        };
        let e = app.run().unwrap_err().to_string();
        assert!(e.contains("redis://127.0.0.1:1"), "{e}");
        // A stream that does not exist.
        let missing = RedisStream::new(&url, unique("missing"), 2).unwrap();
        let app = pipeline! {
            source readings = missing.source::<Reading>(0, 1).unwrap().bounded();
            sink   out = CollectSink::new();
            readings -> out;
        };
        let e = app.run().unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains(&missing.partition_key(0)),
            "{e}"
        );
        // One partition with entries: the others are empty, not missing.
        let sparse = RedisStream::new(&url, unique("sparse"), 3).unwrap();
        redis_cmd(
            &url,
            &[
                "XADD",
                &sparse.partition_key(1),
                "*",
                "data",
                r#"{"sensor":1,"value":7}"#,
            ],
        );
        let (got, _) = read_all(&sparse, 0, 1);
        assert_eq!(
            got,
            [Reading {
                sensor: 1,
                value: 7
            }]
        );
    });
}

/// The sink's two-phase commit: staged events are invisible until their checkpoint commits;
/// committing again (after a crash) writes nothing twice; recovery commits what was staged up
/// to the resumed checkpoint and drops what was staged after it.
#[test]
fn the_sink_commits_each_checkpoint_exactly_once() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let stream = RedisStream::new(&url, unique("twophase"), 2).unwrap();
        let len = |s: &RedisStream| total_len(&url, s);
        let mut sink = stream.sink("k", |r: &Reading| r.sensor).transactional();
        Sink::<Reading>::open(&mut sink).unwrap();
        for i in 0..10 {
            sink.send(reading(i)).unwrap();
        }
        Sink::<Reading>::pre_commit(&mut sink, CheckpointId(1)).unwrap();
        assert_eq!(len(&stream), 0, "staged, not visible");
        Sink::<Reading>::commit(&mut sink, CheckpointId(1)).unwrap();
        assert_eq!(len(&stream), 10);
        Sink::<Reading>::commit(&mut sink, CheckpointId(1)).unwrap();
        assert_eq!(len(&stream), 10, "a second commit writes nothing");
        for i in 10..15 {
            sink.send(reading(i)).unwrap();
        }
        Sink::<Reading>::pre_commit(&mut sink, CheckpointId(2)).unwrap();
        for i in 15..18 {
            sink.send(reading(i)).unwrap();
        }
        Sink::<Reading>::pre_commit(&mut sink, CheckpointId(3)).unwrap();
        // Crash: checkpoint 2 completed (its commit did not run), 3 did not.
        drop(sink);
        let mut again = stream.sink("k", |r: &Reading| r.sensor).transactional();
        Sink::<Reading>::open(&mut again).unwrap();
        Sink::<Reading>::recover(&mut again, CheckpointId(2)).unwrap();
        assert_eq!(len(&stream), 15, "2 committed on recovery, 3 dropped");
        Sink::<Reading>::recover(&mut again, CheckpointId(2)).unwrap();
        assert_eq!(len(&stream), 15, "recovering twice writes nothing twice");
        let (mut got, _) = read_all(&stream, 0, 1);
        got.sort_by_key(|r| r.value);
        assert_eq!(got, (0..15).map(reading).collect::<Vec<_>>());
    });
}

/// End to end with checkpoints: a pipeline reading one Redis stream and writing another,
/// stopped with a savepoint and resumed, ends with exactly the input once.
#[test]
fn a_resumed_pipeline_writes_each_event_once() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let input_stream = RedisStream::new(&url, unique("e2e-in"), 3).unwrap();
        let output_stream = RedisStream::new(&url, unique("e2e-out"), 2).unwrap();
        let input: Vec<Reading> = (0..5_000u64)
            .map(|i| Reading {
                sensor: (i % 7) as u32,
                value: i,
            })
            .collect();
        write_all(&input_stream, input.clone());
        let dir = tempfile::tempdir().unwrap();
        let run = |stop_early: bool| {
            let source = input_stream.source::<Reading>(0, 1).unwrap().bounded();
            let sink = output_stream
                .sink("e2e", |r: &Reading| r.sensor)
                .transactional();
            let app = pipeline! {
                source readings = source;
                stage  double = map(|r: Reading| Reading { sensor: r.sensor, value: r.value * 2 });
                sink   out = sink;
                readings -> double => out;
            };
            let app = app
                .checkpoints(dir.path(), Recovery::ResumeOrStart)
                .unwrap();
            if stop_early {
                let handle = app.spawn().unwrap();
                handle.stop_with_checkpoint().unwrap();
            } else {
                app.run().unwrap();
            }
        };
        run(true);
        run(false);
        let (mut got, dead) = read_all(&output_stream, 0, 1);
        assert!(dead.is_empty());
        got.sort_by_key(|r| r.value);
        let expected: Vec<Reading> = input
            .iter()
            .map(|r| Reading {
                sensor: r.sensor,
                value: r.value * 2,
            })
            .collect();
        assert_eq!(got.len(), expected.len(), "lost or duplicated");
        assert_eq!(got, expected);
    });
}

/// A source that follows its streams (not bounded) delivers entries written after it started,
/// emits the least of its partitions' watermarks (an idle partition stops holding event time
/// back after its timeout), and stops promptly when asked.
#[test]
fn a_following_source_sees_new_entries_and_stops_when_asked() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let stream = RedisStream::new(&url, unique("follow"), 2).unwrap();
        let source = stream
            .source::<Reading>(0, 1)
            .unwrap()
            .event_time(|r: &Reading| r.value, 0)
            .idle_timeout(std::time::Duration::from_millis(200));
        let out = CollectSink::new();
        let got = out.handle();
        let app = pipeline! {
            source readings = source;
            stage  plain = map(|r: Reading| r);
            sink   out = out;
            readings -> plain => out;
        };
        let handle = app.spawn().unwrap();
        // Only partition 1 gets entries: partition 0 stays empty and goes idle.
        let key = stream.partition_key(1);
        for v in 1..=50u64 {
            redis_cmd(
                &url,
                &[
                    "XADD",
                    &key,
                    "*",
                    "data",
                    &format!(r#"{{"sensor":9,"value":{v}}}"#),
                ],
            );
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let m = handle.metrics();
            let delivered = m.node("out").map_or(0, |n| n.events_in);
            let watermark = m.node("plain").and_then(|n| n.watermark);
            if delivered == 50 && watermark == Some(49) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "delivered {delivered}, watermark {watermark:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let t0 = std::time::Instant::now();
        let report = handle.stop().unwrap();
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "stopped in {:?}",
            t0.elapsed()
        );
        assert_eq!(report.events_out, 50);
        let values: Vec<u64> = got.take().iter().map(|r| r.value).collect();
        assert_eq!(values, (1..=50).collect::<Vec<u64>>());
    });
}

/// The end of the stream makes visible a checkpoint that was staged but not known to be
/// complete, without recording it as committed: a run that resumes from the checkpoint before
/// it removes those events and the tail, then commits its own checkpoint with the same id
/// (before, the end of the stream committed it, and the resumed run's commit of that id was
/// skipped as done: its events were lost).
#[test]
fn an_unfinished_checkpoint_released_at_the_end_is_redone_by_a_resumed_run() {
    let Some(url) = redis_url() else { return };
    within(BOUND, move || {
        let stream = RedisStream::new(&url, unique("release"), 2).unwrap();
        let len = |s: &RedisStream| total_len(&url, s);
        let sink = || stream.sink("k", |r: &Reading| r.sensor).transactional();
        let mut first = sink();
        Sink::<Reading>::open(&mut first).unwrap();
        Sink::<Reading>::recover(&mut first, CheckpointId(0)).unwrap();
        for i in 0..5 {
            first.send(reading(i)).unwrap();
        }
        Sink::<Reading>::pre_commit(&mut first, CheckpointId(1)).unwrap();
        Sink::<Reading>::commit(&mut first, CheckpointId(1)).unwrap();
        for i in 5..8 {
            first.send(reading(i)).unwrap();
        }
        // Checkpoint 2's barrier passed; it never completed.
        Sink::<Reading>::pre_commit(&mut first, CheckpointId(2)).unwrap();
        for i in 8..10 {
            first.send(reading(i)).unwrap();
        }
        Sink::<Reading>::close(&mut first).unwrap();
        assert_eq!(len(&stream), 10, "the end of the stream shows everything");
        // The job crashed before recording that it finished: resume from checkpoint 1.
        let mut second = sink();
        Sink::<Reading>::open(&mut second).unwrap();
        Sink::<Reading>::recover(&mut second, CheckpointId(1)).unwrap();
        assert_eq!(
            len(&stream),
            5,
            "checkpoint 2's events and the tail are gone"
        );
        for i in 5..10 {
            second.send(reading(i)).unwrap();
        }
        Sink::<Reading>::pre_commit(&mut second, CheckpointId(2)).unwrap();
        Sink::<Reading>::commit(&mut second, CheckpointId(2)).unwrap();
        Sink::<Reading>::close(&mut second).unwrap();
        let (mut got, _) = read_all(&stream, 0, 1);
        got.sort_by_key(|r| r.value);
        assert_eq!(got, (0..10).map(reading).collect::<Vec<_>>());
    });
}
