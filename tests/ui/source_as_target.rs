use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source a = IterSource::new(0..10u32);
        source b = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        a -> b;
        b -> out;
    };
}
