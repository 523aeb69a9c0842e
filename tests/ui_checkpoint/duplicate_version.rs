use eventflux::prelude::*;

#[derive(Checkpoint)]
#[checkpoint(version = 2, version = 3)]
struct Totals {
    count: u64,
}

fn main() {}
