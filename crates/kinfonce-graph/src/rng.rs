//! Seeded, repeatable random streams (ChaCha8): one seed plus a stream id per independent use.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A ChaCha8 generator for `seed`, on its own `stream` so parallel users never share draws.
pub fn seeded(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `len` independent normal draws with standard deviation `std`.
pub fn normal_vec(rng: &mut ChaCha8Rng, len: usize, std: f64) -> Vec<f64> {
    use rand_distr::{Distribution, StandardNormal};
    (0..len)
        .map(|_| {
            let x: f64 = StandardNormal.sample(rng);
            x * std
        })
        .collect()
}
