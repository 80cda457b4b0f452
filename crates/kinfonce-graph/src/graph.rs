//! Weighted undirected similarity graphs pi over n objects, stored as CSR (compressed sparse rows).
//!
//! pi is symmetric with non-negative weights; pi_ij is the similarity of objects i and j. The
//! paper's similarity graph has no self-loops (pi_ii = 0), which every constructor here enforces.

use crate::error::{GraphError, Result};
use faer::Mat;

/// A symmetric, non-negatively weighted graph in CSR form (both directions of each edge stored).
///
/// # Shapes
/// `indptr`: n + 1; `indices`, `weights`: number of stored entries (2 x number of edges).
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    n: usize,
    indptr: Vec<usize>,
    indices: Vec<usize>,
    weights: Vec<f64>,
}

impl Graph {
    /// Builds a graph from undirected edges `(i, j, w)`; each edge is stored in both directions,
    /// duplicate edges add up. Refuses negative or non-finite weights, self-loops and indices
    /// outside `0..n`. Zero weights are dropped.
    pub fn from_edges(n: usize, edges: &[(usize, usize, f64)]) -> Result<Self> {
        for &(i, j, w) in edges {
            if i >= n || j >= n {
                return Err(GraphError::NodeOutOfRange { i, j, n });
            }
            if !(w.is_finite() && w >= 0.0) {
                return Err(GraphError::NegativeWeight { i, j, weight: w });
            }
            if i == j {
                return Err(GraphError::SelfLoop { node: i });
            }
        }
        let mut counts = vec![0usize; n + 1];
        for &(i, j, w) in edges {
            if w > 0.0 {
                counts[i + 1] += 1;
                counts[j + 1] += 1;
            }
        }
        for k in 0..n {
            counts[k + 1] += counts[k];
        }
        let nnz = counts[n];
        let mut fill = counts.clone();
        let mut indices = vec![0usize; nnz];
        let mut weights = vec![0f64; nnz];
        for &(i, j, w) in edges {
            if w > 0.0 {
                indices[fill[i]] = j;
                weights[fill[i]] = w;
                fill[i] += 1;
                indices[fill[j]] = i;
                weights[fill[j]] = w;
                fill[j] += 1;
            }
        }
        // Sort each row by column and merge duplicates.
        let mut out_ptr = vec![0usize; n + 1];
        let mut out_idx = Vec::with_capacity(nnz);
        let mut out_w = Vec::with_capacity(nnz);
        let mut row: Vec<(usize, f64)> = Vec::new();
        for i in 0..n {
            row.clear();
            row.extend((counts[i]..counts[i + 1]).map(|k| (indices[k], weights[k])));
            row.sort_unstable_by_key(|e| e.0);
            for &(j, w) in &row {
                if out_idx.len() > out_ptr[i] && *out_idx.last().unwrap() == j {
                    *out_w.last_mut().unwrap() += w;
                } else {
                    out_idx.push(j);
                    out_w.push(w);
                }
            }
            out_ptr[i + 1] = out_idx.len();
        }
        Ok(Graph {
            n,
            indptr: out_ptr,
            indices: out_idx,
            weights: out_w,
        })
    }

    /// Builds a graph from a dense symmetric weight matrix with zero diagonal.
    pub fn from_dense(w: &Mat<f64>) -> Result<Self> {
        let n = w.nrows();
        if w.ncols() != n {
            return Err(GraphError::Shape {
                what: "dense weight matrix",
                expected: format!("{n} x {n}"),
                got: format!("{} x {}", n, w.ncols()),
            });
        }
        let mut edges = Vec::new();
        for i in 0..n {
            if w[(i, i)] != 0.0 {
                return Err(GraphError::SelfLoop { node: i });
            }
            for j in (i + 1)..n {
                let (a, b) = (w[(i, j)], w[(j, i)]);
                if (a - b).abs() > 1e-12 * a.abs().max(b.abs()).max(1.0) {
                    return Err(GraphError::NotSymmetric {
                        i,
                        j,
                        wij: a,
                        wji: b,
                    });
                }
                if a != 0.0 {
                    edges.push((i, j, a));
                }
            }
        }
        Graph::from_edges(n, &edges)
    }

    /// Number of nodes n.
    pub fn n_nodes(&self) -> usize {
        self.n
    }

    /// Number of undirected edges.
    pub fn n_edges(&self) -> usize {
        self.indices.len() / 2
    }

    /// Neighbours of node `i` with their weights.
    pub fn neighbors(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.indptr[i]..self.indptr[i + 1];
        self.indices[range.clone()]
            .iter()
            .copied()
            .zip(self.weights[range].iter().copied())
    }

    /// CSR row pointer (length n + 1).
    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }

    /// CSR column indices.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// CSR weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Weighted degrees d_i = sum_j pi_ij.
    pub fn degrees(&self) -> Vec<f64> {
        (0..self.n)
            .map(|i| self.neighbors(i).map(|(_, w)| w).sum())
            .collect()
    }

    /// Sum of all weights sum_ij pi_ij (each undirected edge counted twice).
    pub fn volume(&self) -> f64 {
        self.weights.iter().sum()
    }

    /// The dense weight matrix pi.
    pub fn to_dense(&self) -> Mat<f64> {
        let mut w = Mat::zeros(self.n, self.n);
        for i in 0..self.n {
            for (j, x) in self.neighbors(i) {
                w[(i, j)] = x;
            }
        }
        w
    }

    /// Connected components: (count, label of each node in 0..count), by breadth-first search.
    pub fn components(&self) -> (usize, Vec<usize>) {
        let mut label = vec![usize::MAX; self.n];
        let mut count = 0;
        let mut queue = std::collections::VecDeque::new();
        for s in 0..self.n {
            if label[s] != usize::MAX {
                continue;
            }
            label[s] = count;
            queue.push_back(s);
            while let Some(u) = queue.pop_front() {
                for (v, _) in self.neighbors(u) {
                    if label[v] == usize::MAX {
                        label[v] = count;
                        queue.push_back(v);
                    }
                }
            }
            count += 1;
        }
        (count, label)
    }

    /// Refuses a disconnected graph where `what` assumes connectivity.
    pub fn require_connected(&self, what: &'static str) -> Result<()> {
        let (components, _) = self.components();
        if components != 1 {
            return Err(GraphError::Disconnected { components, what });
        }
        Ok(())
    }

    /// Refuses a node of degree 0 (its row of P would be undefined).
    pub fn require_no_isolated(&self) -> Result<()> {
        match self.degrees().iter().position(|&d| d <= 0.0) {
            Some(node) => Err(GraphError::IsolatedNode { node }),
            None => Ok(()),
        }
    }

    /// y = A x for the weighted adjacency A, x and y of length n.
    pub fn matvec(&self, x: &[f64], y: &mut [f64]) {
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = self.neighbors(i).map(|(j, w)| w * x[j]).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_edges_add_and_rows_are_sorted() {
        let g = Graph::from_edges(3, &[(0, 2, 1.0), (0, 1, 2.0), (2, 0, 0.5)]).unwrap();
        assert_eq!(g.n_edges(), 2);
        let row0: Vec<_> = g.neighbors(0).collect();
        assert_eq!(row0, vec![(1, 2.0), (2, 1.5)]);
        assert_eq!(g.degrees(), vec![3.5, 2.0, 1.5]);
        assert_eq!(Graph::from_dense(&g.to_dense()).unwrap(), g);
    }

    #[test]
    fn bad_edges_get_errors_naming_them() {
        let e = Graph::from_edges(3, &[(0, 1, -1.0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("(0, 1)") && e.contains(">= 0"), "{e}");
        let e = Graph::from_edges(3, &[(1, 1, 1.0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("self-loop at node 1"), "{e}");
        let e = Graph::from_edges(3, &[(0, 3, 1.0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside 0..3"), "{e}");
    }

    #[test]
    fn components_and_connectivity() {
        let g = Graph::from_edges(5, &[(0, 1, 1.0), (1, 2, 1.0), (3, 4, 1.0)]).unwrap();
        let (c, labels) = g.components();
        assert_eq!(c, 2);
        assert_eq!(labels, vec![0, 0, 0, 1, 1]);
        let e = g
            .require_connected("spectral embedding")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2 connected components") && e.contains("spectral embedding"),
            "{e}"
        );
    }
}
