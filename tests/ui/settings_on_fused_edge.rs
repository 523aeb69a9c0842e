use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        src ->[capacity = 64] out;
    };
}
