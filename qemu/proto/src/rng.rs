//! `SplitMix64`: a tiny seeded generator, identical in the kernel and on the host.

/// The `SplitMix64` finaliser: a bijective 64-bit mix (Steele, Lea, Flood 2014).
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `SplitMix64` stream: every pattern and every random choice in the tests comes from
/// one, so printing the seed is enough to replay a run.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// A stream starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        mix64(self.state)
    }

    /// A value in `[lo, hi]` (inclusive); `lo` when `hi <= lo`. The modulo bias is
    /// irrelevant for test choices.
    pub fn in_range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream_and_seeds_differ() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = SplitMix64::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut other = SplitMix64::new(8);
        assert_ne!(a[0], other.next_u64());
    }

    #[test]
    fn in_range_stays_inside_bounds() {
        let mut r = SplitMix64::new(1);
        for _ in 0..1000 {
            let v = r.in_range(10, 13);
            assert!((10..=13).contains(&v));
        }
        assert_eq!(r.in_range(5, 5), 5);
        assert_eq!(r.in_range(9, 3), 9);
    }
}
