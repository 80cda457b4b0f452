//! Graph Laplacians of a weighted graph with adjacency A and degrees D = diag(A 1):
//! unnormalised L = D - A, symmetric normalised L_sym = I - D^{-1/2} A D^{-1/2},
//! random walk L_rw = I - D^{-1} A.

use crate::error::Result;
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
    indices: Vec<usize>,
    values: Vec<f64>,
    /// Added to the diagonal: the operator is D^{-1/2} A D^{-1/2} + shift I.
    pub shift: f64,
}

impl NormalizedAdjacency {
    /// Builds the operator; refuses isolated nodes.
    pub fn new(graph: &Graph, shift: f64) -> Result<Self> {
        graph.require_no_isolated()?;
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
            indices: graph.indices().to_vec(),
            values,
            shift,
        })
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// y_i = sum_j M_ij x_j + shift x_i for one vector.
    pub fn apply_vec(&self, x: &[f64], y: &mut [f64]) {
        use rayon::prelude::*;
        y.par_iter_mut()
            .enumerate()
            .with_min_len(1024)
            .for_each(|(i, yi)| {
                let mut s = self.shift * x[i];
                for k in self.indptr[i]..self.indptr[i + 1] {
                    s += self.values[k] * x[self.indices[k]];
                }
                *yi = s;
            });
    }
}

impl faer::matrix_free::LinOp<f64> for NormalizedAdjacency {
    fn apply_scratch(&self, _rhs_ncols: usize, _par: faer::Par) -> faer::dyn_stack::StackReq {
        faer::dyn_stack::StackReq::EMPTY
    }

    fn nrows(&self) -> usize {
        self.n
    }

    fn ncols(&self) -> usize {
        self.n
    }

    fn apply(
        &self,
        mut out: faer::MatMut<'_, f64>,
        rhs: faer::MatRef<'_, f64>,
        _par: faer::Par,
        _stack: &mut faer::dyn_stack::MemStack,
    ) {
        let mut x = vec![0.0; self.n];
        let mut y = vec![0.0; self.n];
        for c in 0..rhs.ncols() {
            for i in 0..self.n {
                x[i] = rhs[(i, c)];
            }
            self.apply_vec(&x, &mut y);
            for i in 0..self.n {
                out[(i, c)] = y[i];
            }
        }
    }

    fn conj_apply(
        &self,
        out: faer::MatMut<'_, f64>,
        rhs: faer::MatRef<'_, f64>,
        par: faer::Par,
        stack: &mut faer::dyn_stack::MemStack,
    ) {
        // Real symmetric: the conjugate is the operator itself.
        self.apply(out, rhs, par, stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectral::symmetric_eigen;

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
        let x: Vec<f64> = (0..6).map(|i| i as f64 - 2.0).collect();
        let mut y = vec![0.0; 6];
        op.apply_vec(&x, &mut y);
        for i in 0..6 {
            // D^-1/2 A D^-1/2 = I - L_sym.
            let expect: f64 = (0..6)
                .map(|j| ((i == j) as u8 as f64 - l[(i, j)]) * x[j])
                .sum::<f64>()
                + 0.5 * x[i];
            assert!((y[i] - expect).abs() < 1e-12);
        }
    }
}
