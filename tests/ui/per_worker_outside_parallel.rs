use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u64);
        sink out = per_worker(|w| JsonLinesSink::create(format!("out-{w}.jsonl")));
        src => out;
    };
}
