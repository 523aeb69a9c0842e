use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage work = map(|x: u32| x);
        sink out = CollectSink::new();
        src =>[workers = 2, key = |x: &u32| *x, key_groups = 256] work => out;
    };
}
