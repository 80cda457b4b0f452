//! Graph constructors: planted partitions (fixed weights), sampled stochastic block models,
//! k-nearest-neighbour graphs over data, augmentation graphs and bipartite pair graphs for CLIP.

use crate::error::{check_positive, check_probability, GraphError, Result};
use crate::graph::Graph;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A planted partition with *fixed* weights: pi_ij = p within a block, q across, 0 on the diagonal.
///
/// Not a sampled graph, so the closed forms of the `planted` experiment are exact.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PlantedConfig {
    /// Number of blocks K (default 4).
    pub blocks: usize,
    /// Nodes per block M (default 8).
    pub block_size: usize,
    /// Weight within a block, in [0, 1] (default 0.9).
    pub p: f64,
    /// Weight across blocks, in [0, 1] (default 0.1).
    pub q: f64,
}

impl Default for PlantedConfig {
    fn default() -> Self {
        Self {
            blocks: 4,
            block_size: 8,
            p: 0.9,
            q: 0.1,
        }
    }
}

impl PlantedConfig {
    /// Checks ranges: blocks >= 1, block_size >= 2 when q = 0, p, q in [0, 1], p > 0.
    pub fn validate(&self) -> Result<()> {
        check_probability("p", self.p)?;
        check_probability("q", self.q)?;
        if self.blocks == 0 {
            return Err(GraphError::param("blocks", 0, "at least 1 block"));
        }
        if self.block_size < 2 {
            return Err(GraphError::param(
                "block-size",
                self.block_size,
                "at least 2 nodes per block",
            ));
        }
        if self.p <= 0.0 {
            return Err(GraphError::param(
                "p",
                self.p,
                "p > 0 (blocks need internal edges)",
            ));
        }
        Ok(())
    }

    /// Block label of every node (node i is in block i / block_size).
    pub fn labels(&self) -> Vec<usize> {
        (0..self.blocks * self.block_size)
            .map(|i| i / self.block_size)
            .collect()
    }

    /// The weight graph pi.
    pub fn build(&self) -> Result<Graph> {
        self.validate()?;
        let n = self.blocks * self.block_size;
        let mut edges = Vec::new();
        for i in 0..n {
            for j in (i + 1)..n {
                let w = if i / self.block_size == j / self.block_size {
                    self.p
                } else {
                    self.q
                };
                if w > 0.0 {
                    edges.push((i, j, w));
                }
            }
        }
        Graph::from_edges(n, &edges)
    }
}

/// A connected random weighted graph: a ring through all nodes plus each other pair with
/// probability `p_edge`; weights uniform in [0.1, 1).
pub fn random_weighted_graph(n: usize, p_edge: f64, seed: u64) -> Result<Graph> {
    check_probability("p_edge", p_edge)?;
    if n < 3 {
        return Err(GraphError::param("nodes", n, "at least 3 nodes"));
    }
    let mut rng = crate::rng::seeded(seed, 5);
    let mut edges = Vec::new();
    for i in 0..n {
        for j in (i + 1)..n {
            let ring = j == i + 1 || (i == 0 && j == n - 1);
            if ring || rng.gen::<f64>() < p_edge {
                edges.push((i, j, 0.1 + 0.9 * rng.gen::<f64>()));
            }
        }
    }
    Graph::from_edges(n, &edges)
}

/// A sampled stochastic block model: each pair within a block is an edge with probability
/// `p_in`, each pair across blocks with probability `p_out`; weights 1.
///
/// Sampling skips geometrically over non-edges (Batagelj and Brandes), so the cost is
/// proportional to the number of edges: 100,000 nodes at average degree 40 take well under a second.
#[derive(Clone, Debug)]
pub struct SbmConfig {
    /// Number of blocks (default 4).
    pub blocks: usize,
    /// Nodes per block (default 50).
    pub block_size: usize,
    /// Edge probability within a block (default 0.3).
    pub p_in: f64,
    /// Edge probability across blocks (default 0.05).
    pub p_out: f64,
    /// Random seed (default 0).
    pub seed: u64,
}

impl Default for SbmConfig {
    fn default() -> Self {
        Self {
            blocks: 4,
            block_size: 50,
            p_in: 0.3,
            p_out: 0.05,
            seed: 0,
        }
    }
}

impl SbmConfig {
    /// The configuration with a given average degree and fraction of each node's edges across
    /// blocks (the scale benchmark's parametrisation).
    pub fn with_degree(
        blocks: usize,
        block_size: usize,
        degree: f64,
        across_fraction: f64,
        seed: u64,
    ) -> Self {
        let within_pairs = (block_size - 1) as f64;
        let across_pairs = ((blocks - 1) * block_size) as f64;
        Self {
            blocks,
            block_size,
            p_in: (degree * (1.0 - across_fraction) / within_pairs).min(1.0),
            p_out: if across_pairs > 0.0 {
                (degree * across_fraction / across_pairs).min(1.0)
            } else {
                0.0
            },
            seed,
        }
    }

    /// Block label of every node.
    pub fn labels(&self) -> Vec<usize> {
        (0..self.blocks * self.block_size)
            .map(|i| i / self.block_size)
            .collect()
    }

    /// Samples the graph.
    pub fn sample(&self) -> Result<Graph> {
        check_probability("p_in", self.p_in)?;
        check_probability("p_out", self.p_out)?;
        if self.blocks == 0 || self.block_size == 0 {
            return Err(GraphError::param(
                "blocks x block-size",
                self.blocks * self.block_size,
                "at least one node",
            ));
        }
        let m = self.block_size;
        let k = self.blocks;
        // Block pairs in parallel, each with its own seeded stream.
        let pairs: Vec<(usize, usize)> = (0..k).flat_map(|a| (a..k).map(move |b| (a, b))).collect();
        let parts: Vec<Vec<(usize, usize, f64)>> = pairs
            .par_iter()
            .enumerate()
            .map(|(idx, &(a, b))| {
                let mut rng = crate::rng::seeded(self.seed, idx as u64);
                let mut edges = Vec::new();
                if a == b {
                    sample_within(m, self.p_in, a * m, &mut rng, &mut edges);
                } else {
                    sample_across(m, m, self.p_out, a * m, b * m, &mut rng, &mut edges);
                }
                edges
            })
            .collect();
        let edges: Vec<_> = parts.into_iter().flatten().collect();
        Graph::from_edges(k * m, &edges)
    }
}

/// Number of failures before the next success of a Bernoulli(p) sequence.
fn geometric_skip(rng: &mut ChaCha8Rng, log_q: f64) -> usize {
    let u: f64 = 1.0 - rng.gen::<f64>(); // in (0, 1]
    (u.ln() / log_q).floor() as usize
}

fn sample_within(
    m: usize,
    p: f64,
    offset: usize,
    rng: &mut ChaCha8Rng,
    edges: &mut Vec<(usize, usize, f64)>,
) {
    if p <= 0.0 || m < 2 {
        return;
    }
    if p >= 1.0 {
        for i in 0..m {
            for j in (i + 1)..m {
                edges.push((offset + i, offset + j, 1.0));
            }
        }
        return;
    }
    let log_q = (1.0 - p).ln();
    // Pairs (v, w) with w < v, enumerated row by row (Batagelj-Brandes).
    let (mut v, mut w) = (1usize, 0usize);
    loop {
        w += geometric_skip(rng, log_q);
        while v < m && w >= v {
            w -= v;
            v += 1;
        }
        if v >= m {
            break;
        }
        edges.push((offset + w, offset + v, 1.0));
        w += 1;
    }
}

fn sample_across(
    ma: usize,
    mb: usize,
    p: f64,
    off_a: usize,
    off_b: usize,
    rng: &mut ChaCha8Rng,
    edges: &mut Vec<(usize, usize, f64)>,
) {
    if p <= 0.0 {
        return;
    }
    let total = ma * mb;
    if p >= 1.0 {
        for t in 0..total {
            edges.push((off_a + t / mb, off_b + t % mb, 1.0));
        }
        return;
    }
    let log_q = (1.0 - p).ln();
    let mut t = geometric_skip(rng, log_q);
    while t < total {
        edges.push((off_a + t / mb, off_b + t % mb, 1.0));
        t += 1 + geometric_skip(rng, log_q);
    }
}

/// How the weights of a k-nearest-neighbour graph are set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KnnWeight {
    /// Weight 1 on every kNN edge.
    Binary,
    /// Weight exp(-||x - y||^2 / bandwidth).
    Gaussian { bandwidth: f64 },
}

/// k-nearest-neighbour graph over the rows of `points` (n x dim, row-major), symmetrised:
/// i ~ j when j is among i's k nearest or i among j's (squared Euclidean distance, brute force).
pub fn knn_graph(
    points: &[f64],
    n: usize,
    dim: usize,
    k: usize,
    weight: KnnWeight,
) -> Result<Graph> {
    if points.len() != n * dim {
        return Err(GraphError::Shape {
            what: "kNN points",
            expected: format!("{n} x {dim} = {}", n * dim),
            got: points.len().to_string(),
        });
    }
    if k == 0 || k >= n {
        return Err(GraphError::param("k", k, format!("1 <= k < n = {n}")));
    }
    if let KnnWeight::Gaussian { bandwidth } = weight {
        check_positive("bandwidth", bandwidth)?;
    }
    let norms: Vec<f64> = (0..n)
        .map(|i| points[i * dim..(i + 1) * dim].iter().map(|x| x * x).sum())
        .collect();
    let neighbours: Vec<Vec<(usize, f64)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &points[i * dim..(i + 1) * dim];
            let mut d: Vec<(usize, f64)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let xj = &points[j * dim..(j + 1) * dim];
                    let dot: f64 = xi.iter().zip(xj).map(|(a, b)| a * b).sum();
                    (j, (norms[i] + norms[j] - 2.0 * dot).max(0.0))
                })
                .collect();
            d.select_nth_unstable_by(k - 1, |a, b| a.1.total_cmp(&b.1));
            d.truncate(k);
            d
        })
        .collect();
    let mut set = std::collections::HashMap::new();
    for (i, row) in neighbours.iter().enumerate() {
        for &(j, d2) in row {
            let key = (i.min(j), i.max(j));
            let w = match weight {
                KnnWeight::Binary => 1.0,
                KnnWeight::Gaussian { bandwidth } => (-d2 / bandwidth).exp(),
            };
            set.insert(key, w);
        }
    }
    let mut edges: Vec<(usize, usize, f64)> =
        set.into_iter().map(|((i, j), w)| (i, j, w)).collect();
    edges.sort_by_key(|e| (e.0, e.1));
    Graph::from_edges(n, &edges)
}

/// An augmentation graph: objects are views of base images; views of the same base are joined
/// with weight 1; two views of different bases whose augmentations coincide (probability
/// `p_coincide` per pair) are joined with the weak weight `weak_weight`.
#[derive(Clone, Debug)]
pub struct AugmentationConfig {
    /// Number of base images (default 8).
    pub bases: usize,
    /// Views per base image (default 4).
    pub views: usize,
    /// Probability that two views of different bases coincide (default 0.02).
    pub p_coincide: f64,
    /// Weight of a coincidence edge (default 0.2).
    pub weak_weight: f64,
    /// Random seed (default 0).
    pub seed: u64,
}

impl Default for AugmentationConfig {
    fn default() -> Self {
        Self {
            bases: 8,
            views: 4,
            p_coincide: 0.02,
            weak_weight: 0.2,
            seed: 0,
        }
    }
}

impl AugmentationConfig {
    /// Base image of every view.
    pub fn labels(&self) -> Vec<usize> {
        (0..self.bases * self.views)
            .map(|i| i / self.views)
            .collect()
    }

    /// Samples the graph.
    pub fn build(&self) -> Result<Graph> {
        check_probability("p_coincide", self.p_coincide)?;
        if !(self.weak_weight.is_finite() && self.weak_weight >= 0.0) {
            return Err(GraphError::param(
                "weak_weight",
                self.weak_weight,
                "a finite weight >= 0",
            ));
        }
        if self.views < 2 {
            return Err(GraphError::param(
                "views",
                self.views,
                "at least 2 views per base",
            ));
        }
        let n = self.bases * self.views;
        let mut rng = crate::rng::seeded(self.seed, 0);
        let mut edges = Vec::new();
        for i in 0..n {
            for j in (i + 1)..n {
                if i / self.views == j / self.views {
                    edges.push((i, j, 1.0));
                } else if rng.gen::<f64>() < self.p_coincide && self.weak_weight > 0.0 {
                    edges.push((i, j, self.weak_weight));
                }
            }
        }
        Graph::from_edges(n, &edges)
    }
}

/// A bipartite pair graph for CLIP: nodes 0..n_a are images, n_a..n_a + n_b texts; pair
/// weights join images to texts only. LaCLIP-style rewrites add, for every text, `rewrites`
/// further text nodes joined to the same images with the same weights.
#[derive(Clone, Debug)]
pub struct PairGraph {
    /// The bipartite graph over n_a + n_b_total nodes.
    pub graph: Graph,
    /// Number of image nodes (first block of indices).
    pub n_a: usize,
    /// Number of text nodes including rewrites.
    pub n_b: usize,
}

impl PairGraph {
    /// Builds the pair graph from `(image, text, weight)` pairs.
    pub fn new(
        n_a: usize,
        n_b: usize,
        pairs: &[(usize, usize, f64)],
        rewrites: usize,
    ) -> Result<Self> {
        let total_b = n_b * (1 + rewrites);
        let mut edges = Vec::with_capacity(pairs.len() * (1 + rewrites));
        for &(a, b, w) in pairs {
            if a >= n_a || b >= n_b {
                return Err(GraphError::NodeOutOfRange {
                    i: a,
                    j: b,
                    n: n_a.max(n_b),
                });
            }
            for r in 0..=rewrites {
                edges.push((a, n_a + r * n_b + b, w));
            }
        }
        Ok(PairGraph {
            graph: Graph::from_edges(n_a + total_b, &edges)?,
            n_a,
            n_b: total_b,
        })
    }

    /// The dense n_a x n_b block of pair weights.
    pub fn cross_weights(&self) -> Vec<f64> {
        let mut w = vec![0.0; self.n_a * self.n_b];
        for a in 0..self.n_a {
            for (j, x) in self.graph.neighbors(a) {
                w[a * self.n_b + (j - self.n_a)] = x;
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_weights_are_exact() {
        let cfg = PlantedConfig {
            blocks: 2,
            block_size: 3,
            p: 0.5,
            q: 0.25,
        };
        let g = cfg.build().unwrap();
        let w = g.to_dense();
        assert_eq!(w[(0, 1)], 0.5);
        assert_eq!(w[(0, 3)], 0.25);
        assert_eq!(w[(0, 0)], 0.0);
        assert_eq!(g.degrees()[0], 2.0 * 0.5 + 3.0 * 0.25);
        let e = PlantedConfig { q: 1.5, ..cfg }
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`q` = 1.5") && e.contains("[0, 1]"), "{e}");
    }

    #[test]
    fn sbm_edge_counts_match_their_expectation() {
        let cfg = SbmConfig {
            blocks: 4,
            block_size: 200,
            p_in: 0.1,
            p_out: 0.01,
            seed: 3,
        };
        let g = cfg.sample().unwrap();
        let labels = cfg.labels();
        let (mut within, mut across) = (0usize, 0usize);
        for i in 0..g.n_nodes() {
            for (j, _) in g.neighbors(i) {
                if j > i {
                    if labels[i] == labels[j] {
                        within += 1
                    } else {
                        across += 1
                    }
                }
            }
        }
        let e_within = 4.0 * (200.0 * 199.0 / 2.0) * 0.1; // 7960
        let e_across = 6.0 * 200.0 * 200.0 * 0.01; // 2400
                                                   // Binomial standard deviations are about 85 and 49; allow 4 of them.
        assert!(
            (within as f64 - e_within).abs() < 4.0 * (e_within * 0.9f64).sqrt(),
            "{within}"
        );
        assert!(
            (across as f64 - e_across).abs() < 4.0 * (e_across * 0.99f64).sqrt(),
            "{across}"
        );
        assert_eq!(cfg.sample().unwrap(), g, "same seed, same graph");
    }

    #[test]
    fn knn_graph_joins_the_nearest_points() {
        // Two clusters on a line: {0, 0.1, 0.2} and {10, 10.1, 10.2}.
        let pts = [0.0, 0.1, 0.2, 10.0, 10.1, 10.2];
        let g = knn_graph(&pts, 6, 1, 2, KnnWeight::Binary).unwrap();
        assert_eq!(g.components().0, 2);
        assert!(knn_graph(&pts, 6, 1, 6, KnnWeight::Binary).is_err());
    }

    #[test]
    fn pair_graph_with_rewrites() {
        let pg = PairGraph::new(2, 2, &[(0, 0, 1.0), (1, 1, 2.0)], 1).unwrap();
        assert_eq!(pg.n_b, 4);
        assert_eq!(pg.graph.degrees(), vec![2.0, 4.0, 1.0, 2.0, 1.0, 2.0]);
        assert_eq!(
            pg.cross_weights(),
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 2.0]
        );
    }
}
