use eventflux::prelude::*;

mod as_text {}

#[derive(Checkpoint)]
struct Totals {
    #[checkpoint(with = as_text)]
    count: u64,
}

fn main() {}
