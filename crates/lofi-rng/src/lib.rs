//! The one seeded random stream of lofi.
//!
//! Every random choice a run makes (the order of videos in an epoch, G-TAD's band-balanced loss
//! sampling, the loader's shuffle) must be a pure function of the run's seed, so that a run can
//! be repeated and resumed exactly. They all draw from this SplitMix64 generator (Steele, Lea and
//! Flood, 2014): tiny, well mixed, and with no dependency, so the lowest crates (video, model) can
//! share it with the trainers. It is not a cryptographic generator.

/// SplitMix64: a 64-bit state advanced by a constant and mixed on output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
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

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, 1)` with 24 random bits (exactly representable in an `f32`).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is below 2^-60 for the sizes we shuffle).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "below(0)");
        ((self.next_u64() >> 1) % n.max(1) as u64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates, from the end).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        self.shuffle(&mut order);
        order
    }
}

/// The seed of stream `index` derived from a run's `seed` (for example one stream per epoch):
/// neighbouring indices give unrelated streams, and index `i` of seed `s` differs from index
/// `i + 1` of seed `s ^ c` for any constant.
pub fn derive(seed: u64, index: u64) -> u64 {
    seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_of_splitmix64() {
        // The reference outputs of SplitMix64 seeded with 1234567 (from the published C code).
        let mut r = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn floats_lie_in_the_unit_interval_and_use_their_bits() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            let (a, b) = (r.next_f64(), r.next_f32());
            assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b));
        }
        let mean = (0..10_000).map(|_| r.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }

    #[test]
    fn permutations_are_seeded_and_complete() {
        let a = SplitMix64::new(3).permutation(50);
        assert_eq!(a, SplitMix64::new(3).permutation(50));
        assert_ne!(a, SplitMix64::new(4).permutation(50));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert!(SplitMix64::new(0).permutation(0).is_empty());
    }

    #[test]
    fn below_covers_its_range_evenly() {
        let mut r = SplitMix64::new(11);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[r.below(5)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn derived_streams_differ() {
        assert_ne!(derive(0, 0), derive(0, 1));
        assert_ne!(derive(0, 0), derive(1, 0));
        assert_eq!(derive(5, 2), derive(5, 2));
    }
}
