use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source a = IterSource::new(vec![String::from("x")]);
        source c = IterSource::new(0..10u32);
        stage b = map(|x: u32| x + 1);
        sink out = CollectSink::new();
        a => b;
        c => b;
        b -> out;
    };
}
