use eventflux::prelude::*;

#[derive(Checkpoint)]
struct TotalsV1 {
    count: u64,
}

#[derive(Checkpoint)]
#[checkpoint(from = TotalsV1)]
struct Totals {
    count: u64,
    sum: f64,
}

impl From<TotalsV1> for Totals {
    fn from(v1: TotalsV1) -> Self {
        Totals { count: v1.count, sum: 0.0 }
    }
}

fn main() {}
