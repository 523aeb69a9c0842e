use eventflux::prelude::*;

struct Reading {
    value: u32,
}

fn main() {
    let _app = pipeline! {
        source src = IterSource::new((0..10u32).map(|value| Reading { value }));
        // Node expressions are ordinary Rust, type-checked where they are written: a closure
        // that uses its parameter needs the parameter's type.
        stage big = filter(|r| r.value > 3);
        sink out = CollectSink::new();
        src -> big -> out;
    };
}
