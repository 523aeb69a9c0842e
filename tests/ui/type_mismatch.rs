use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage text = map(|s: String| s.len());
        sink out = CollectSink::new();
        src -> text -> out;
    };
}
