use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source trades = IterSource::new(0..10u32);
        stage value = map(|x: u32| x * 2);
        stage value = map(|x: u32| x + 1);
        sink out = CollectSink::new();
        trades -> value -> out;
    };
}
