use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u64);
        stage tag = map(|x: u64| x + 1);
        sink out = JsonLinesSink::create("out.jsonl").unwrap();
        sink direct = CollectSink::new();
        src =>[workers = 4, key = |x: &u64| *x] tag -> out;
        src =>[workers = 2, key = |x: &u64| *x] direct;
    };
}
