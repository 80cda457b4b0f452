//! Helpers shared by the experiments.

use crate::kernel::{sq_dist, ExpKernel};
use faer::Mat;

/// Parameters every report carries: the kernel convention in words.
pub fn convention(kernel: &ExpKernel) -> String {
    kernel.convention()
}

/// Projects the rows of `z` (n x dim) onto the top-2 principal axes of `basis` (m x dim), both
/// row-major; dims 1 and 2 are padded with zeros.
pub fn project_2d(z: &[f64], basis: &[f64], dim: usize) -> Vec<(f64, f64)> {
    let n = z.len() / dim;
    if dim == 1 {
        return (0..n).map(|i| (z[i], 0.0)).collect();
    }
    let m = basis.len() / dim;
    let mean: Vec<f64> = (0..dim)
        .map(|t| (0..m).map(|i| basis[i * dim + t]).sum::<f64>() / m as f64)
        .collect();
    let cov = Mat::from_fn(dim, dim, |a, b| {
        (0..m)
            .map(|i| (basis[i * dim + a] - mean[a]) * (basis[i * dim + b] - mean[b]))
            .sum::<f64>()
    });
    let axes = match crate::eigen::symmetric_eigen(&cov) {
        Ok((_, v)) => v,
        Err(_) => Mat::identity(dim, dim),
    };
    let (a1, a2) = (dim - 1, dim - 2);
    (0..n)
        .map(|i| {
            let x: f64 = (0..dim)
                .map(|t| (z[i * dim + t] - mean[t]) * axes[(t, a1)])
                .sum();
            let y: f64 = (0..dim)
                .map(|t| (z[i * dim + t] - mean[t]) * axes[(t, a2)])
                .sum();
            (x, y)
        })
        .collect()
}

/// Block centres (mean of each block's rows) of `z`.
pub fn centres(z: &[f64], dim: usize, labels: &[usize], k: usize) -> Vec<f64> {
    let mut c = vec![0.0; k * dim];
    let mut counts = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        counts[l] += 1;
        for t in 0..dim {
            c[l * dim + t] += z[i * dim + t];
        }
    }
    for l in 0..k {
        for t in 0..dim {
            c[l * dim + t] /= counts[l].max(1) as f64;
        }
    }
    c
}

/// Squared distances between all pairs of distinct centres.
pub fn centre_sq_distances(c: &[f64], dim: usize) -> Vec<f64> {
    let k = c.len() / dim;
    let mut out = Vec::new();
    for a in 0..k {
        for b in (a + 1)..k {
            out.push(sq_dist(
                &c[a * dim..(a + 1) * dim],
                &c[b * dim..(b + 1) * dim],
            ));
        }
    }
    out
}

/// Largest squared distance of a node to its block centre.
pub fn max_spread(z: &[f64], dim: usize, labels: &[usize], c: &[f64]) -> f64 {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| sq_dist(&z[i * dim..(i + 1) * dim], &c[l * dim..(l + 1) * dim]))
        .fold(0.0, f64::max)
}
