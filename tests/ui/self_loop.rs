use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage a = map(|x: u32| x);
        sink out = CollectSink::new();
        src -> a;
        a -> a;
        a -> out;
    };
}
