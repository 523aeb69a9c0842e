use eventflux::prelude::*;

#[derive(Checkpoint)]
#[checkpoint(versoin = 2)]
struct Totals {
    count: u64,
}

fn main() {}
