use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage orphan = map(|x: u32| x);
        sink out = CollectSink::new();
        sink audit = CollectSink::new();
        src -> out;
        orphan -> audit;
    };
}
