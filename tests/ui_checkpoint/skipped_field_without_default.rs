use eventflux::prelude::*;

struct Connection {
    port: u16,
}

#[derive(Checkpoint)]
struct Totals {
    count: u64,
    #[checkpoint(skip)]
    conn: Connection,
}

fn main() {}
