use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source source = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        source -> out;
    };
}
