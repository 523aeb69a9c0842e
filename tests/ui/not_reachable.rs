use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage a = map(|x: u32| x);
        stage b = map(|x: u32| x);
        sink out = CollectSink::new();
        sink side = CollectSink::new();
        src -> out;
        a => b;
        b => a;
        b -> side;
    };
}
