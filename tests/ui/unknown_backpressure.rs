use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        config { backpressure: DropOld }
        source src = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        src => out;
    };
}
