use eventflux::prelude::*;

#[derive(Checkpoint)]
enum Phase {
    Idle,
    #[checkpoint(skip)]
    Running { since: u64 },
}

fn main() {}
