//! Event time in real pipelines: a window follows its input's watermarks when there are any
//! (so a lagging input at a fan-in holds it back instead of making others late); late events
//! are counted on the window's node; the late output ends with the windows feeding it.

use std::thread;

use eventflux::metrics::DropReason;
use eventflux::prelude::*;

mod common;
use common::{BOUND, within};

/// Readings out of order by up to 2 000 (a deterministic shuffle within blocks of 2 000).
fn disordered(n: u64) -> Vec<(u64, u32)> {
    (0..n)
        .map(|i| {
            let block = i / 2000 * 2000;
            let off = (i % 2000) * 7919 % 2000;
            (block + off, 1)
        })
        .collect()
}

/// `watermarks(ts, 2000)` upstream and a window without `.out_of_orderness(..)`: the window
/// follows the upstream watermarks, so nothing is late (before: 6 % of readings were).
#[test]
fn a_window_follows_upstream_watermarks() {
    let readings = disordered(100_000);
    let (late_tx, late_rx) = late_output::<(u64, u32)>();
    let rows = CollectSink::new();
    let got = rows.handle();
    let report = within(BOUND, move || {
        let app = pipeline! {
            source src   = IterSource::new(readings);
            source late  = late_rx;
            stage  marks = watermarks(|r: &(u64, u32)| r.0, 2000);
            stage  win   = tumbling(1000, |r: &(u64, u32)| r.0).late_to(late_tx).aggregate(count());
            sink   out   = rows;
            sink   dead  = CollectSink::new();
            src -> marks => win -> out;
            late -> dead;
        };
        app.run().expect("runs")
    });
    let rows = got.take();
    assert_eq!(rows.len(), 100, "one row per 1000-wide window");
    assert!(rows.iter().all(|r| r.values == 1000), "{:?}", &rows[..3]);
    let win = report.metrics.node("win").expect("metered");
    assert!(
        win.dropped.iter().all(|(_, n)| *n == 0),
        "{:?}",
        win.dropped
    );
}

/// Two sources into one window through `=>`; one lags far behind. The window follows the
/// minimum watermark, so the lagging source's events are not late.
#[test]
fn a_lagging_input_at_a_fan_in_holds_the_window_back() {
    let rows = CollectSink::new();
    let got = rows.handle();
    let report = within(BOUND, move || {
        let app = pipeline! {
            config { batch_size: 64 }
            source fast  = IterSource::new((0..20_000u64).map(|t| (t, 0u32)));
            source slow  = IterSource::new((0..20_000u64).map(|t| (t, 1u32)));
            stage  mf    = watermarks(|r: &(u64, u32)| r.0, 0);
            stage  ms    = map(|r: (u64, u32)| r).then(inspect(|_: &(u64, u32)| thread::yield_now()));
            stage  mw    = watermarks(|r: &(u64, u32)| r.0, 0);
            stage  win   = tumbling(1000, |r: &(u64, u32)| r.0).group_by(|r: &(u64, u32)| r.1).aggregate(count());
            sink   out   = rows;
            fast -> mf => win -> out;
            slow -> ms -> mw => win;
        };
        app.run().expect("runs")
    });
    let rows = got.take();
    assert_eq!(rows.len(), 40, "20 windows × 2 sources");
    assert!(
        rows.iter().all(|r| r.values == 1000),
        "late events were dropped"
    );
    let win = report.metrics.node("win").expect("metered");
    assert!(
        win.dropped.iter().all(|(_, n)| *n == 0),
        "{:?}",
        win.dropped
    );
}

/// Late events are counted on the window's node (reason `late`), and the late output's source
/// does not add them to the report's `events_in`.
#[test]
fn late_events_are_counted_on_the_window_node() {
    // Timestamps 0..1000, then 5 stragglers from the first window after it closed.
    let input: Vec<(u64, u32)> = (0..1000u64)
        .map(|t| (t, 0))
        .chain((0..5).map(|t| (t, 0)))
        .collect();
    let (late_tx, late_rx) = late_output::<(u64, u32)>();
    let dead = CollectSink::new();
    let late_seen = dead.handle();
    let report = within(BOUND, move || {
        let app = pipeline! {
            config { batch_size: 100 }
            source src   = IterSource::new(input);
            source late  = late_rx;
            stage  marks = watermarks(|r: &(u64, u32)| r.0, 0);
            stage  win   = tumbling(100, |r: &(u64, u32)| r.0).late_to(late_tx).aggregate(count());
            sink   out   = CollectSink::new();
            sink   dead  = dead;
            src -> marks => win -> out;
            late -> dead;
        };
        app.run().expect("runs")
    });
    assert_eq!(late_seen.take().len(), 5);
    let win = report.metrics.node("win").expect("metered");
    assert_eq!(win.dropped, [(DropReason::Late, 5)]);
    assert_eq!(
        report.events_in, 1005,
        "the late source does not count as input"
    );
}

/// In a keyed segment each worker needs its own clone of the late handle; the user's original
/// is still alive when `run()` is called, and `run()` still returns.
#[test]
fn the_late_output_ends_with_its_windows_whatever_the_user_holds() {
    let (late_tx, late_rx) = late_output::<(u64, u32)>();
    let keep = late_tx.clone();
    let report = within(BOUND, move || {
        let app = pipeline! {
            source src   = IterSource::new((0..10_000u64).map(|t| (t, (t % 4) as u32)));
            source late  = late_rx;
            stage  marks = watermarks(|r: &(u64, u32)| r.0, 0);
            stage  win   = tumbling(100, |r: &(u64, u32)| r.0)
                               .late_to(late_tx.clone())
                               .group_by(|r: &(u64, u32)| r.1)
                               .aggregate(count());
            sink   out   = CollectSink::new();
            sink   dead  = CollectSink::new();
            src -> marks =>[workers = 2, key = |r: &(u64, u32)| r.1] win => out;
            late -> dead;
        };
        let report = app.run().expect("runs");
        drop((late_tx, keep));
        report
    });
    assert_eq!(report.events_out, 400, "100 windows × 4 keys");
}

/// Re-pointing a window's late output ends the first one instead of leaving it open: `run()`
/// returns, and the late events go to the second output.
#[test]
fn re_pointing_the_late_output_does_not_hang() {
    let (first_tx, first_rx) = late_output::<(u64, u32)>();
    let (late_tx, late_rx) = late_output::<(u64, u32)>();
    let dead = CollectSink::new();
    let late_seen = dead.handle();
    let report = within(BOUND, move || {
        let app = pipeline! {
            config { batch_size: 16 }
            source src   = IterSource::new((0..300u64).map(|t| (t, 0u32)).chain([(0, 0)]));
            source first = first_rx;
            source late  = late_rx;
            stage  marks = watermarks(|r: &(u64, u32)| r.0, 0);
            stage  win   = tumbling(100, |r: &(u64, u32)| r.0)
                               .late_to(first_tx)
                               .late_to(late_tx)
                               .aggregate(count());
            sink   out   = CollectSink::new();
            sink   old   = CollectSink::new();
            sink   dead  = dead;
            src -> marks => win -> out;
            first -> old;
            late -> dead;
        };
        app.run().expect("runs")
    });
    assert_eq!(late_seen.take(), [(0, 0)]);
    assert_eq!(report.metrics.node("old").map(|n| n.events_in), Some(0));
}

/// The one firing rule at its boundary: `[start, end)` fires when `W ≥ end − 1 +
/// allowed_lateness`, not one tick earlier; an event is late exactly when all its windows fired.
#[test]
fn windows_fire_exactly_at_the_documented_watermark() {
    for lateness in [0u64, 5] {
        let mut w = tumbling(1000, |t: &u64| *t)
            .allowed_lateness(lateness)
            .aggregate(count());
        assert!(w.event_time(true), "follows the input's watermarks");
        let mut out = Vec::new();
        w.process(10, &mut out);
        w.on_watermark(Watermark(998 + lateness), &mut out);
        assert!(
            out.is_empty(),
            "W = end − 2 + lateness: [0, 1000) still open"
        );
        w.process(999, &mut out); // not late: its window is open
        w.on_watermark(Watermark(999 + lateness), &mut out);
        let rows: Vec<_> = out.iter().map(|r| (r.window.start, r.values)).collect();
        assert_eq!(rows, [(0, 2)], "fires at W = end − 1 + lateness");
        w.process(999, &mut out); // late now: its only window fired
        assert_eq!(w.late_events(), 1);
        assert_eq!(out.len(), 1);
    }

    // A session's end is its last event + gap: events at 100 and 140 with gap 50 end at 190.
    let mut s = session(50, |t: &(u64, u8)| t.0, |t: &(u64, u8)| t.1).aggregate(count());
    assert!(s.event_time(true));
    let mut out = Vec::new();
    s.process((100, 0), &mut out);
    s.process((140, 0), &mut out);
    s.on_watermark(Watermark(188), &mut out);
    assert!(out.is_empty(), "W = 188 < 190 − 1");
    s.on_watermark(Watermark(189), &mut out);
    assert_eq!(out.len(), 1, "fires at W = end − 1 = 189");
    assert_eq!((out[0].window.start, out[0].window.end), (100, 190));
    assert_eq!(out[0].values, 2);
}
