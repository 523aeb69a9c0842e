//! Golden equivalence of stage state across checkpoints: a stage that is snapshotted at random
//! points, thrown away and rebuilt from its snapshot gives exactly the output of one that ran
//! uninterrupted — every row, in order, bit for bit (proptest drives the data and the cuts).

use eventflux::prelude::*;
use std::time::Duration;

use eventflux::stage::Named;
use eventflux::state::{self, Compression, Restore, Snapshot};
use eventflux::window::ManualClock;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Checkpoint)]
struct Ev {
    ts: u64,
    group: u8,
    v: i32,
}

fn events(max_len: usize) -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec((0u64..6, 0u8..5, -50i32..50), 0..max_len).prop_map(|raw| {
        // Mostly increasing timestamps with some disorder and some late events.
        let mut ts = 0u64;
        raw.into_iter()
            .enumerate()
            .map(|(i, (step, group, v))| {
                ts += step;
                let t = if i % 7 == 3 { ts.saturating_sub(9) } else { ts };
                Ev { ts: t, group, v }
            })
            .collect()
    })
}

/// Runs `events` through stages made by `make`, in runs cut at `cuts`; at every cut the stage
/// is snapshotted (through the framed bytes a checkpoint file would hold), dropped, and a fresh
/// one restored from it. Returns every output, in order.
fn run_with_restarts<S, F>(make: F, events: &[Ev], cuts: &[usize], restart: bool) -> Vec<String>
where
    S: Stage<Ev>,
    S::Out: std::fmt::Debug,
    F: Fn() -> S,
{
    let mut stage = make();
    let mut out = Vec::new();
    let mut rest = events;
    for &n in cuts {
        let (run, next) = rest.split_at(n.min(rest.len()));
        stage.process_all(run.iter().copied(), &mut out);
        rest = next;
        if restart {
            let mut snap = Snapshot::new();
            stage
                .snapshot(&mut snap)
                .unwrap_or_else(|e| panic!("snapshot: {e}"));
            // Each part goes through a file's framing, as a checkpoint stores it.
            let parts = snap
                .into_parts()
                .into_iter()
                .map(|(id, bytes)| {
                    let file = state::frame(&bytes, Compression::Lz4);
                    let back = state::unframe(&file).unwrap_or_else(|e| panic!("{id}: {e}"));
                    (id, back.into_owned())
                })
                .collect();
            stage = make();
            let mut restore = Restore::new(parts);
            stage
                .restore(&mut restore)
                .unwrap_or_else(|e| panic!("restore: {e}"));
            assert!(restore.unused().is_empty(), "{:?}", restore.unused());
        }
    }
    stage.process_all(rest.iter().copied(), &mut out);
    stage.on_end(&mut out);
    out.iter().map(|r| format!("{r:?}")).collect()
}

macro_rules! all_aggregates {
    () => {
        (
            count(),
            sum(|e: &Ev| e.v),
            avg(|e: &Ev| f64::from(e.v) * 0.1),
            min(|e: &Ev| e.v),
            max(|e: &Ev| f64::from(e.v)),
            variance(|e: &Ev| e.v),
            distinct_count(|e: &Ev| e.v),
            first(|e: &Ev| e.v),
            last(|e: &Ev| e.ts),
        )
    };
}

macro_rules! ready_aggregates {
    () => {
        (
            count(),
            sum(|e: &Ev| f64::from(e.v) * 0.1),
            min(|e: &Ev| e.v),
            max(|e: &Ev| e.v),
            avg(|e: &Ev| e.v),
        )
    };
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(48)
}

proptest! {
    #![proptest_config(config())]

    /// Event-time windows (tumbling and sliding), grouped by key, by index and globally, with
    /// aggregates that keep ready states and ones that do not.
    #[test]
    fn event_time_windows_restore_exactly(
        evs in events(120), size in 1u64..10, slide_div in 1u64..4, ooo in 0u64..5,
        lateness in 0u64..3, cuts in prop::collection::vec(0usize..25, 0..12), grouping in 0u8..3,
        ready: bool,
    ) {
        let slide = (size / slide_div).max(1);
        macro_rules! check {
            ($group:ident ($($key:tt)*), $aggs:ident) => {{
                let make = || Named::new("stats", sliding(size, slide, |e: &Ev| e.ts)
                    .out_of_orderness(ooo)
                    .allowed_lateness(lateness)
                    .$group($($key)*)
                    .aggregate($aggs!()));
                let want = run_with_restarts(make, &evs, &cuts, false);
                let got = run_with_restarts(make, &evs, &cuts, true);
                prop_assert_eq!(got, want);
            }};
        }
        match (grouping, ready) {
            (0, true) => check!(group_by(|e: &Ev| e.group), ready_aggregates),
            (0, false) => check!(group_by(|e: &Ev| e.group), all_aggregates),
            (1, true) => check!(group_by_index(|e: &Ev| usize::from(e.group)), ready_aggregates),
            (1, false) => check!(group_by_index(|e: &Ev| usize::from(e.group)), all_aggregates),
            (_, true) => {
                let make = || sliding(size, slide, |e: &Ev| e.ts)
                    .out_of_orderness(ooo).allowed_lateness(lateness)
                    .aggregate(ready_aggregates!());
                prop_assert_eq!(
                    run_with_restarts(make, &evs, &cuts, true),
                    run_with_restarts(make, &evs, &cuts, false)
                );
            }
            (_, false) => {
                let make = || sliding(size, slide, |e: &Ev| e.ts)
                    .out_of_orderness(ooo).allowed_lateness(lateness)
                    .aggregate(all_aggregates!());
                prop_assert_eq!(
                    run_with_restarts(make, &evs, &cuts, true),
                    run_with_restarts(make, &evs, &cuts, false)
                );
            }
        }
    }

    /// Count, processing-time (on a manual clock set from the events), session, sort and
    /// unique windows, and the watermark generator feeding a window.
    #[test]
    fn every_other_window_restores_exactly(
        evs in events(120), n in 1usize..8, gap in 1u64..6,
        cuts in prop::collection::vec(0usize..25, 0..12),
    ) {
        let clock = ManualClock::new(0);
        let tick = || {
            let c = clock.clone();
            inspect(move |e: &Ev| c.set(e.ts))
        };
        let span = Duration::from_nanos(gap * 2);
        macro_rules! check {
            ($make:expr) => {{
                let make = || Named::new("w", $make);
                prop_assert_eq!(
                    run_with_restarts(make, &evs, &cuts, true),
                    run_with_restarts(make, &evs, &cuts, false)
                );
            }};
        }
        for kind in 0..11 {
            match kind {
                0 => check!(length(n).group_by(|e: &Ev| e.group).aggregate(all_aggregates!())),
                1 => check!(length(n).group_by_index(|e: &Ev| usize::from(e.group)).aggregate(ready_aggregates!())),
                2 => check!(length(n).with_expired()),
                3 => check!(length_batch(n).group_by(|e: &Ev| e.group).aggregate(all_aggregates!())),
                4 => check!(length_batch(n).aggregate(ready_aggregates!())),
                5 => check!(tick().then(time(span).clock(clock.clone()).group_by(|e: &Ev| e.group).aggregate(all_aggregates!()))),
                6 => check!(tick().then(time_batch(span).clock(clock.clone()).group_by(|e: &Ev| e.group).aggregate(ready_aggregates!()))),
                7 => check!(session(gap, |e: &Ev| e.ts, |e: &Ev| e.group).out_of_orderness(2).aggregate(all_aggregates!())),
                8 => check!(sort(n, |e: &Ev| (e.v, e.ts)).with_expired()),
                9 => check!(unique(|e: &Ev| e.group).with_expired()),
                _ => check!(watermarks(|e: &Ev| e.ts, 3).then(
                    tumbling(gap * 2, |e: &Ev| e.ts).group_by(|e: &Ev| e.group).aggregate(ready_aggregates!())
                )),
            }
        }
    }

    /// A chain of stateful stages inside named nodes: each node's state is found by its name.
    #[test]
    fn stateful_chains_restore_exactly(
        evs in events(100), cuts in prop::collection::vec(0usize..20, 0..10),
    ) {
        let make = || {
            Named::new(
                "running",
                stateful((0i64, 0u64), |s: &mut (i64, u64), e: Ev| {
                    s.0 += i64::from(e.v);
                    s.1 += 1;
                    Some((e.group, s.0, s.1))
                }),
            )
            .then(Named::new(
                "per_group_max",
                stateful(std::collections::BTreeMap::<u8, i64>::new(), |m: &mut std::collections::BTreeMap<u8, i64>, (g, sum, n): (u8, i64, u64)| {
                    let best = m.entry(g).or_insert(i64::MIN);
                    *best = (*best).max(sum);
                    Some((g, *best, n))
                }),
            ))
        };
        prop_assert_eq!(
            run_with_restarts(make, &evs, &cuts, true),
            run_with_restarts(make, &evs, &cuts, false)
        );
    }
}

#[test]
fn state_ids_come_from_node_names_and_number_several_states_in_one_node() {
    let counter = || {
        stateful(0u32, |n: &mut u32, _: Ev| {
            *n += 1;
            Some(*n)
        })
    };
    let stage = Named::new("a", counter())
        .then(Named::new(
            "b",
            stateful(0u32, |n: &mut u32, x: u32| {
                *n += x;
                Some(*n)
            })
            .then(stateful(0u32, |n: &mut u32, x: u32| {
                *n = x;
                Some(x)
            })),
        ))
        .then(stateful(0u32, |_: &mut u32, x: u32| Some(x)));
    let mut snap = Snapshot::new();
    stage.snapshot(&mut snap).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = snap.into_parts().into_keys().collect();
    assert_eq!(ids, ["#0", "a", "b", "b/1"]);
}

#[test]
fn a_state_the_checkpoint_lacks_starts_fresh_and_unclaimed_states_are_reported() {
    let mut old = Named::new("old", stateful(5u32, |n: &mut u32, _: Ev| Some(*n)));
    let mut out = Vec::new();
    old.process(
        Ev {
            ts: 0,
            group: 0,
            v: 0,
        },
        &mut out,
    );
    let mut snap = Snapshot::new();
    old.snapshot(&mut snap).unwrap_or_else(|e| panic!("{e}"));
    let mut renamed = Named::new("new", stateful(1u32, |n: &mut u32, _: Ev| Some(*n)));
    let mut restore = Restore::new(snap.into_parts());
    renamed
        .restore(&mut restore)
        .unwrap_or_else(|e| panic!("{e}"));
    renamed.process(
        Ev {
            ts: 0,
            group: 0,
            v: 0,
        },
        &mut out,
    );
    assert_eq!(out, [5, 1], "the renamed node kept its initial state");
    assert_eq!(restore.unused(), ["old"]);
}

#[test]
fn a_state_of_another_type_is_an_error_naming_its_node() {
    let mut a = Named::new("n", stateful(7u8, |n: &mut u8, _: Ev| Some(*n)));
    let mut snap = Snapshot::new();
    a.snapshot(&mut snap).unwrap_or_else(|e| panic!("{e}"));
    let mut b = Named::new(
        "n",
        stateful(String::new(), |s: &mut String, _: Ev| Some(s.len())),
    );
    let err = b.restore(&mut Restore::new(snap.into_parts())).err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.starts_with("state `n`: "), "{text}");
    let _ = &mut a;
}

/// Reads a source to its end in polls of `batch`, recording its position after each poll.
fn read_all<S: Source>(src: &mut S, batch: usize) -> (Vec<S::Item>, Vec<serde_json::Value>) {
    let letters = eventflux::io::DeadLetters::collect();
    let mut cx = SourceContext::new(batch, &letters);
    let (mut out, mut positions) = (Vec::new(), Vec::new());
    loop {
        let poll = src
            .poll(&mut cx, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        positions.push(src.position().unwrap_or_default());
        if poll == SourcePoll::Done {
            return (out, positions);
        }
    }
}

/// Every position a file or iterator source reports resumes exactly after the events emitted
/// before it: what follows is the rest of the stream, nothing skipped or repeated (malformed
/// lines included: they are not emitted again either).
#[test]
fn sources_resume_exactly_after_every_position() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Row {
        id: u32,
        name: String,
    }
    let jsonl = b"{\"id\":1,\"name\":\"a\"}\n\n{\"id\":2,\"name\":\"b\"}\nnot json\n{\"id\":3,\"name\":\"c\"}\r\n{\"id\":4,\"name\":\"d\"}";
    let csv = b"id,name\n1,a\n2,b\nx,bad\n3,c\n4,d\n";
    macro_rules! check {
        ($make:expr) => {{
            let (all, positions) = read_all(&mut $make, 2);
            assert_eq!(all.len(), 4);
            let mut emitted = 0;
            let letters = eventflux::io::DeadLetters::collect();
            let mut cx = SourceContext::new(2, &letters);
            let mut first = $make;
            for pos in &positions {
                // How many events came before this position: read them again from a fresh source.
                let mut upto = Vec::new();
                loop {
                    if first.position().as_ref() == Some(pos) {
                        break;
                    }
                    first
                        .poll(&mut cx, &mut upto)
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                emitted += upto.len();
                let mut resumed = $make;
                resumed
                    .seek(pos)
                    .unwrap_or_else(|e| panic!("seek {pos}: {e}"));
                let (rest, _) = read_all(&mut resumed, 2);
                assert_eq!(rest, all[emitted..], "after {pos}");
            }
        }};
    }
    check!(eventflux::io::JsonLinesSource::<Row>::from_reader(
        "rows.jsonl",
        &jsonl[..]
    ));
    check!(eventflux::io::CsvSource::<Row>::from_reader(
        "rows.csv",
        &csv[..]
    ));
    check!(IterSource::new(vec![1u8, 2, 3, 4]));
    // A position past the end is an error that says so.
    let mut short = IterSource::new(vec![1u8]);
    let err = short.seek(&serde_json::json!({ "events": 5 })).err();
    assert!(
        err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("ends after 1 events"),
    );
}
