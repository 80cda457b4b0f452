//! The spectral contrastive loss (HaoChen et al. 2021) in the SimCLR pairing.

use crate::error::LossError;
use crate::matrix::{Mat, MatRef};
use crate::output::LossOutput;
use crate::real::Real;

/// L = sum_{i != j} <z_i, z_j>^2 / (B (B - 1)) - (2 / B) sum_i <z1_i, z2_i>, over the 2B rows z of
/// [z1; z2]. The off-diagonal sum is ||Z^T Z||_F^2 - sum_i |z_i|^4, so the cost is O(B d^2) and no
/// B x B matrix is formed; d L / d Z = (4 Z (Z^T Z) - 4 |z_i|^2 z_i) / (B (B - 1)) - (2 / B) z_other.
///
/// # Shapes
/// z1, z2: B x d with B >= 2.
pub fn spectral_simclr<T: Real>(
    z1: MatRef<'_, T>,
    z2: MatRef<'_, T>,
) -> Result<LossOutput<T>, LossError> {
    let b = z1.rows;
    if b < 2 {
        return Err(LossError::Empty(format!(
            "the spectral contrastive loss needs a batch of at least 2 pairs, got {b}"
        )));
    }
    let z = Mat::vstack(z1, z2);
    let d = z.cols;
    // Gram of the columns, in f64: G = Z^T Z (d x d).
    let mut gram = vec![0.0f64; d * d];
    for r in 0..z.rows {
        let row = z.row(r);
        for (a, &x) in row.iter().enumerate() {
            let x = x.to_f64();
            for (g, &y) in gram[a * d..(a + 1) * d].iter_mut().zip(row) {
                *g += x * y.to_f64();
            }
        }
    }
    let fro: f64 = gram.iter().map(|g| g * g).sum();
    let norms4: f64 = (0..z.rows)
        .map(|r| {
            z.row(r)
                .iter()
                .map(|v| v.to_f64().powi(2))
                .sum::<f64>()
                .powi(2)
        })
        .sum();
    let pairs = (b * (b - 1)) as f64;
    let align: f64 = (0..b)
        .map(|i| {
            z1.row(i)
                .iter()
                .zip(z2.row(i))
                .map(|(x, y)| x.to_f64() * y.to_f64())
                .sum::<f64>()
        })
        .sum();
    let loss = (fro - norms4) / pairs - 2.0 / b as f64 * align;

    let mut grad = Mat::zeros(z.rows, d);
    for r in 0..z.rows {
        let row = z.row(r);
        let sq: f64 = row.iter().map(|v| v.to_f64().powi(2)).sum();
        let other = z.row((r + b) % (2 * b));
        for c in 0..d {
            let zg: f64 = row
                .iter()
                .enumerate()
                .map(|(a, v)| v.to_f64() * gram[a * d + c])
                .sum();
            let g = 4.0 * (zg - sq * row[c].to_f64()) / pairs - 2.0 / b as f64 * other[c].to_f64();
            grad.row_mut(r)[c] = T::from_f64(g);
        }
    }
    let (g1, g2) = grad.split_rows(b);
    Ok(LossOutput {
        loss,
        grads: vec![g1, g2],
    })
}
