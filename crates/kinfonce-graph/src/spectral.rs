//! Spectral embeddings: the eigenvectors of the k smallest eigenvalues of L_sym, equivalently
//! the k largest of the normalised adjacency D^{-1/2} A D^{-1/2}.
//!
//! Dense (faer's self-adjoint eigendecomposition, [`crate::eigen`]) up to [`DENSE_LIMIT`] nodes; above it
//! matrix-free Chebyshev-filtered subspace iteration on D^{-1/2} A D^{-1/2}
//! ([`crate::subspace`]).

use crate::eigen::symmetric_eigen;
use crate::error::{GraphError, Result};
use crate::graph::Graph;
use crate::kmeans::{kmeans, KMeansConfig};
use crate::laplacian::{laplacian, LaplacianKind, NormalizedAdjacency};
use crate::subspace::{top_eigenpairs, SubspaceConfig};
use faer::Mat;

/// Largest n for which the dense solver is used.
pub const DENSE_LIMIT: usize = 5000;

/// A spectral embedding: n x k eigenvectors with their L_sym eigenvalues (ascending).
#[derive(Clone, Debug)]
pub struct SpectralEmbedding {
    /// Eigenvalues of L_sym, ascending (k of them).
    pub eigenvalues: Vec<f64>,
    /// n x k, column c the eigenvector of `eigenvalues[c]`.
    pub vectors: Mat<f64>,
}

/// Refuses k = 0, k > n, and graphs with more connected components than k: L_sym has one
/// eigenvalue 0 per component, so with fewer eigenvectors than components the k smallest
/// eigenvectors are not determined (any k of the components' indicator directions would do).
fn check_spectral_input(graph: &Graph, k: usize) -> Result<()> {
    let n = graph.n_nodes();
    if k == 0 || k > n {
        return Err(GraphError::TooManyClusters {
            clusters: k,
            points: n,
        });
    }
    let (components, _) = graph.components();
    if components > k {
        return Err(GraphError::Disconnected {
            components,
            what: "a spectral embedding with fewer eigenvectors than components",
        });
    }
    Ok(())
}

/// The k eigenvectors of L_sym with the smallest eigenvalues.
///
/// # Shapes
/// Returns `vectors`: n x k.
pub fn spectral_embedding(graph: &Graph, k: usize) -> Result<SpectralEmbedding> {
    let n = graph.n_nodes();
    check_spectral_input(graph, k)?;
    if n <= DENSE_LIMIT {
        let l = laplacian(graph, LaplacianKind::Symmetric)?;
        let (vals, vecs) = symmetric_eigen(&l)?;
        return Ok(SpectralEmbedding {
            eigenvalues: vals[..k].to_vec(),
            vectors: Mat::from_fn(n, k, |i, j| vecs[(i, j)]),
        });
    }
    sparse_spectral_embedding(graph, k, 1e-10)
}

/// Matrix-free spectral embedding: the k largest eigenpairs of D^{-1/2} A D^{-1/2} by
/// Chebyshev-filtered subspace iteration ([`crate::subspace`]), stopped when every residual
/// ||M v - theta v|| is below `tolerance`.
pub fn sparse_spectral_embedding(
    graph: &Graph,
    k: usize,
    tolerance: f64,
) -> Result<SpectralEmbedding> {
    check_spectral_input(graph, k)?;
    let op = NormalizedAdjacency::new(graph, 0.0)?;
    let cfg = SubspaceConfig {
        tolerance,
        ..Default::default()
    };
    let top = top_eigenpairs(&op, k, &cfg)?;
    // L_sym = I - M: ascending L_sym eigenvalues = descending M eigenvalues.
    Ok(SpectralEmbedding {
        eigenvalues: top.values.iter().map(|v| 1.0 - v).collect(),
        vectors: top.vectors,
    })
}

/// Rows of the n x k matrix scaled to unit length (Ng, Jordan, Weiss), row-major.
pub(crate) fn normalised_rows(v: &Mat<f64>) -> Vec<f64> {
    let (n, k) = (v.nrows(), v.ncols());
    let mut rows = vec![0.0; n * k];
    for i in 0..n {
        let norm: f64 = (0..k)
            .map(|c| v[(i, c)].powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-300);
        for c in 0..k {
            rows[i * k + c] = v[(i, c)] / norm;
        }
    }
    rows
}

/// Normalised spectral clustering (Ng, Jordan, Weiss): the k smallest eigenvectors of L_sym,
/// rows scaled to unit length, k-means++ with `seed`.
pub fn spectral_clustering(graph: &Graph, k: usize, seed: u64) -> Result<Vec<usize>> {
    let emb = spectral_embedding(graph, k)?;
    let n = graph.n_nodes();
    let rows = normalised_rows(&emb.vectors);
    Ok(kmeans(
        &rows,
        n,
        k,
        &KMeansConfig {
            clusters: k,
            seed,
            ..Default::default()
        },
    )?
    .labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generators::SbmConfig;
    use crate::metrics::adjusted_rand_index;

    #[test]
    fn spectral_clustering_recovers_sbm_blocks() {
        let cfg = SbmConfig {
            blocks: 3,
            block_size: 40,
            p_in: 0.5,
            p_out: 0.02,
            seed: 1,
        };
        let g = cfg.sample().unwrap();
        let labels = spectral_clustering(&g, 3, 0).unwrap();
        assert_eq!(adjusted_rand_index(&labels, &cfg.labels()).unwrap(), 1.0);
    }

    #[test]
    fn sparse_solver_agrees_with_dense() {
        let cfg = SbmConfig {
            blocks: 3,
            block_size: 60,
            p_in: 0.3,
            p_out: 0.02,
            seed: 2,
        };
        let g = cfg.sample().unwrap();
        let dense = spectral_embedding(&g, 3).unwrap();
        let sparse = sparse_spectral_embedding(&g, 3, 1e-12).unwrap();
        for c in 0..3 {
            assert!(
                (dense.eigenvalues[c] - sparse.eigenvalues[c]).abs() < 1e-8,
                "{:?} {:?}",
                dense.eigenvalues,
                sparse.eigenvalues
            );
        }
        // Same subspace: all principal angles ~ 0.
        let angles = crate::metrics::principal_angles(&dense.vectors, &sparse.vectors).unwrap();
        assert!(angles.iter().all(|a| *a < 1e-6), "{angles:?}");
    }

    #[test]
    fn bad_spectral_inputs_get_clear_errors() {
        // Two triangles: two components.
        let g = Graph::from_edges(
            6,
            &[
                (0, 1, 1.0),
                (1, 2, 1.0),
                (0, 2, 1.0),
                (3, 4, 1.0),
                (4, 5, 1.0),
                (3, 5, 1.0),
            ],
        )
        .unwrap();
        let e = spectral_embedding(&g, 1).unwrap_err().to_string();
        assert_eq!(e, "graph is disconnected (2 connected components) but a spectral embedding with fewer eigenvectors than components assumes a connected graph");
        let e = sparse_spectral_embedding(&g, 1, 1e-8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 connected components"), "{e}");
        // k = 2 is fine and separates the triangles.
        let labels = spectral_clustering(&g, 2, 0).unwrap();
        assert_eq!(
            adjusted_rand_index(&labels, &[0, 0, 0, 1, 1, 1]).unwrap(),
            1.0
        );
        let e = spectral_clustering(&g, 7, 0).unwrap_err().to_string();
        assert_eq!(e, "asked for 7 clusters but there are only 6 points");
    }

    #[test]
    fn sbm_probabilities_outside_unit_interval_are_refused() {
        for (p_in, p_out, name) in [(1.2, 0.1, "p_in"), (0.5, -0.1, "p_out")] {
            let e = SbmConfig {
                p_in,
                p_out,
                ..Default::default()
            }
            .sample()
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("`{name}`")) && e.contains("a probability in [0, 1]"),
                "{e}"
            );
        }
    }
}
