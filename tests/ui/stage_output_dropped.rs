use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage double = map(|x: u32| x * 2);
        stage lost = map(|x: u32| x + 1);
        sink out = CollectSink::new();
        src -> double -> out;
        double -> lost;
    };
}
