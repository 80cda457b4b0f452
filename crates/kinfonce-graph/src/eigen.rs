//! Dense symmetric eigendecomposition (faer's self-adjoint solver), eigenvalues sorted
//! ascending. Used by the dense spectral embedding ([`crate::spectral`]), the Rayleigh-Ritz
//! step of subspace iteration ([`crate::subspace`]) and the experiments.

use crate::error::{GraphError, Result};
use faer::Mat;

/// Eigenvalues (ascending) and eigenvectors (columns) of a dense symmetric matrix.
pub fn symmetric_eigen(m: &Mat<f64>) -> Result<(Vec<f64>, Mat<f64>)> {
    let evd = m
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| GraphError::NoConvergence {
            what: "dense symmetric eigendecomposition",
            detail: format!("{e:?}"),
        })?;
    let s = evd.S().column_vector();
    let mut order: Vec<usize> = (0..m.nrows()).collect();
    order.sort_by(|&a, &b| s[a].total_cmp(&s[b]));
    let vals = order.iter().map(|&i| s[i]).collect();
    let u = evd.U();
    let vecs = Mat::from_fn(m.nrows(), m.nrows(), |i, j| u[(i, order[j])]);
    Ok((vals, vecs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_a_2x2_by_hand() {
        let m = Mat::from_fn(2, 2, |i, j| if i == j { 2.0 } else { 1.0 });
        let (vals, vecs) = symmetric_eigen(&m).unwrap();
        assert!((vals[0] - 1.0).abs() < 1e-12 && (vals[1] - 3.0).abs() < 1e-12);
        assert!((vecs[(0, 1)].abs() - 0.5f64.sqrt()).abs() < 1e-12);
    }
}
