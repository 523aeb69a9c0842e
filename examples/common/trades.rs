//! The deterministic trade generator shared by the examples and benchmarks.
//!
//! A xorshift generator gives the same sequence on every machine: timestamps rise by 0–3 per
//! trade, 64 symbols, prices 100.00–199.99, volumes 0–999 (so `volume > 100` keeps ~90 %).

use serde::{Deserialize, Serialize};

/// One trade.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// Event time.
    pub ts: u64,
    /// Instrument id, 0–63.
    pub symbol: u32,
    /// Price per unit.
    pub price: f64,
    /// Units traded.
    pub volume: u32,
}

/// Number of distinct symbols.
pub const SYMBOLS: usize = 64;

/// An endless, deterministic stream of trades.
pub struct TradeGen {
    state: u64,
    ts: u64,
    disorder: u64,
}

impl TradeGen {
    /// A generator seeded with `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            ts: 0,
            disorder: 0,
        }
    }

    /// Makes each timestamp lag the generator's clock by 0–`max` (so timestamps arrive out of
    /// order by up to `max`).
    #[allow(dead_code)]
    pub fn with_disorder(mut self, max: u64) -> Self {
        self.disorder = max;
        self
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

impl Iterator for TradeGen {
    type Item = Trade;

    #[inline]
    fn next(&mut self) -> Option<Trade> {
        let r = self.next_u64();
        self.ts += r & 3;
        let lag = if self.disorder == 0 {
            0
        } else {
            (r >> 44) % (self.disorder + 1)
        };
        Some(Trade {
            ts: self.ts.saturating_sub(lag),
            symbol: ((r >> 2) % SYMBOLS as u64) as u32,
            price: 100.0 + ((r >> 8) % 10_000) as f64 / 100.0,
            volume: ((r >> 24) % 1000) as u32,
        })
    }
}

/// `n` trades from seed 42.
#[allow(dead_code)]
pub fn generate(n: usize) -> Vec<Trade> {
    TradeGen::new(42).take(n).collect()
}

/// `n` trades from seed 42, timestamps out of order by up to `max`.
#[allow(dead_code)]
pub fn generate_disordered(n: usize, max: u64) -> Vec<Trade> {
    TradeGen::new(42).with_disorder(max).take(n).collect()
}
