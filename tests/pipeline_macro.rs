//! `pipeline!` end to end: every edge form runs and produces exact outputs.

use std::collections::BTreeMap;

use eventflux::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Trade {
    ts: u64,
    symbol: u32,
    volume: u32,
}

fn trades(n: u64) -> Vec<Trade> {
    (0..n)
        .map(|ts| Trade {
            ts,
            symbol: (ts % 5) as u32,
            volume: ((ts * 37) % 300) as u32,
        })
        .collect()
}

/// Per-stage counts when each fused edge is counted once: a one-to-one stage first (its output
/// is its input), an inspect in the middle, a filter last (its input is the inspect's output).
#[test]
fn fused_chain_counts_each_edge_once() {
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        source numbers = IterSource::new(1..=10u32);
        stage plus = map(|x: u32| x + 1);
        stage look = inspect(|_: &u32| {});
        stage even = filter(|x: &u32| x.is_multiple_of(2));
        stage half = map(|x: u32| x / 2);
        sink out = sink;
        numbers -> plus -> look -> even -> half -> out;
    };
    let report = app.run().expect("runs");
    assert_eq!(got.take(), [1, 2, 3, 4, 5]);
    let counts: Vec<_> = ["plus", "look", "even", "half"]
        .iter()
        .map(|n| report.metrics.node(n).map(|m| (m.events_in, m.events_out)))
        .collect();
    assert_eq!(
        counts,
        [Some((10, 10)), Some((10, 10)), Some((10, 5)), Some((5, 5))]
    );
}

#[test]
fn fused_chain() {
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        source numbers = IterSource::new(1..=10u32);
        stage odd = filter(|x: &u32| x % 2 == 1);
        stage tenfold = map(|x: u32| x * 10);
        sink out = sink;
        numbers -> odd -> tenfold -> out;
    };
    assert_eq!(app.graph().segments.len(), 1, "one thread");
    let report = app.run().expect("runs");
    assert_eq!(got.take(), [10, 30, 50, 70, 90]);
    assert_eq!(report.events_out, 5);
    let m = &report.metrics;
    assert_eq!(
        m.node("odd").map(|n| (n.events_in, n.events_out)),
        Some((10, 5))
    );
    assert_eq!(
        m.node("tenfold").map(|n| (n.events_in, n.events_out)),
        Some((5, 5))
    );
    assert_eq!(m.node("numbers").map(|n| n.events_out), Some(10));
}

#[test]
fn thread_boundary_with_settings() {
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        config { queue_capacity: 64, batch_size: 8, backpressure: Block }
        source feed: Trade = IterSource::new(trades(1000));
        stage big = filter(|t: &Trade| t.volume > 100);
        stage value: (u32, u64) = map(|t: Trade| (t.symbol, t.ts));
        sink out: (u32, u64) = sink;
        feed -> big =>[capacity = 16, batch_size = 4] value -> out;
    };
    let config = app.config().expect("config built");
    assert_eq!((config.queue_capacity(), config.batch_size()), (64, 8));
    assert_eq!(app.graph().segments.len(), 2);
    let report = app.run().expect("runs");
    let expected: Vec<(u32, u64)> = trades(1000)
        .into_iter()
        .filter(|t| t.volume > 100)
        .map(|t| (t.symbol, t.ts))
        .collect();
    assert_eq!(got.take(), expected);
    let q = report
        .metrics
        .queue("value")
        .expect("queue named after its consumer");
    assert_eq!(q.capacity_events, 16);
    assert_eq!(
        (q.pushed, q.delivered),
        (expected.len() as u64, expected.len() as u64)
    );
}

#[test]
fn fan_out_fused_and_across_threads() {
    let (all, big, tail) = (CollectSink::new(), CollectSink::new(), CollectSink::new());
    let (all_h, big_h, tail_h) = (all.handle(), big.handle(), tail.handle());
    let app = pipeline! {
        source numbers = IterSource::new(0..100u64);
        stage double = map(|x: u64| x * 2);
        stage large = filter(|x: &u64| *x >= 180);
        stage plus_one = map(|x: u64| x + 1);
        sink all = all;
        sink big = big;
        sink tail = tail;
        numbers -> double;
        double -> all;
        double -> large -> big;
        double => plus_one -> tail;
    };
    let report = app.run().expect("runs");
    assert_eq!(all_h.take(), (0..100).map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(big_h.take(), (90..100).map(|x| x * 2).collect::<Vec<_>>());
    assert_eq!(
        tail_h.take(),
        (0..100).map(|x| x * 2 + 1).collect::<Vec<_>>()
    );
    assert_eq!(report.events_out, 210);
}

#[test]
fn fan_in_from_two_sources() {
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        source low = IterSource::new(0..500u32);
        source high = IterSource::new(1000..1300u32);
        stage merged = inspect(|_: &u32| {});
        sink out = sink;
        low => merged;
        high => merged;
        merged -> out;
    };
    app.run().expect("runs");
    let got = got.take();
    let low: Vec<u32> = got.iter().copied().filter(|x| *x < 1000).collect();
    let high: Vec<u32> = got.iter().copied().filter(|x| *x >= 1000).collect();
    assert_eq!(
        low,
        (0..500).collect::<Vec<_>>(),
        "each source's order is kept"
    );
    assert_eq!(high, (1000..1300).collect::<Vec<_>>());
}

#[test]
fn several_sources_and_sinks_in_one_block() {
    let (a, b) = (CollectSink::new(), CollectSink::new());
    let (ha, hb) = (a.handle(), b.handle());
    let app = pipeline! {
        source s1 = IterSource::new(["a", "b"]);
        source s2 = IterSource::new([1u8, 2, 3]);
        sink letters = a;
        sink numbers = b;
        s1 -> letters;
        s2 => numbers;
    };
    app.run().expect("runs");
    assert_eq!(ha.take(), ["a", "b"]);
    assert_eq!(hb.take(), [1, 2, 3]);
}

#[test]
fn keyed_workers_preserve_per_key_order() {
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        config { batch_size: 16, queue_capacity: 256 }
        source feed = IterSource::new(trades(10_000));
        stage tag = map(|t: Trade| (t.symbol, t.ts, std::thread::current().name().map(String::from)));
        sink out = sink;
        feed =>[workers = 3, key = |t: &Trade| t.symbol] tag => out;
    };
    let graph = app.graph().clone();
    assert_eq!(
        graph.segments.iter().map(|s| s.workers).collect::<Vec<_>>(),
        [1, 3, 1]
    );
    let report = app.run().expect("runs");
    let got = got.take();
    assert_eq!(got.len(), 10_000);
    let mut per_key: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut worker_of: BTreeMap<u32, String> = BTreeMap::new();
    for (symbol, ts, thread) in got {
        per_key.entry(symbol).or_default().push(ts);
        let thread = thread.expect("worker threads are named");
        assert!(thread.starts_with("tag#"), "{thread}");
        assert_eq!(
            worker_of.entry(symbol).or_insert_with(|| thread.clone()),
            &thread,
            "a key stays on one worker"
        );
    }
    for (symbol, ts) in per_key {
        let expected: Vec<u64> = (0..10_000).filter(|t| t % 5 == u64::from(symbol)).collect();
        assert_eq!(ts, expected, "per-key order of symbol {symbol}");
    }
    let tag = report
        .metrics
        .node("tag")
        .expect("workers merge under the node name");
    assert_eq!(tag.events_in, 10_000);
}

#[test]
fn lossy_edge_conserves_events() {
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        config { batch_size: 2, queue_capacity: 4 }
        source feed = IterSource::new(0..20_000u32);
        stage slow = map(|x: u32| { for _ in 0..300 { std::hint::spin_loop(); } x });
        sink out = sink;
        feed =>[backpressure = DropNewest] slow -> out;
    };
    let report = app.run().expect("runs");
    let got = got.take();
    assert_eq!(report.events_in, 20_000);
    assert_eq!(report.events_out as usize, got.len());
    assert_eq!(report.events_out + report.dropped, 20_000);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn spawn_and_stop_a_macro_pipeline() {
    let config = PipelineConfig::default();
    let (channel, handle) = ChannelSource::<u32>::with_config(&config);
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        config { stop_timeout_ms: 2000 }
        source input = channel;
        stage inc = map(|x: u32| x + 1);
        sink out = sink;
        input -> inc => out;
    };
    let running = app.spawn().expect("starts");
    for x in 0..5 {
        let _ = handle.send(x).expect("running");
    }
    drop(handle);
    let report = running.join().expect("ends when the channel closes");
    assert_eq!(got.take(), [1, 2, 3, 4, 5]);
    assert_eq!(report.events_out, 5);
}

#[test]
fn graph_shows_segments_and_queue_settings() {
    let app = pipeline! {
        source s = IterSource::new(0..1u8);
        stage a = map(|x: u8| x);
        stage b = map(|x: u8| x);
        sink k = CollectSink::new();
        s -> a =>[capacity = 2048, backpressure = DropOldest] b -> k;
    };
    let mermaid = app.graph().to_mermaid();
    assert_eq!(
        mermaid,
        "flowchart LR\n  subgraph seg0[\"thread 0: s\"]\n    s[/\"s\"/]\n    a[\"a\"]\n  end\n  \
         subgraph seg1[\"thread 1: b\"]\n    b[\"b\"]\n    k[\\\"k\"\\]\n  end\n  s --> a\n  \
         a ==>|\"capacity = 2048, batch_size = 1024, backpressure = DropOldest\"| b\n  b --> k\n"
    );
    let dot = app.graph().to_dot();
    assert!(dot.contains("subgraph cluster_1"));
    assert!(dot.contains(
        "\"a\" -> \"b\" [style=bold, label=\"capacity = 2048, batch_size = 1024, backpressure = DropOldest\"];"
    ));
    app.run().expect("runs");
}

#[test]
fn stage_metrics_can_be_turned_off() {
    let app = pipeline! {
        config { stage_metrics: false }
        source s = IterSource::new(0..10u8);
        stage a = map(|x: u8| x);
        sink k = CollectSink::new();
        s -> a -> k;
    };
    let report = app.run().expect("runs");
    assert!(report.metrics.node("a").is_none());
    assert_eq!(report.metrics.node("k").map(|n| n.events_in), Some(10));
}

#[test]
fn node_expressions_may_use_the_question_mark() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("out.jsonl");
    let app = pipeline! {
        source s = IterSource::new(0..3u32);
        sink file = JsonLinesSink::<u32>::create(&path)?;
        s -> file;
    };
    app.run()?;
    assert_eq!(std::fs::read_to_string(&path)?, "0\n1\n2\n");
    Ok(())
}

/// A sink inside a keyed segment is opt-in per worker: each worker writes its own file, and
/// together they hold every event exactly once, each key in exactly one file.
#[test]
fn per_worker_sinks_write_one_file_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let app = pipeline! {
        config { batch_size: 16, queue_capacity: 256 }
        source feed = IterSource::new(trades(5_000));
        stage tag = map(|t: Trade| (t.symbol, t.ts));
        sink out = per_worker(move |w| JsonLinesSink::create(path.join(format!("part-{w}.jsonl"))));
        feed =>[workers = 3, key = |t: &Trade| t.symbol] tag -> out;
    };
    let report = app.run().expect("runs");
    let mut all = Vec::new();
    let mut file_of: BTreeMap<u32, usize> = BTreeMap::new();
    for w in 0..3 {
        let text = std::fs::read_to_string(dir.path().join(format!("part-{w}.jsonl")))
            .expect("every worker's file exists");
        for line in text.lines() {
            let (symbol, ts): (u32, u64) = serde_json::from_str(line).expect("whole JSON lines");
            assert_eq!(
                *file_of.entry(symbol).or_insert(w),
                w,
                "key {symbol} in two files"
            );
            all.push(ts);
        }
    }
    all.sort_unstable();
    assert_eq!(all, (0..5_000).collect::<Vec<u64>>());
    assert_eq!(report.metrics.node("out").map(|n| n.events_in), Some(5_000));
}

/// A per-worker factory that fails is a construction error naming the sink and the worker.
#[test]
fn per_worker_factory_error_names_the_worker() {
    let app = pipeline! {
        source feed = IterSource::new(trades(10));
        stage tag = map(|t: Trade| t.ts);
        sink out = per_worker(|w| if w == 1 {
            Err(SinkError::Other("no disk for worker 1".into()))
        } else {
            Ok(CollectSink::new())
        });
        feed =>[workers = 2, key = |t: &Trade| t.symbol] tag -> out;
    };
    let err = app.run().expect_err("worker 1 has no sink");
    assert_eq!(err.to_string(), "sink `out#1` failed: no disk for worker 1");
}
