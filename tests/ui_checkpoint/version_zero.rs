use eventflux::prelude::*;

#[derive(Checkpoint)]
#[checkpoint(version = 0)]
struct Totals {
    count: u64,
}

fn main() {}
