//! Graph Laplacians of a weighted graph with adjacency A and degrees D = diag(A 1):
//! unnormalised L = D - A, symmetric normalised L_sym = I - D^{-1/2} A D^{-1/2},
//! random walk L_rw = I - D^{-1} A.

use crate::error::{GraphError, Result};
use crate::graph::Graph;
use faer::Mat;

/// Which Laplacian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaplacianKind {
    /// L = D - A.
    Unnormalized,
    /// L_sym = I - D^{-1/2} A D^{-1/2}.
    Symmetric,
    /// L_rw = I - D^{-1} A (not symmetric).
    RandomWalk,
}

/// The dense Laplacian of `graph`. The normalised forms need every degree > 0.
///
/// # Shapes
/// Returns n x n.
pub fn laplacian(graph: &Graph, kind: LaplacianKind) -> Result<Mat<f64>> {
    let n = graph.n_nodes();
    let d = graph.degrees();
    if kind != LaplacianKind::Unnormalized {
        graph.require_no_isolated()?;
    }
    let mut l = Mat::zeros(n, n);
    for i in 0..n {
        l[(i, i)] = match kind {
            LaplacianKind::Unnormalized => d[i],
            _ => 1.0,
        };
        for (j, w) in graph.neighbors(i) {
            l[(i, j)] -= match kind {
                LaplacianKind::Unnormalized => w,
                LaplacianKind::Symmetric => w / (d[i] * d[j]).sqrt(),
                LaplacianKind::RandomWalk => w / d[i],
            };
        }
    }
    Ok(l)
}

/// The Laplacian of a dense symmetric weight matrix: L(A) = diag(A 1) - A.
pub fn dense_laplacian(a: &Mat<f64>) -> Mat<f64> {
    let n = a.nrows();
    let mut l = Mat::zeros(n, n);
    for i in 0..n {
        let mut d = 0.0;
        for j in 0..n {
            d += a[(i, j)];
            l[(i, j)] = -a[(i, j)];
        }
        l[(i, i)] += d;
    }
    l
}

/// The normalised adjacency D^{-1/2} A D^{-1/2} applied matrix-free, as a CSR copy.
#[derive(Clone, Debug)]
pub struct NormalizedAdjacency {
    n: usize,
    indptr: Vec<usize>,
    /// Column indices as u32: the sparse product streams them once per product.
    indices: Vec<u32>,
    values: Vec<f64>,
    /// Added to the diagonal: the operator is D^{-1/2} A D^{-1/2} + shift I.
    pub shift: f64,
}

impl NormalizedAdjacency {
    /// Builds the operator; refuses isolated nodes.
    pub fn new(graph: &Graph, shift: f64) -> Result<Self> {
        graph.require_no_isolated()?;
        if u32::try_from(graph.n_nodes()).is_err() {
            return Err(GraphError::Parameter {
                name: "nodes",
                value: graph.n_nodes().to_string(),
                expected: "fewer than 2^32 nodes for the sparse operator".into(),
            });
        }
        let d = graph.degrees();
        let inv_sqrt: Vec<f64> = d.iter().map(|x| 1.0 / x.sqrt()).collect();
        let mut values = Vec::with_capacity(graph.weights().len());
        for i in 0..graph.n_nodes() {
            for (j, w) in graph.neighbors(i) {
                values.push(w * inv_sqrt[i] * inv_sqrt[j]);
            }
        }
        Ok(Self {
            n: graph.n_nodes(),
            indptr: graph.indptr().to_vec(),
            indices: graph
                .indices()
                .iter()
                .map(|&j| j as u32) // checked above
                .collect(),
            values,
            shift,
        })
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// For a block of m vectors stored row-major (row i = the m values at node i):
    /// out <- alpha (M + shift I) x + beta x + gamma out, row by row (so out may hold the
    /// previous term of a three-term recurrence). One pass over the edges serves all m vectors.
    ///
    /// # Shapes
    /// `x`, `out`: n * m, row-major.
    pub fn apply_block(&self, x: &[f64], out: &mut [f64], m: usize, coef: BlockCoefficients) {
        use rayon::prelude::*;
        assert_eq!(x.len(), self.n * m, "apply_block: x is not n x m");
        assert_eq!(out.len(), self.n * m, "apply_block: out is not n x m");
        let BlockCoefficients { alpha, beta, gamma } = coef;
        let diag = alpha * self.shift + beta;
        out.par_chunks_mut(m)
            .enumerate()
            .with_min_len(256)
            .for_each_init(
                || vec![0.0; m],
                |acc, (i, row)| {
                    let edges = self.indptr[i]..self.indptr[i + 1];
                    gather_row(&self.indices[edges.clone()], &self.values[edges], x, acc);
                    let xi = &x[i * m..(i + 1) * m];
                    if gamma == 0.0 {
                        for ((r, a), xv) in row.iter_mut().zip(acc.iter()).zip(xi) {
                            *r = alpha * a + diag * xv;
                        }
                    } else {
                        for ((r, a), xv) in row.iter_mut().zip(acc.iter()).zip(xi) {
                            *r = alpha * a + diag * xv + gamma * *r;
                        }
                    }
                },
            );
    }
}

/// acc = sum_k weights[k] x[cols[k], ..] for a row-major block x with acc.len() columns. The
/// common widths 8 and 16 accumulate in a fixed-size array the compiler keeps in vector
/// registers; this loop is the whole cost of the sparse eigensolver.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn gather_row(cols: &[u32], weights: &[f64], x: &[f64], acc: &mut [f64]) {
    #[inline(always)]
    fn fixed<const M: usize>(cols: &[u32], weights: &[f64], x: &[f64], acc: &mut [f64]) {
        let mut sum = [0.0; M];
        for (&j, &w) in cols.iter().zip(weights) {
            let j = j as usize;
            let xj: &[f64; M] = x[j * M..(j + 1) * M].try_into().unwrap();
            for l in 0..M {
                sum[l] += w * xj[l];
            }
        }
        acc.copy_from_slice(&sum);
    }
    let m = acc.len();
    match m {
        8 => fixed::<8>(cols, weights, x, acc),
        16 => fixed::<16>(cols, weights, x, acc),
        _ => {
            acc.fill(0.0);
            for (&j, &w) in cols.iter().zip(weights) {
                let j = j as usize;
                for (a, xv) in acc.iter_mut().zip(&x[j * m..(j + 1) * m]) {
                    *a += w * xv;
                }
            }
        }
    }
}

/// The coefficients of [`NormalizedAdjacency::apply_block`]:
/// out <- alpha (M + shift I) x + beta x + gamma out.
#[derive(Clone, Copy, Debug)]
pub struct BlockCoefficients {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

impl BlockCoefficients {
    /// out <- (M + shift I) x.
    pub const PRODUCT: Self = Self {
        alpha: 1.0,
        beta: 0.0,
        gamma: 0.0,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eigen::symmetric_eigen;

    fn two_triangles() -> Graph {
        Graph::from_edges(
            6,
            &[
                (0, 1, 1.0),
                (1, 2, 2.0),
                (0, 2, 0.5),
                (3, 4, 1.0),
                (4, 5, 1.0),
                (3, 5, 3.0),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_sum_to_zero_and_spectrum_is_psd() {
        let g = two_triangles();
        for kind in [LaplacianKind::Unnormalized, LaplacianKind::RandomWalk] {
            let l = laplacian(&g, kind).unwrap();
            for i in 0..6 {
                let s: f64 = (0..6).map(|j| l[(i, j)]).sum();
                assert!(s.abs() < 1e-12, "{kind:?} row {i} sums to {s}");
            }
        }
        for kind in [LaplacianKind::Unnormalized, LaplacianKind::Symmetric] {
            let l = laplacian(&g, kind).unwrap();
            let (vals, _) = symmetric_eigen(&l).unwrap();
            assert!(vals[0] > -1e-12, "{kind:?} smallest eigenvalue {}", vals[0]);
            // Multiplicity of eigenvalue 0 = number of connected components (2).
            let zeros = vals.iter().filter(|v| v.abs() < 1e-10).count();
            assert_eq!(zeros, 2, "{kind:?}: {vals:?}");
        }
    }

    #[test]
    fn symmetric_laplacian_has_sqrt_degree_null_vector() {
        let g = Graph::from_edges(3, &[(0, 1, 1.0), (1, 2, 2.0)]).unwrap();
        let l = laplacian(&g, LaplacianKind::Symmetric).unwrap();
        let d = g.degrees();
        for i in 0..3 {
            let s: f64 = (0..3).map(|j| l[(i, j)] * d[j].sqrt()).sum();
            assert!(s.abs() < 1e-12);
        }
        // Unnormalised Laplacian of a path 0 -1- 1 -2- 2 by hand.
        let l = laplacian(&g, LaplacianKind::Unnormalized).unwrap();
        assert_eq!(l[(1, 1)], 3.0);
        assert_eq!(l[(1, 2)], -2.0);
        assert_eq!(l[(0, 2)], 0.0);
    }

    #[test]
    fn normalized_operator_matches_dense() {
        let g = two_triangles();
        let op = NormalizedAdjacency::new(&g, 0.5).unwrap();
        let l = laplacian(&g, LaplacianKind::Symmetric).unwrap();
        // Two vectors, row-major; `out` starts as a previous recurrence term.
        let m = 2;
        let x: Vec<f64> = (0..6 * m).map(|v| v as f64 * 0.3 - 1.5).collect();
        let before: Vec<f64> = (0..6 * m).map(|v| (v % 5) as f64).collect();
        let mut out = before.clone();
        let coef = BlockCoefficients {
            alpha: 2.0,
            beta: -0.25,
            gamma: -1.0,
        };
        op.apply_block(&x, &mut out, m, coef);
        for i in 0..6 {
            for c in 0..m {
                // D^-1/2 A D^-1/2 = I - L_sym.
                let mx: f64 = (0..6)
                    .map(|j| ((i == j) as u8 as f64 - l[(i, j)]) * x[j * m + c])
                    .sum::<f64>()
                    + 0.5 * x[i * m + c];
                let expect = 2.0 * mx - 0.25 * x[i * m + c] - before[i * m + c];
                assert!((out[i * m + c] - expect).abs() < 1e-12);
            }
        }
    }
}
