use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source a = IterSource::new(0..10u32);
        source b = IterSource::new(0..10u32);
        sink out = CollectSink::new();
        a =>[capacity = 4096] out;
        b =>[capacity = 8192] out;
    };
}
