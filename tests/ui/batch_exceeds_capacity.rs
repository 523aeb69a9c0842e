use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        config { queue_capacity: 256, batch_size: 512 }
        source src = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        src => out;
    };
}
