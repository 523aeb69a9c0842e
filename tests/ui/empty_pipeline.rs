use eventflux::prelude::*;

fn main() {
    let _app = pipeline! {};
}
