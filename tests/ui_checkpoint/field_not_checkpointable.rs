use eventflux::prelude::*;

struct Clock {
    ticks: u64,
}

#[derive(Checkpoint)]
struct Totals {
    count: u64,
    clock: Clock,
}

fn main() {}
