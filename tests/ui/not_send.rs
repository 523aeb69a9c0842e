use std::rc::Rc;

use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {
        source src = IterSource::new(0..10u32);
        stage wrap = map(|x: u32| Rc::new(x));
        stage unwrap = map(|x: Rc<u32>| *x);
        sink out = CollectSink::new();
        src -> wrap => unwrap -> out;
    };
}
