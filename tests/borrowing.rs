//! `run()` runs segments on scoped threads: node expressions may borrow the caller's locals —
//! a source over a borrowed slice, stages reading a borrowed table, sinks writing into a local
//! `Vec` — across several threads. Only `spawn()` needs `'static`.

use std::collections::HashMap;

use eventflux::prelude::*;

mod common;
use common::{BOUND, within};

#[test]
fn a_multi_thread_pipeline_borrows_locals() {
    within(BOUND, || {
        let readings: Vec<(u32, f64)> = (0..10_000u32).map(|i| (i % 7, f64::from(i))).collect();
        let names: HashMap<u32, &str> = [(0, "zero"), (3, "three")].into_iter().collect();
        let mut named = Vec::new();
        let mut others = 0u64;
        let app = pipeline! {
            source src    = IterSource::new(readings.iter().copied());
            stage  known  = filter(|r: &(u32, f64)| names.contains_key(&r.0));
            stage  label  = map(|r: (u32, f64)| (names[&r.0], r.1));
            stage  rest   = filter(|r: &(u32, f64)| !names.contains_key(&r.0));
            sink   out    = &mut named;
            sink   count  = CallbackSink::new(|_: (u32, f64)| { others += 1; Ok(()) });
            src => known => label => out;
            src => rest -> count;
        };
        assert_eq!(app.graph().segments.len(), 5, "five threads");
        let report = app.run().expect("runs");
        assert_eq!(report.events_in, 10_000);
        let expected: Vec<(&str, f64)> = readings
            .iter()
            .filter_map(|r| names.get(&r.0).map(|n| (*n, r.1)))
            .collect();
        assert_eq!(named, expected, "in order, exactly once");
        assert_eq!(others, 10_000 - expected.len() as u64);
    });
}

/// A failure in a pipeline of borrowed nodes still comes back as an `Err`, and the borrowed
/// sink saw only what came before the failure.
#[test]
fn a_failing_borrowing_pipeline_returns_its_error() {
    within(BOUND, || {
        let data: Vec<u64> = (0..5_000).collect();
        let mut seen = Vec::new();
        let app = pipeline! {
            config { batch_size: 10 }
            source src  = IterSource::new(data.iter().copied());
            stage  boom = map(|x: u64| if x == 4_000 { panic!("bad reading {x}") } else { x });
            sink   out  = &mut seen;
            src => boom -> out;
        };
        let err = app.run().expect_err("the stage panics");
        assert_eq!(
            err.to_string(),
            "node `boom` (segment `boom`) panicked: bad reading 4000"
        );
        assert!(seen.len() <= 4_000);
        assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    });
}
