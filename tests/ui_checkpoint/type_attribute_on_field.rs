use eventflux::prelude::*;

#[derive(Checkpoint)]
struct Totals {
    #[checkpoint(version = 2)]
    count: u64,
}

fn main() {}
