use eventflux::prelude::*;

fn main() {
    let data = vec![1u32, 2, 3];
    let app = pipeline! {
        source src = IterSource::new(data.iter().copied());
        sink out = CollectSink::new();
        src => out;
    };
    // `spawn` outlives this frame, so its nodes must own their data; `run` may borrow.
    let _handle = app.spawn();
}
