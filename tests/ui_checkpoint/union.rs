use eventflux::prelude::*;

#[derive(Checkpoint)]
union Bits {
    int: u64,
    float: f64,
}

fn main() {}
