//! The one random source of every workload: `SplitMix64`, plus the samplers built on it.
//!
//! Operation sequences are generated here, once, in Rust, and handed as arrays to both
//! stacks (the PMDK side receives them through the C shim), so both run exactly the same
//! operations in the same order. `SplitMix64` is the generator of Steele, Lea and Flood,
//! "Fast splittable pseudorandom number generators" (OOPSLA 2014).

/// The `SplitMix64` generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `[0, n)` (Lemire's multiply-shift; its bias is below
    /// `n / 2^64`, nothing a benchmark can see).
    pub fn below(&mut self, n: u32) -> u32 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u32
    }

    /// A uniform integer in `[lo, hi]`.
    pub fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo + 1)
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 mantissa exactly
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles `items` (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(u32::try_from(i + 1).expect("shuffle of at most 2^32 items"));
            items.swap(i, j as usize);
        }
    }
}

/// Zipf(`s`) over `n` items by inverse transform on the exact cumulative distribution:
/// rank `k` (1-based) has probability proportional to `1 / k^s`. Ranks are mapped to
/// item indices through a fixed random permutation, so the hot items are spread over
/// the pool instead of being its first objects.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
    item_of_rank: Vec<u32>,
}

impl Zipf {
    /// The sampler for `n` items with exponent `s`; `perm` seeds the rank permutation.
    pub fn new(n: u32, s: f64, perm: &mut SplitMix64) -> Self {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / f64::from(k).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        let mut item_of_rank: Vec<u32> = (0..n).collect();
        perm.shuffle(&mut item_of_rank);
        Self { cdf, item_of_rank }
    }

    /// One item index in `[0, n)`.
    pub fn sample(&self, rng: &mut SplitMix64) -> u32 {
        let u = rng.unit();
        let rank = self
            .cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1);
        self.item_of_rank[rank]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // First outputs for seed 1234567 of the reference C implementation (Vigna's
        // splitmix64.c).
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = r.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn zipf_favours_its_top_ranks_like_the_distribution_says() {
        let mut perm = SplitMix64::new(1);
        let z = Zipf::new(10_000, 0.99, &mut perm);
        let mut r = SplitMix64::new(2);
        let top = z.item_of_rank[0];
        let n = 200_000;
        let hits = (0..n).filter(|_| z.sample(&mut r) == top).count();
        // P(rank 1) = 1 / H(10000, 0.99) ~= 0.1009.
        let p = f64::from(u32::try_from(hits).unwrap()) / f64::from(n);
        assert!((p - 0.1009).abs() < 0.005, "p = {p}");
    }
}
