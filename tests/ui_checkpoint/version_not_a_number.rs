use eventflux::prelude::*;

#[derive(Checkpoint)]
#[checkpoint(version = "2")]
struct Totals {
    count: u64,
}

fn main() {}
