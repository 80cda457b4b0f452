//! A counter-based random stream: every draw is a pure function of a key and a counter.
//!
//! The key hashes the coordinates of a draw, e.g. (seed, epoch, index, view) for an augmented
//! view, so any view can be recomputed alone, on any thread, in any order, and runs repeat
//! exactly. Output `n` of the stream with key `k` is `mix64(k + (n + 1) * GOLDEN)`, i.e.
//! SplitMix64 (Steele, Lea and Flood, 2014) evaluated at an explicit counter.

/// 2^64 / golden ratio, the SplitMix64 increment.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser (a bijection of u64 with full avalanche).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a tuple of words into one key (order matters).
pub fn hash_words(words: &[u64]) -> u64 {
    let mut h = 0x6A09_E667_F3BC_C908u64; // sqrt(2) bits: a non-zero start
    for &w in words {
        h = mix64(h ^ mix64(w.wrapping_add(GOLDEN)));
    }
    h
}

/// A random stream keyed by a hash of coordinates; `next_u64` advances a counter.
#[derive(Clone, Debug)]
pub struct CounterRng {
    key: u64,
    counter: u64,
}

impl CounterRng {
    /// The stream for the given coordinates (e.g. `[seed, epoch, index, view]`).
    pub fn new(words: &[u64]) -> Self {
        CounterRng {
            key: hash_words(words),
            counter: 0,
        }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        mix64(self.key.wrapping_add(self.counter.wrapping_mul(GOLDEN)))
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    #[inline]
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n) (Lemire's multiply-shift; n = 0 gives 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `p`.
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_and_different_keys_differ() {
        let a: Vec<u64> = {
            let mut r = CounterRng::new(&[1, 2, 3, 4]);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = CounterRng::new(&[1, 2, 3, 4]);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        for other in [[1, 2, 3, 5], [1, 2, 4, 3], [0, 2, 3, 4], [4, 3, 2, 1]] {
            let mut r = CounterRng::new(&other);
            assert_ne!(a[0], r.next_u64(), "key {other:?}");
        }
    }

    #[test]
    fn unit_mean_and_below_are_uniform() {
        let mut r = CounterRng::new(&[7]);
        let n = 200_000;
        let mean = (0..n).map(|_| r.unit()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        let mut counts = [0usize; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((c as f64 - 10_000.0).abs() < 400.0, "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        CounterRng::new(&[3]).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
