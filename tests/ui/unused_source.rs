use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source used = IterSource::new(0..10u32);
        source forgotten = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        used -> out;
    };
}
