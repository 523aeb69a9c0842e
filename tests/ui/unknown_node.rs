use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source trades = IterSource::new(0..10u32);
        stage value = map(|x: u32| x * 2);
        sink out = CollectSink::new();
        trades -> valu -> out;
    };
}
