use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        config { queue_capacity: 0 }
        source src = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        src => out;
    };
}
