//! `pipeline!` end to end: every edge form runs and produces exact outputs.

use eventflux::prelude::*;

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
    let report = app.run().expect("runs");
    assert_eq!(got.take(), [10, 30, 50, 70, 90]);
    assert_eq!(report.events_out, 5);
}
