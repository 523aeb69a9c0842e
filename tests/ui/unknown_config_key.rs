use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        config { queue_capacty: 1024 }
        source src = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        src -> out;
    };
}
