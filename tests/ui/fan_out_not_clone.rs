use eventflux::prelude::*;

struct Event(u32);

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage wrap = map(|x: u32| Event(x));
        sink a = CollectSink::new();
        sink b = CollectSink::new();
        src -> wrap;
        wrap -> a;
        wrap -> b;
    };
}
