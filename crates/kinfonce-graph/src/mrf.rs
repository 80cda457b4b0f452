//! The paper's objects on a similarity graph pi: the row-normalised P, the subgraph
//! distribution P(W; pi) with unit out-degree, and the cross-entropy H(pi, K_Z).
//!
//! P(W; pi) ∝ prod_ij pi_ij^{W_ij} over subgraphs W in which every node has exactly one
//! out-edge factorises over rows: P(W; pi) = prod_i P_{i, j(i)} with P = D^{-1} pi. The
//! cross-entropy with the kernel graph K_Z is
//! H(pi, K_Z) = -E_{W ~ P(W; pi)} log P(W; K_Z) = -sum_i sum_j P_ij log Q_ij,
//! Q_ij = K(z_i, z_j) / sum_{k != i} K(z_i, z_k). With gamma = 2 it equals the trace form
//! (2 / tau) tr(Z^T L(P_sym) Z) + sum_i log R_i, P_sym = (P + P^T) / 2,
//! R_i = sum_{k != i} exp(-||z_i - z_k||^2 / tau).

use crate::error::{GraphError, Result};
use crate::graph::Graph;
use crate::kernel::{sq_dist, ExpKernel};
use faer::Mat;
use rand::Rng;

/// P = D^{-1} pi (rows sum to 1). Refuses isolated nodes.
///
/// # Shapes
/// n x n.
pub fn transition_matrix(graph: &Graph) -> Result<Mat<f64>> {
    graph.require_no_isolated()?;
    let n = graph.n_nodes();
    let d = graph.degrees();
    let mut p = Mat::zeros(n, n);
    for i in 0..n {
        for (j, w) in graph.neighbors(i) {
            p[(i, j)] = w / d[i];
        }
    }
    Ok(p)
}

/// sum_i Entropy(P_i) = -sum_ij P_ij ln P_ij: the lower bound of H(pi, K_Z) over all Z (Gibbs),
/// reached iff Q = P.
pub fn row_entropy(p: &Mat<f64>) -> f64 {
    let mut h = 0.0;
    for i in 0..p.nrows() {
        for j in 0..p.ncols() {
            let x = p[(i, j)];
            if x > 0.0 {
                h -= x * x.ln();
            }
        }
    }
    h
}

/// The enumeration behind the row factorisation, on a small graph.
#[derive(Clone, Debug)]
pub struct MrfEnumeration {
    /// Number of subgraphs W with unit out-degree and positive weight.
    pub subgraphs: usize,
    /// Partition function Z = sum_W prod pi_ij^{W_ij}, enumerated.
    pub partition_enumerated: f64,
    /// prod_i d_i, the closed form of Z.
    pub partition_closed_form: f64,
    /// max_W |P(W; pi) - prod_i P_{i, j(i)}|.
    pub max_factorisation_error: f64,
    /// Marginal P(W_ij = 1) by enumeration vs P_ij: max error.
    pub max_marginal_error: f64,
}

/// Enumerates every W with exactly one out-edge per node (along edges of pi) and compares the
/// normalised MRF P(W; pi) with the product of rows of P. At most `limit` subgraphs.
pub fn enumerate_unit_out_degree(graph: &Graph, limit: usize) -> Result<MrfEnumeration> {
    graph.require_no_isolated()?;
    let n = graph.n_nodes();
    let rows: Vec<Vec<(usize, f64)>> = (0..n).map(|i| graph.neighbors(i).collect()).collect();
    let total: f64 = rows.iter().map(|r| r.len() as f64).product();
    if total > limit as f64 {
        return Err(GraphError::param(
            "graph size",
            format!("{total} subgraphs"),
            format!("at most {limit} subgraphs to enumerate (use a smaller graph)"),
        ));
    }
    let d = graph.degrees();
    let p = transition_matrix(graph)?;
    let count = total as usize;
    // First pass: unnormalised weights and Z.
    let mut weights = Vec::with_capacity(count);
    let mut choice = vec![0usize; n];
    for _ in 0..count {
        weights.push(
            choice
                .iter()
                .enumerate()
                .map(|(i, &c)| rows[i][c].1)
                .product::<f64>(),
        );
        advance(&mut choice, &rows);
    }
    let z: f64 = weights.iter().sum();
    let mut max_err: f64 = 0.0;
    let mut marginal = Mat::<f64>::zeros(n, n);
    choice.iter_mut().for_each(|c| *c = 0);
    for w in &weights {
        let prob = w / z;
        let factorised: f64 = choice
            .iter()
            .enumerate()
            .map(|(i, &c)| p[(i, rows[i][c].0)])
            .product();
        max_err = max_err.max((prob - factorised).abs());
        for (i, &c) in choice.iter().enumerate() {
            marginal[(i, rows[i][c].0)] += prob;
        }
        advance(&mut choice, &rows);
    }
    let mut max_marginal: f64 = 0.0;
    for i in 0..n {
        for j in 0..n {
            max_marginal = max_marginal.max((marginal[(i, j)] - p[(i, j)]).abs());
        }
    }
    Ok(MrfEnumeration {
        subgraphs: count,
        partition_enumerated: z,
        partition_closed_form: d.iter().product(),
        max_factorisation_error: max_err,
        max_marginal_error: max_marginal,
    })
}

fn advance(choice: &mut [usize], rows: &[Vec<(usize, f64)>]) {
    for (i, c) in choice.iter_mut().enumerate() {
        *c += 1;
        if *c < rows[i].len() {
            return;
        }
        *c = 0;
    }
}

/// Row-wise log Q: log Q_ij = s_ij - logsumexp_{k != i} s_ik, s_ij = -||z_i - z_j||^gamma / tau;
/// the diagonal is -inf (the self-pair is excluded).
///
/// # Shapes
/// `z`: n x dim row-major; returns n x n.
pub fn log_q(z: &[f64], dim: usize, kernel: &ExpKernel) -> Mat<f64> {
    let n = z.len() / dim;
    let row = |i: usize| &z[i * dim..(i + 1) * dim];
    let mut lq = Mat::zeros(n, n);
    for i in 0..n {
        let mut m = f64::NEG_INFINITY;
        for j in 0..n {
            if j != i {
                let s = -kernel.energy(sq_dist(row(i), row(j)));
                lq[(i, j)] = s;
                m = m.max(s);
            }
        }
        let lse = m
            + (0..n)
                .filter(|&j| j != i)
                .map(|j| (lq[(i, j)] - m).exp())
                .sum::<f64>()
                .ln();
        for j in 0..n {
            lq[(i, j)] = if j == i {
                f64::NEG_INFINITY
            } else {
                lq[(i, j)] - lse
            };
        }
    }
    lq
}

/// H(pi, K_Z) = -sum_ij P_ij log Q_ij, directly.
pub fn cross_entropy(p: &Mat<f64>, z: &[f64], dim: usize, kernel: &ExpKernel) -> f64 {
    let lq = log_q(z, dim, kernel);
    let n = p.nrows();
    let mut h = 0.0;
    for i in 0..n {
        for j in 0..n {
            if p[(i, j)] > 0.0 {
                h -= p[(i, j)] * lq[(i, j)];
            }
        }
    }
    h
}

/// H(pi, K_Z) and its gradient with respect to Z.
///
/// dH/ds_ij = Q_ij - P_ij, so dH/dz_i = -sum_j c_ij (z_i - z_j) with
/// c_ij = 2 (G_ij + G_ji) f'(r_ij^2), G = Q - P, f(r^2) = r^gamma / tau.
///
/// # Shapes
/// `z`: n x dim row-major; gradient the same.
pub fn cross_entropy_grad(
    p: &Mat<f64>,
    z: &[f64],
    dim: usize,
    kernel: &ExpKernel,
) -> (f64, Vec<f64>) {
    let n = p.nrows();
    let lq = log_q(z, dim, kernel);
    let row = |i: usize| &z[i * dim..(i + 1) * dim];
    let mut h = 0.0;
    let mut g = Mat::<f64>::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            if j == i {
                continue;
            }
            let pij = p[(i, j)];
            if pij > 0.0 {
                h -= pij * lq[(i, j)];
            }
            g[(i, j)] = lq[(i, j)].exp() - pij;
        }
    }
    let mut grad = vec![0.0; n * dim];
    for i in 0..n {
        for j in (i + 1)..n {
            let r2 = sq_dist(row(i), row(j));
            let c = 2.0 * (g[(i, j)] + g[(j, i)]) * kernel.energy_slope(r2);
            if c == 0.0 {
                continue;
            }
            for t in 0..dim {
                let diff = z[i * dim + t] - z[j * dim + t];
                grad[i * dim + t] -= c * diff;
                grad[j * dim + t] += c * diff;
            }
        }
    }
    (h, grad)
}

/// The trace form's two terms for gamma = 2: ((2 / tau) tr(Z^T L(P_sym) Z), sum_i log R_i).
pub fn trace_form(p: &Mat<f64>, z: &[f64], dim: usize, tau: f64) -> (f64, f64) {
    let n = p.nrows();
    let psym = Mat::from_fn(n, n, |i, j| 0.5 * (p[(i, j)] + p[(j, i)]));
    let l = crate::laplacian::dense_laplacian(&psym);
    let zm = Mat::from_fn(n, dim, |i, t| z[i * dim + t]);
    let lz = &l * &zm;
    let mut tr = 0.0;
    for i in 0..n {
        for t in 0..dim {
            tr += zm[(i, t)] * lz[(i, t)];
        }
    }
    let kernel = ExpKernel { gamma: 2.0, tau };
    let row = |i: usize| &z[i * dim..(i + 1) * dim];
    let mut log_r = 0.0;
    for i in 0..n {
        let s: Vec<f64> = (0..n)
            .filter(|&k| k != i)
            .map(|k| -kernel.energy(sq_dist(row(i), row(k))))
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        log_r += m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    }
    (2.0 / tau * tr, log_r)
}

/// Draws one positive j ~ P_i for every node i (one sample W of P(W; pi)).
pub fn sample_positives(p: &Mat<f64>, rng: &mut impl Rng) -> Vec<usize> {
    let n = p.nrows();
    (0..n).map(|i| sample_row(p, i, rng)).collect()
}

/// Draws j ~ P_i.
pub fn sample_row(p: &Mat<f64>, i: usize, rng: &mut impl Rng) -> usize {
    let n = p.ncols();
    let mut u = rng.gen::<f64>();
    let mut last = i;
    for j in 0..n {
        let x = p[(i, j)];
        if x > 0.0 {
            last = j;
            if u < x {
                return j;
            }
            u -= x;
        }
    }
    last
}

/// Mean and standard error of a sample.
pub fn mean_and_standard_error(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// Monte Carlo estimate of H(pi, K_Z): the mean over `samples` draws W ~ P(W; pi) of
/// -log P(W; K_Z) = -sum_i log Q_{i, j(i)}, with its standard error.
pub fn monte_carlo_cross_entropy(
    p: &Mat<f64>,
    z: &[f64],
    dim: usize,
    kernel: &ExpKernel,
    samples: usize,
    seed: u64,
) -> (f64, f64) {
    let lq = log_q(z, dim, kernel);
    let mut rng = crate::rng::seeded(seed, 11);
    let values: Vec<f64> = (0..samples)
        .map(|_| {
            let w = sample_positives(p, &mut rng);
            -w.iter().enumerate().map(|(i, &j)| lq[(i, j)]).sum::<f64>()
        })
        .collect();
    mean_and_standard_error(&values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_graph() -> Graph {
        Graph::from_edges(
            4,
            &[
                (0, 1, 1.0),
                (0, 2, 2.0),
                (1, 2, 0.5),
                (2, 3, 3.0),
                (1, 3, 1.5),
            ],
        )
        .unwrap()
    }

    fn random_z(n: usize, dim: usize, seed: u64) -> Vec<f64> {
        let mut rng = crate::rng::seeded(seed, 0);
        crate::rng::normal_vec(&mut rng, n * dim, 1.0)
    }

    #[test]
    fn row_factorisation_by_enumeration() {
        let e = enumerate_unit_out_degree(&small_graph(), 10_000).unwrap();
        assert_eq!(e.subgraphs, 2 * 3 * 3 * 2);
        assert!(
            (e.partition_enumerated - e.partition_closed_form).abs()
                < 1e-9 * e.partition_closed_form
        );
        assert!(e.max_factorisation_error < 1e-12);
        assert!(e.max_marginal_error < 1e-12);
    }

    #[test]
    fn trace_form_equals_direct() {
        let p = transition_matrix(&small_graph()).unwrap();
        let z = random_z(4, 3, 1);
        let k = ExpKernel {
            gamma: 2.0,
            tau: 0.7,
        };
        let h = cross_entropy(&p, &z, 3, &k);
        let (tr, lr) = trace_form(&p, &z, 3, 0.7);
        assert!((h - (tr + lr)).abs() < 1e-9, "{h} vs {}", tr + lr);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let p = transition_matrix(&small_graph()).unwrap();
        for k in [
            ExpKernel {
                gamma: 2.0,
                tau: 0.7,
            },
            ExpKernel {
                gamma: 1.0,
                tau: 0.4,
            },
            ExpKernel {
                gamma: 0.5,
                tau: 1.0,
            },
        ] {
            let z = random_z(4, 2, 2);
            let (_, g) = cross_entropy_grad(&p, &z, 2, &k);
            for t in 0..z.len() {
                let h = 1e-6;
                let mut zp = z.clone();
                zp[t] += h;
                let mut zm = z.clone();
                zm[t] -= h;
                let fd =
                    (cross_entropy(&p, &zp, 2, &k) - cross_entropy(&p, &zm, 2, &k)) / (2.0 * h);
                assert!(
                    (fd - g[t]).abs() < 1e-6,
                    "{k:?} coord {t}: fd {fd} vs {}",
                    g[t]
                );
            }
        }
    }

    #[test]
    fn cross_entropy_is_at_least_row_entropy() {
        let p = transition_matrix(&small_graph()).unwrap();
        let k = ExpKernel::default();
        for seed in 0..5 {
            let z = random_z(4, 2, seed);
            assert!(cross_entropy(&p, &z, 2, &k) >= row_entropy(&p));
        }
    }

    #[test]
    fn monte_carlo_within_three_standard_errors() {
        let p = transition_matrix(&small_graph()).unwrap();
        let z = random_z(4, 2, 3);
        let k = ExpKernel::default();
        let h = cross_entropy(&p, &z, 2, &k);
        let (m, se) = monte_carlo_cross_entropy(&p, &z, 2, &k, 4000, 9);
        assert!((m - h).abs() < 3.0 * se, "{m} ± {se} vs {h}");
    }
}
