use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source a = IterSource::new(0..10u32);
        source b = IterSource::new(0..10u32);
        stage merge = map(|x: u32| x);
        sink out = CollectSink::new();
        a -> merge;
        b -> merge;
        merge -> out;
    };
}
