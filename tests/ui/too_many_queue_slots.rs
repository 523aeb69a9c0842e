use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        config { queue_capacity: 268435456, batch_size: 1 }
        source src = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        src => out;
    };
}
