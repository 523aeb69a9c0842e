use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source fn = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        fn -> out;
    };
}
