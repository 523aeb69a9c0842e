use eventflux::prelude::*;

#[derive(Checkpoint)]
#[checkpoint(skip)]
struct Totals {
    count: u64,
}

fn main() {}
