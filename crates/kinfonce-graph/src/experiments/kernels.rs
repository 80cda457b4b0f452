//! `kernels`: positive-definiteness of exp(-||x - y||^gamma) and of kernel mixtures, and the
//! maximum-entropy reading of the softmax.
//!
//! Predictions: the Gram matrix of exp(-||x - y||^gamma / tau) is positive semi-definite for
//! every point set iff gamma in (0, 2] (Schoenberg); for gamma > 2 a point set with a negative
//! eigenvalue exists (here an evenly spaced 1-D grid, whose Toeplitz Gram matrix inherits the
//! negative lobes of the Fourier transform of exp(-|x|^gamma)). Sums (Simple Sum) and products
//! over split coordinates (Concatenation Sum's kernel) of PD kernels are PD. Max-entropy:
//! max_q Entropy(q) + sum_j q_j s_j over the simplex is attained at q = softmax(s) with value
//! logsumexp(s), so the InfoNCE loss -log softmax(s)_pos = logsumexp(s) - s_pos.

use crate::eigen::symmetric_eigen;
use crate::error::Result;
use crate::free_embedding::infonce_on_nodes;
use crate::kernel::{sq_dist, ExpKernel};
use crate::plot::{write_line_chart, LineChart, Series};
use crate::report::{Claim, Report};
use faer::Mat;
use rand::Rng;
use std::path::Path;

/// Settings of the `kernels` experiment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KernelsConfig {
    /// Points of the 1-D grid (default 300).
    pub grid_points: usize,
    /// Grid spacing (default 0.05).
    pub spacing: f64,
    /// Exponents tested (default 0.5, 1, 1.5, 2, 2.5, 3, 4).
    pub gammas: Vec<f64>,
    /// Random points in R^6 for the mixture checks (default 80).
    pub random_points: usize,
    /// Candidates in the max-entropy check (default 20).
    pub candidates: usize,
    /// Random simplex points tried against the softmax (default 20000).
    pub simplex_trials: usize,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for KernelsConfig {
    fn default() -> Self {
        Self {
            grid_points: 300,
            spacing: 0.05,
            gammas: vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0],
            random_points: 80,
            candidates: 20,
            simplex_trials: 20000,
            seed: 0,
        }
    }
}

fn gram(points: &[f64], dim: usize, k: impl Fn(&[f64], &[f64]) -> f64) -> Mat<f64> {
    let n = points.len() / dim;
    Mat::from_fn(n, n, |i, j| {
        k(
            &points[i * dim..(i + 1) * dim],
            &points[j * dim..(j + 1) * dim],
        )
    })
}

fn min_eigenvalue(m: &Mat<f64>) -> Result<(f64, f64)> {
    let (vals, _) = symmetric_eigen(m)?;
    Ok((vals[0], *vals.last().unwrap()))
}

/// Runs the experiment.
pub fn run(config: &KernelsConfig, out: Option<&Path>) -> Result<Report> {
    if config.grid_points < 2 || config.random_points < 2 || config.candidates < 2 {
        return Err(crate::GraphError::param(
            "grid/random points, candidates",
            config
                .grid_points
                .min(config.random_points)
                .min(config.candidates),
            "at least 2",
        ));
    }
    crate::error::check_positive("spacing", config.spacing)?;
    let grid: Vec<f64> = (0..config.grid_points)
        .map(|i| i as f64 * config.spacing)
        .collect();
    let mut claims = Vec::new();
    let mut curve = Vec::new();
    for &gamma in &config.gammas {
        crate::error::check_positive("gamma", gamma)?;
        let g = gram(&grid, 1, |x, y| (-(x[0] - y[0]).abs().powf(gamma)).exp());
        let (lo, hi) = min_eigenvalue(&g)?;
        curve.push((gamma, lo / hi));
        let name = format!("min_eigenvalue_gamma_{gamma}");
        if gamma <= 2.0 {
            claims.push(Claim::at_least(
                &name,
                0.0,
                lo,
                1e-9 * hi,
                "PD for gamma <= 2: smallest Gram eigenvalue >= 0 (round-off 1e-9 x largest)",
            ));
        } else {
            claims.push(Claim::at_most(
                &name,
                -1e-9 * hi,
                lo,
                0.0,
                "not PD for gamma > 2: the grid's Gram matrix has an eigenvalue < -1e-9 x largest",
            ));
        }
    }
    // Mixtures on random points in R^6.
    let dim = 6;
    let mut rng = crate::rng::seeded(config.seed, 7);
    let pts = crate::rng::normal_vec(&mut rng, config.random_points * dim, 0.5);
    let k1 = ExpKernel {
        gamma: 1.0,
        tau: 0.2,
    };
    let k2 = ExpKernel {
        gamma: 2.0,
        tau: 0.4,
    };
    let simple_sum = gram(&pts, dim, |x, y| 0.5 * k1.eval(x, y) + 0.5 * k2.eval(x, y));
    let (lo, hi) = min_eigenvalue(&simple_sum)?;
    claims.push(Claim::at_least(
        "min_eigenvalue_simple_sum",
        0.0,
        lo,
        1e-9 * hi,
        "Simple Sum 0.5 K(gamma 1, tau 0.2) + 0.5 K(gamma 2, tau 0.4) is PD (sum of PD kernels)",
    ));
    let half = dim / 2;
    let concat = gram(&pts, dim, |x, y| {
        k1.eval(&x[..half], &y[..half]) * k2.eval(&x[half..], &y[half..])
    });
    let (lo, hi) = min_eigenvalue(&concat)?;
    claims.push(Claim::at_least(
        "min_eigenvalue_concatenation",
        0.0,
        lo,
        1e-9 * hi,
        "Concatenation: K1(x1, y1) K2(x2, y2) on split coordinates is PD (Schur product)",
    ));
    // Maximum entropy.
    let m = config.candidates;
    let z = crate::rng::normal_vec(&mut rng, (m + 1) * 4, 0.6);
    let kernel = ExpKernel {
        gamma: 2.0,
        tau: 0.5,
    };
    let s: Vec<f64> = (1..=m)
        .map(|c| -kernel.energy(sq_dist(&z[..4], &z[c * 4..(c + 1) * 4])))
        .collect();
    let smax = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = smax + s.iter().map(|x| (x - smax).exp()).sum::<f64>().ln();
    let objective = |q: &[f64]| -> f64 {
        q.iter()
            .zip(&s)
            .map(|(&qi, &si)| {
                if qi > 0.0 {
                    -qi * qi.ln() + qi * si
                } else {
                    0.0
                }
            })
            .sum()
    };
    let softmax: Vec<f64> = s.iter().map(|x| (x - lse).exp()).collect();
    claims.push(Claim::equal(
        "max_entropy_value",
        lse,
        objective(&softmax),
        1e-9,
        "Entropy(q) + <q, s> at q = softmax(s) equals logsumexp(s)",
    ));
    let mut best = f64::NEG_INFINITY;
    for t in 0..config.simplex_trials {
        // Half uniform on the simplex (normalised exponentials), half small perturbations of the softmax.
        let mut q: Vec<f64> = if t % 2 == 0 {
            (0..m).map(|_| -(1.0 - rng.gen::<f64>()).ln()).collect()
        } else {
            softmax
                .iter()
                .map(|&x| x * (1.0 + 0.05 * (rng.gen::<f64>() - 0.5)))
                .collect()
        };
        let total: f64 = q.iter().sum();
        q.iter_mut().for_each(|x| *x /= total);
        best = best.max(objective(&q));
    }
    claims.push(Claim::at_most(
        "max_entropy_optimality",
        lse,
        best,
        1e-12,
        "no other point of the simplex does better than the softmax (random and perturbed trials)",
    ));
    let pos = 0usize;
    let nodes: Vec<usize> = (1..=m).collect();
    let (loss, _) = infonce_on_nodes(&kernel, &z, 4, &[0], &nodes, &[pos], None)?;
    claims.push(Claim::equal(
        "infonce_is_lse_minus_positive",
        lse - s[pos],
        loss,
        1e-9,
        "kinfonce-loss InfoNCE = (max-entropy value) - s_pos",
    ));
    let mut plots = Vec::new();
    if let Some(dir) = out {
        plots = write_line_chart(
            dir,
            "kernels_min_eigenvalue",
            &LineChart {
                title: "exp(-|x - y|^gamma): smallest / largest Gram eigenvalue on a 1-D grid"
                    .into(),
                x_label: "gamma".into(),
                y_label: "lambda_min / lambda_max".into(),
                log_x: false,
                log_y: false,
                series: vec![
                    Series::line("measured", curve.clone()),
                    Series::prediction(
                        "0 (PD boundary; PD iff gamma <= 2)",
                        vec![
                            (config.gammas[0], 0.0),
                            (*config.gammas.last().unwrap(), 0.0),
                        ],
                    ),
                ],
            },
        )?;
    }
    Ok(Report {
        experiment: "kernels".into(),
        params: serde_json::json!({
            "grid_points": config.grid_points, "spacing": config.spacing, "gammas": config.gammas,
            "random_points": config.random_points, "candidates": config.candidates,
            "simplex_trials": config.simplex_trials, "seed": config.seed,
            "kernel_convention": "K(x, y) = exp(-||x - y||^gamma / tau); PD checks use tau = 1 (PD does not depend on tau)",
        }),
        claims,
        plots,
        details: serde_json::json!({"min_over_max_eigenvalue": curve}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pd_exactly_up_to_two() {
        let r = run(
            &KernelsConfig {
                grid_points: 200,
                simplex_trials: 2000,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert!(r.all_hold(), "{}", r.to_text());
    }
}
