use eventflux::prelude::*;

#[derive(Checkpoint)]
struct Totals {
    #[checkpoint(skp)]
    count: u64,
}

fn main() {}
