//! Exact outputs of every window kind at its boundaries, state that returns to zero, and
//! event time flowing through real pipelines (watermarks across `=>`, late side output).

use std::time::Duration;

use eventflux::prelude::*;
use eventflux::window::Bounds;

fn b(start: u64, end: u64) -> Bounds {
    Bounds { start, end }
}

fn rows<K: Clone, V: Clone, B: Copy>(out: &[Row<K, V, B>]) -> Vec<(K, B, V)> {
    out.iter()
        .map(|r| (r.key.clone(), r.window, r.values.clone()))
        .collect()
}

#[test]
fn tumbling_first_event_gaps_and_flush_at_end() {
    let mut w = tumbling(10, |e: &(u64, u8)| e.0)
        .group_by(|e: &(u64, u8)| e.1)
        .aggregate((count(), sum(|e: &(u64, u8)| e.0)));
    let mut out = Vec::new();
    w.process((0, 7), &mut out); // the very first event, at the window's start
    assert!(out.is_empty());
    w.process((9, 7), &mut out); // the window's last instant
    w.process((55, 3), &mut out); // a gap of several windows: [10, 50) never had events
    assert_eq!(
        rows(&out),
        [(7, b(0, 10), (2, 9))],
        "empty windows emit nothing"
    );
    w.process((57, 7), &mut out);
    w.process((57, 3), &mut out); // equal timestamps
    assert_eq!(w.open_windows(), 1);
    w.on_end(&mut out); // end of stream flushes the open window
    assert_eq!(
        rows(&out),
        [
            (7, b(0, 10), (2, 9)),
            (3, b(50, 60), (2, 112)),
            (7, b(50, 60), (1, 57))
        ]
    );
    assert_eq!(
        (w.open_windows(), w.groups()),
        (0, 0),
        "state returns to zero"
    );
}

#[test]
fn tumbling_late_events_are_counted_and_sent_to_the_late_output() {
    let (late_tx, mut late_src) = late_output::<(u64, u8)>();
    let mut w = tumbling(10, |e: &(u64, u8)| e.0)
        .out_of_orderness(2)
        .late_to(late_tx)
        .aggregate(count());
    let late = w.late_counter();
    let mut out = Vec::new();
    for e in [(5, 0), (11, 0), (8, 0), (13, 0), (9, 0), (30, 0)] {
        w.process(e, &mut out);
    }
    // (8) is within the 2-tick disorder (watermark 8 after ts 11); after ts 13 the watermark is
    // 10 ≥ 9, so [0, 10) fired and (9) is late.
    assert_eq!(rows(&out), [((), b(0, 10), 2), ((), b(10, 20), 2)]);
    assert_eq!(late.load(std::sync::atomic::Ordering::Relaxed), 1);
    let letters = eventflux::io::DeadLetters::collect();
    let mut cx = SourceContext::new(10, &letters);
    let mut got = Vec::new();
    let _ = late_src.poll(&mut cx, &mut got).expect("polls");
    assert_eq!(got, [(9, 0)]);
}

#[test]
fn allowed_lateness_keeps_windows_open() {
    let mut w = tumbling(10, |t: &u64| *t)
        .allowed_lateness(5)
        .aggregate(count());
    let mut out = Vec::new();
    for t in [1, 12, 5, 16, 6] {
        w.process(t, &mut out);
    }
    // Watermark 15 after ts 16: [0, 10) fires at 9 + 5 = 14, so (6) arrived late.
    assert_eq!(rows(&out), [((), b(0, 10), 2)]);
    assert_eq!(
        w.late_counter().load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn sessions_merge_and_interleave_keys() {
    let mut w = session(6, |e: &(u64, char)| e.0, |e: &(u64, char)| e.1)
        .out_of_orderness(20)
        .aggregate((
            count(),
            min(|e: &(u64, char)| e.0),
            max(|e: &(u64, char)| e.0),
        ));
    let mut out = Vec::new();
    // Two keys interleaved; `a` has two sessions (1 and 10, 9 apart) that the late-arriving 5
    // bridges (4 and 5 apart, both under the gap of 6).
    for e in [(1, 'a'), (2, 'b'), (10, 'a'), (4, 'b'), (5, 'a'), (40, 'b')] {
        w.process(e, &mut out);
    }
    // Watermark 19 after ts 40: a:[1, 16) and b:[2, 10) have fired, b:[40, 46) is open.
    assert_eq!(w.open_sessions(), 1);
    assert_eq!(out.len(), 2);
    w.on_end(&mut out);
    assert_eq!(
        rows(&out),
        [
            ('a', b(1, 16), (3, 1, 10)),
            ('b', b(2, 10), (2, 2, 4)),
            ('b', b(40, 46), (1, 40, 40)),
        ]
    );
    assert_eq!(w.open_sessions(), 0);
}

#[test]
fn sliding_length_retracts_min_and_max_exactly() {
    let mut w = length(3).aggregate((min(|x: &i32| *x), max(|x: &i32| *x), avg(|x: &i32| *x)));
    let mut out = Vec::new();
    for x in [5, 1, 9, 2, 8, 8, 3] {
        w.process(x, &mut out);
    }
    let got: Vec<_> = out.iter().map(|r| (r.values.0, r.values.1)).collect();
    let want: Vec<_> = [
        [5].as_slice(),
        &[5, 1],
        &[5, 1, 9],
        &[1, 9, 2],
        &[9, 2, 8],
        &[2, 8, 8],
        &[8, 8, 3],
    ]
    .iter()
    .map(|w| {
        let (lo, hi) = (w.iter().copied().min(), w.iter().copied().max());
        (lo.unwrap_or(i32::MAX), hi.unwrap_or(i32::MIN))
    })
    .collect();
    assert_eq!(got, want);
    assert_eq!(out[6].values.2, 19.0 / 3.0);
}

#[test]
fn grouped_length_window_frees_groups_that_leave() {
    let mut w = length(2).group_by(|e: &(char, u32)| e.0).aggregate(count());
    let mut out = Vec::new();
    for e in [('a', 1), ('b', 2), ('c', 3)] {
        w.process(e, &mut out);
    }
    assert_eq!(rows(&out), [('a', (), 1), ('b', (), 1), ('c', (), 1)]);
    assert_eq!(
        w.groups(),
        2,
        "`a` left the window and its state was released"
    );
}

#[test]
fn time_windows_use_the_manual_clock() {
    let clock = ManualClock::new(0);
    let mut w = time(Duration::from_nanos(100))
        .clock(clock.clone())
        .aggregate(count());
    let mut out = Vec::new();
    w.process(1, &mut out);
    clock.set(99);
    w.process(2, &mut out);
    clock.set(100);
    w.process(3, &mut out); // the event stamped 0 expires exactly at 0 + 100
    clock.set(1_000);
    w.process(4, &mut out); // everything else expired
    assert_eq!(
        out.iter().map(|r| r.values).collect::<Vec<_>>(),
        [1, 2, 2, 1]
    );
    assert_eq!(w.groups(), 1);

    let mut tb = time_batch(Duration::from_nanos(10))
        .clock(clock.clone())
        .aggregate(count());
    clock.set(0);
    let mut out = Vec::new();
    tb.process(1, &mut out);
    clock.set(10);
    tb.on_batch_end(&mut out); // the clock passed the end: the window closes without an arrival
    assert_eq!(rows(&out), [((), b(0, 10), 1)]);
    tb.on_end(&mut out);
    assert_eq!(out.len(), 1, "no open window left to flush");
}

#[test]
fn having_filters_rows() {
    let mut w = length_batch(4)
        .group_by(|x: &u32| x % 2)
        .aggregate(sum(|x: &u32| *x))
        .having(|r: &Row<u32, i128>| r.values > 5);
    let mut out = Vec::new();
    for x in [1, 2, 3, 4] {
        w.process(x, &mut out);
    }
    assert_eq!(rows(&out), [(0, b(0, 4), 6)]);
}

#[test]
fn windows_without_aggregates_pass_events() {
    let mut w = length(2).with_expired();
    let mut out = Vec::new();
    for x in [1, 2, 3] {
        w.process(x, &mut out);
    }
    assert_eq!(
        out,
        [
            WindowEvent::Current(1),
            WindowEvent::Current(2),
            WindowEvent::Expired(1),
            WindowEvent::Current(3)
        ]
    );
    let mut lb = length_batch(2);
    let mut out = Vec::new();
    for x in [1, 2, 3] {
        lb.process(x, &mut out);
    }
    assert_eq!(out, [1, 2]);
    lb.on_end(&mut out);
    assert_eq!(out, [1, 2, 3]);
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Tick {
    ts: u64,
    symbol: u32,
    price: f64,
}

/// Watermarks generated after the sources flow across `=>`, merge (minimum over producers) at
/// the fan-in, and close windows downstream: every window of both streams is emitted once.
#[test]
fn event_time_through_a_fan_in() {
    let fast: Vec<Tick> = (0..100)
        .map(|i| Tick {
            ts: i * 10,
            symbol: 1,
            price: 1.0,
        })
        .collect();
    let slow: Vec<Tick> = (0..50)
        .map(|i| Tick {
            ts: i * 10,
            symbol: 2,
            price: 2.0,
        })
        .collect();
    let rows_sink = CollectSink::new();
    let rows_h = rows_sink.handle();
    let app = pipeline! {
        config { batch_size: 16, queue_capacity: 64 }
        source a = IterSource::new(fast);
        source b = IterSource::new(slow);
        stage wa = watermarks(|t: &Tick| t.ts, 0);
        stage wb = watermarks(|t: &Tick| t.ts, 0);
        stage win = tumbling(100, |t: &Tick| t.ts)
            .out_of_orderness(1_000_000)  // only in-band watermarks (and the end) close windows
            .group_by(|t: &Tick| t.symbol)
            .aggregate((count(), sum(|t: &Tick| t.price)));
        sink out = rows_sink;
        a -> wa => win;
        b -> wb => win;
        win -> out;
    };
    app.run().expect("runs");
    let mut got: Vec<(u32, u64, u64, f64)> = rows_h
        .take()
        .into_iter()
        .map(|r| (r.key, r.window.start, r.values.0, r.values.1))
        .collect();
    got.sort_by_key(|x| (x.0, x.1));
    let mut want: Vec<(u32, u64, u64, f64)> = (0..10).map(|w| (1, w * 100, 10, 10.0)).collect();
    want.extend((0..5).map(|w| (2, w * 100, 10, 20.0)));
    assert_eq!(got, want);
}

/// An event behind the in-band watermark goes to the late side output, a source node of its own.
#[test]
fn late_events_reach_the_late_sink() {
    let mut ticks: Vec<Tick> = (0..50)
        .map(|i| Tick {
            ts: i * 10,
            symbol: 2,
            price: 2.0,
        })
        .collect();
    ticks.push(Tick {
        ts: 5,
        symbol: 2,
        price: 99.0,
    }); // its window [0, 100) closed long ago
    let (late_tx, late_src) = late_output::<Tick>();
    let rows_sink = CollectSink::new();
    let late_sink = CollectSink::new();
    let (rows_h, late_h) = (rows_sink.handle(), late_sink.handle());
    let app = pipeline! {
        config { batch_size: 16, queue_capacity: 64 }
        source ticks = IterSource::new(ticks);
        source late = late_src;
        stage marks = watermarks(|t: &Tick| t.ts, 0);
        stage win = tumbling(100, |t: &Tick| t.ts)
            .out_of_orderness(1_000_000)
            .late_to(late_tx)
            .aggregate(count());
        sink out = rows_sink;
        sink late_out = late_sink;
        ticks -> marks => win -> out;
        late -> late_out;
    };
    let report = app.run().expect("runs");
    assert_eq!(
        rows_h.take().iter().map(|r| r.values).collect::<Vec<_>>(),
        [10; 5]
    );
    assert_eq!(
        late_h.take(),
        [Tick {
            ts: 5,
            symbol: 2,
            price: 99.0
        }]
    );
    assert_eq!(report.metrics.node("late").map(|n| n.events_out), Some(1));
}

/// Counts the watermarks that reach it (and remembers the last).
struct WmProbe(std::sync::Arc<std::sync::Mutex<Vec<u64>>>);

impl<T> Stage<T> for WmProbe {
    type Out = T;
    fn process<E: Emit<T>>(&mut self, item: T, out: &mut E) {
        out.emit(item);
    }
    fn on_watermark<E: Emit<T>>(&mut self, w: Watermark, _: &mut E) {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(w.0);
        }
    }
}

/// Watermarks are broadcast to every keyed worker and merged (minimum over the workers) after
/// them: the stage after the merge sees an increasing sequence of watermarks, and every window
/// in the workers is emitted exactly once.
#[test]
fn watermarks_cross_keyed_workers() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let ticks: Vec<Tick> = (0..4_000u64)
        .map(|i| Tick {
            ts: i,
            symbol: (i % 8) as u32,
            price: 1.0,
        })
        .collect();
    let sink = CollectSink::new();
    let got = sink.handle();
    let app = pipeline! {
        config { batch_size: 64, queue_capacity: 256 }
        source ticks = IterSource::new(ticks);
        stage marks = watermarks(|t: &Tick| t.ts, 0);
        stage per_worker = tumbling(1_000, |t: &Tick| t.ts)
            .out_of_orderness(1_000_000)
            .group_by(|t: &Tick| t.symbol)
            .aggregate(count());
        stage probe = WmProbe(std::sync::Arc::clone(&seen));
        sink out = sink;
        ticks -> marks =>[workers = 3, key = |t: &Tick| t.symbol] per_worker => probe -> out;
    };
    app.run().expect("runs");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        !seen.is_empty(),
        "watermarks crossed the workers and the merge"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(
        seen.last(),
        Some(&3_998),
        "the final watermark: max ts 3999 − 1"
    );
    let mut rows: Vec<(u32, u64, u64)> = got
        .take()
        .into_iter()
        .map(|r| (r.key, r.window.start, r.values))
        .collect();
    rows.sort_unstable();
    let want: Vec<(u32, u64, u64)> = (0..8)
        .flat_map(|s| (0..4).map(move |w| (s, w * 1_000, 125)))
        .collect();
    assert_eq!(rows, want);
}

/// `.select` turns rows into the caller's type on every kind of window, inside `pipeline!`
/// (types inferred), with the bounds and values of the row it replaces.
#[test]
fn select_makes_the_callers_rows_on_every_window_kind() {
    #[derive(Debug, PartialEq)]
    struct Span {
        key: u8,
        start: u64,
        end: u64,
        n: u64,
        lo: i32,
    }
    let evs: Vec<(u64, u8, i32)> = vec![(1, 0, 5), (2, 1, 7), (4, 0, -3), (12, 0, 9), (30, 1, 1)];
    let (hop, sess, batch) = (CollectSink::new(), CollectSink::new(), CollectSink::new());
    let (hop_h, sess_h, batch_h) = (hop.handle(), sess.handle(), batch.handle());
    let app = pipeline! {
        source feed = IterSource::new(evs);
        stage hopping = sliding(10, 5, |e: &(u64, u8, i32)| e.0)
            .group_by(|e: &(u64, u8, i32)| e.1)
            .aggregate((count(), min(|e: &(u64, u8, i32)| e.2)))
            .select(|key, w, (n, lo)| Span { key, start: w.start, end: w.end, n, lo });
        stage sessions = session(5, |e: &(u64, u8, i32)| e.0, |e: &(u64, u8, i32)| e.1)
            .aggregate((count(), min(|e: &(u64, u8, i32)| e.2)))
            .select(|key, w, (n, lo)| Span { key, start: w.start, end: w.end, n, lo });
        stage batches = length_batch(2)
            .aggregate((count(), min(|e: &(u64, u8, i32)| e.2)))
            .select(|(), w, (n, lo)| Span { key: 0, start: w.start, end: w.end, n, lo });
        sink hop_out = hop;
        sink sess_out = sess;
        sink batch_out = batch;
        feed -> hopping -> hop_out;
        feed -> sessions -> sess_out;
        feed -> batches -> batch_out;
    };
    app.run().expect("runs");
    let span = |key, start, end, n, lo| Span {
        key,
        start,
        end,
        n,
        lo,
    };
    assert_eq!(
        hop_h.take(),
        [
            span(0, 0, 10, 2, -3),
            span(1, 0, 10, 1, 7),
            span(0, 5, 15, 1, 9),
            span(0, 10, 20, 1, 9),
            span(1, 25, 35, 1, 1),
            span(1, 30, 40, 1, 1),
        ]
    );
    assert_eq!(
        sess_h.take(),
        [
            span(0, 1, 9, 2, -3),
            span(1, 2, 7, 1, 7),
            span(0, 12, 17, 1, 9),
            span(1, 30, 35, 1, 1),
        ]
    );
    assert_eq!(
        batch_h.take(),
        [
            span(0, 0, 2, 2, 5),
            span(0, 2, 4, 2, -3),
            span(0, 4, 5, 1, 1)
        ]
    );
}

/// Float sums in a tumbling window: a plain `+=` by default (what a hand loop computes),
/// compensated on request.
#[test]
fn tumbling_sums_are_plain_unless_compensated() {
    let data = [(0u64, 1e16), (1, 1.0), (2, 1.0), (3, -1e16)];
    let run = |compensated: bool| -> Vec<f64> {
        let sink = CollectSink::new();
        let got = sink.handle();
        let app = if compensated {
            pipeline! {
                source feed = IterSource::new(data);
                stage w = tumbling(10, |e: &(u64, f64)| e.0)
                    .aggregate(sum(|e: &(u64, f64)| e.1).compensated())
                    .select(|(), _, s| s);
                sink out = sink;
                feed -> w -> out;
            }
        } else {
            pipeline! {
                source feed = IterSource::new(data);
                stage w = tumbling(10, |e: &(u64, f64)| e.0)
                    .aggregate(sum(|e: &(u64, f64)| e.1))
                    .select(|(), _, s| s);
                sink out = sink;
                feed -> w -> out;
            }
        };
        app.run().expect("runs");
        got.take()
    };
    assert_eq!(run(false), [0.0], "1e16 + 1 rounds back to 1e16, twice");
    assert_eq!(run(true), [2.0]);
}

/// Hashed groups that leave with their window and come back in the next one keep exact,
/// fresh state (their slots are reused, not re-created).
#[test]
fn hashed_groups_returning_in_later_windows_start_fresh() {
    let mut w = tumbling(10, |e: &(u64, String, i32)| e.0)
        .group_by(|e: &(u64, String, i32)| e.1.clone())
        .aggregate((
            count(),
            min(|e: &(u64, String, i32)| e.2),
            last(|e: &(u64, String, i32)| e.2),
        ));
    let mut out = Vec::new();
    for (ts, k, v) in [
        (1, "a", 5),
        (2, "b", 3),
        (3, "a", 2),
        (11, "b", 9),
        (12, "a", 8),
        (25, "a", 1),
    ] {
        w.process((ts, k.to_string(), v), &mut out);
    }
    w.on_end(&mut out);
    let got: Vec<_> = out
        .iter()
        .map(|r| (r.key.as_str(), r.window.start, r.values))
        .collect();
    assert_eq!(
        got,
        [
            ("a", 0, (2, 2, 2)),
            ("b", 0, (1, 3, 3)),
            ("b", 10, (1, 9, 9)),
            ("a", 10, (1, 8, 8)),
            ("a", 20, (1, 1, 1)),
        ]
    );
}

#[test]
fn index_groups_come_in_index_order_and_start_fresh_in_every_window() {
    // Two aggregate shapes: one whose states start empty (count, sum, min, max, avg: kept ready
    // for every index) and one that needs a first event (`first`, `last`): the same rows.
    type E = (u64, usize, f64);
    let events: [E; 9] = [
        (1, 5, 2.0),
        (2, 1, 7.0),
        (3, 5, -1.0),
        (4, 70, 3.0), // an index past the first 64 grows the table while others are active
        (11, 1, 4.0),
        (12, 1, f64::NAN), // ignored by min and max
        (13, 0, 6.0),
        (25, 70, 1.0),
        (26, 5, 8.0),
    ];
    let mut ready = tumbling(10, |e: &E| e.0)
        .group_by_index(|e: &E| e.1)
        .aggregate((
            count(),
            sum(|e: &E| e.2),
            min(|e: &E| e.2),
            max(|e: &E| e.2),
        ));
    let mut started = tumbling(10, |e: &E| e.0)
        .group_by_index(|e: &E| e.1)
        .aggregate((count(), first(|e: &E| e.2), last(|e: &E| e.2)));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for e in events {
        ready.process(e, &mut a);
        started.process(e, &mut b);
    }
    ready.on_end(&mut a);
    started.on_end(&mut b);
    let got: Vec<_> = a
        .iter()
        .map(|r| (r.key, r.window.start, r.values.0, r.values.2, r.values.3))
        .collect();
    assert_eq!(
        got,
        [
            (1, 0, 1, 7.0, 7.0),
            (5, 0, 2, -1.0, 2.0),
            (70, 0, 1, 3.0, 3.0),
            (0, 10, 1, 6.0, 6.0),
            (1, 10, 2, 4.0, 4.0),
            (5, 20, 1, 8.0, 8.0),
            (70, 20, 1, 1.0, 1.0),
        ],
        "by index within each window; states are empty again in later windows"
    );
    assert!(a[4].values.1.is_nan(), "a NaN is summed as it is");
    let keys: Vec<_> = b
        .iter()
        .map(|r| (r.key, r.window.start, r.values.0))
        .collect();
    assert_eq!(
        keys,
        [
            (1, 0, 1),
            (5, 0, 2),
            (70, 0, 1),
            (0, 10, 1),
            (1, 10, 2),
            (5, 20, 1),
            (70, 20, 1)
        ]
    );
    assert_eq!((b[1].values.1, b[1].values.2), (2.0, -1.0));
    assert_eq!((ready.groups(), started.groups()), (0, 0));
}

#[test]
fn an_all_nan_group_gives_the_plain_loops_infinities() {
    let mut w = tumbling(10, |e: &(u64, f64)| e.0)
        .group_by_index(|_: &(u64, f64)| 0)
        .aggregate((min(|e: &(u64, f64)| e.1), max(|e: &(u64, f64)| e.1)));
    let mut hashed = tumbling(10, |e: &(u64, f64)| e.0)
        .group_by(|_: &(u64, f64)| 0)
        .aggregate((min(|e: &(u64, f64)| e.1), max(|e: &(u64, f64)| e.1)));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for e in [(1, f64::NAN), (2, f64::NAN), (11, f64::NAN), (12, 4.0)] {
        w.process(e, &mut a);
        hashed.process(e, &mut b);
    }
    w.on_end(&mut a);
    hashed.on_end(&mut b);
    let want = [(f64::INFINITY, f64::NEG_INFINITY), (4.0, 4.0)];
    assert_eq!(a.iter().map(|r| r.values).collect::<Vec<_>>(), want);
    assert_eq!(b.iter().map(|r| r.values).collect::<Vec<_>>(), want);
}

/// Hashed groups whose aggregates start empty (kept ready, idle keys included) and groups whose
/// aggregates need a first event give the same rows, in order of first appearance within each
/// window, whether events come one at a time or as whole runs (`process_all`), in tumbling and
/// hopping windows alike.
#[test]
fn hashed_groups_come_in_order_of_first_appearance_ready_or_not() {
    type E = (u64, char, i64);
    const EVENTS: [E; 12] = [
        (1, 'b', 4),
        (2, 'a', 7),
        (3, 'b', -1),
        (8, 'c', 3),
        (11, 'a', 5), // [10, 20): a, then c, then b
        (12, 'c', 2),
        (13, 'a', 9),
        (19, 'b', 6),
        (21, 'b', 1), // [20, 30): b and a only
        (22, 'a', 2),
        (40, 'c', 8), // [40, 50): c, back after two windows away
        (41, 'c', -3),
    ];
    type Values = (u64, i128, i64, i64);
    /// (key, start, count, sum, min, max) of every row, in order.
    fn run<W: Stage<E, Out = Row<char, Values>>>(
        mut w: W,
        whole_run: bool,
    ) -> Vec<(char, u64, u64, i128, i64, i64)> {
        let mut out = Vec::new();
        if whole_run {
            w.process_all(EVENTS.into_iter(), &mut out);
        } else {
            for e in EVENTS {
                w.process(e, &mut out);
            }
        }
        w.on_end(&mut out);
        out.iter()
            .map(|r| {
                let (n, s, lo, hi) = r.values;
                (r.key, r.window.start, n, s, lo, hi)
            })
            .collect()
    }
    let spec = || {
        (
            count(),
            sum(|e: &E| e.2),
            min(|e: &E| e.2),
            max(|e: &E| e.2),
        )
    };
    let want = [
        ('b', 0, 2, 3, -1, 4),
        ('a', 0, 1, 7, 7, 7),
        ('c', 0, 1, 3, 3, 3),
        ('a', 10, 2, 14, 5, 9),
        ('c', 10, 1, 2, 2, 2),
        ('b', 10, 1, 6, 6, 6),
        ('b', 20, 1, 1, 1, 1),
        ('a', 20, 1, 2, 2, 2),
        ('c', 40, 2, 5, -3, 8),
    ];
    for whole_run in [false, true] {
        let w = tumbling(10, |e: &E| e.0)
            .group_by(|e: &E| e.1)
            .aggregate(spec());
        assert_eq!(run(w, whole_run), want, "whole run: {whole_run}");
    }
    // The same groups with aggregates that need a first event (not kept ready).
    let mut started = tumbling(10, |e: &E| e.0).group_by(|e: &E| e.1).aggregate((
        count(),
        first(|e: &E| e.2),
        last(|e: &E| e.2),
    ));
    let mut out = Vec::new();
    started.process_all(EVENTS.into_iter(), &mut out);
    started.on_end(&mut out);
    let got: Vec<_> = out
        .iter()
        .map(|r| (r.key, r.window.start, r.values.0))
        .collect();
    let want_keys: Vec<_> = want.iter().map(|w| (w.0, w.1, w.2)).collect();
    assert_eq!(got, want_keys);
    // Hopping windows [10k, 10k + 20): every event is in two windows, each with its own table.
    for whole_run in [false, true] {
        let hop = sliding(20, 10, |e: &E| e.0)
            .group_by(|e: &E| e.1)
            .aggregate(spec());
        let got: Vec<_> = run(hop, whole_run)
            .into_iter()
            .map(|(k, start, n, s, _, _)| (k, start, n, s))
            .collect();
        assert_eq!(
            got,
            [
                ('b', 0, 3, 9),
                ('a', 0, 3, 21),
                ('c', 0, 2, 5),
                ('a', 10, 3, 16),
                ('c', 10, 1, 2),
                ('b', 10, 2, 7),
                ('b', 20, 1, 1),
                ('a', 20, 1, 2),
                ('c', 30, 2, 5),
                ('c', 40, 2, 5),
            ],
            "whole run: {whole_run}"
        );
    }
}

/// A ready hashed table evicts keys idle through a window, when it closes, once they outnumber
/// both 1024 and twice the window's groups: evicted keys (their slots given to new keys) and kept
/// keys both come back with exact, fresh state, and rows come in table order.
#[test]
fn evicted_hashed_groups_come_back_exact() {
    type E = (u64, u32, u64);
    let mut w = tumbling(10, |e: &E| e.0)
        .group_by(|e: &E| e.1)
        .aggregate((count(), sum(|e: &E| e.2)));
    let mut events: Vec<E> = Vec::new();
    // [0, 10): 3000 keys, once each.
    events.extend((0..3000).map(|k| (1, k, 1)));
    // [10, 20): other keys (windows in a row take turns with two tables).
    events.extend((5000..5005).map(|k| (11, k, 2)));
    // [20, 30), in the table of [0, 10): a new key, then 40 of the 3000 keys, twice each. When
    // it closes, the 2960 keys idle through it are evicted.
    events.push((21, 10_000, 9));
    events.extend((2960..3000).flat_map(|k| [(21, k, 3), (22, k, 4)]));
    // [30, 40), in the other table.
    events.push((31, 5001, 6));
    // [40, 50), in the first table again: 2000 new keys take the freed slots (those of keys
    // 0..2000); then evicted keys 0..10 come back, twice each, and must find none of their old
    // slots; then kept keys.
    events.extend((20_000..22_000).map(|k| (41, k, 9)));
    events.extend((0..10).flat_map(|k| [(42, k, 3), (43, k, 4)]));
    events.extend((2960..3000).map(|k| (44, k, 10)));
    events.push((45, 10_000, 5));
    // [50, 60): keys of every kind, in the other table.
    events.extend([(51, 2970, 5), (51, 5001, 6), (52, 7, 7), (53, 2970, 8)]);
    let mut out = Vec::new();
    w.process_all(events.into_iter(), &mut out);
    w.on_end(&mut out);
    let by_window = |start: u64| -> Vec<(u32, u64, i128)> {
        out.iter()
            .filter(|r| r.window.start == start)
            .map(|r| (r.key, r.values.0, r.values.1))
            .collect()
    };
    assert_eq!(
        by_window(0),
        (0..3000).map(|k| (k, 1, 1)).collect::<Vec<_>>()
    );
    assert_eq!(
        by_window(10),
        (5000..5005).map(|k| (k, 1, 2)).collect::<Vec<_>>()
    );
    // Table order: the kept keys' slots, then the new key's.
    let want: Vec<_> = (2960..3000)
        .map(|k| (k, 2, 7))
        .chain([(10_000, 1, 9)])
        .collect();
    assert_eq!(by_window(20), want);
    assert_eq!(by_window(30), [(5001, 1, 6)]);
    // Freed slots are taken lowest first: the new keys hold slots 0..2000, the returning
    // evicted keys the next ones; the kept keys keep theirs.
    let want: Vec<_> = (20_000..22_000)
        .map(|k| (k, 1, 9))
        .chain((0..10).map(|k| (k, 2, 7)))
        .chain((2960..3000).map(|k| (k, 1, 10)))
        .chain([(10_000, 1, 5)])
        .collect();
    assert_eq!(by_window(40), want);
    assert_eq!(by_window(50), [(5001, 1, 6), (2970, 2, 13), (7, 1, 7)]);
    assert_eq!(w.groups(), 0);
}
