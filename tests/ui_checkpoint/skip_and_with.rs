use eventflux::prelude::*;

#[derive(Checkpoint)]
struct Totals {
    #[checkpoint(skip, with = eventflux::state::serde_value)]
    count: u64,
}

fn main() {}
