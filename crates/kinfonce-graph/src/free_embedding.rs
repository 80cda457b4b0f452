//! InfoNCE on free node embeddings: each node i of the graph owns a learnable vector z_i;
//! positives are sampled from the graph (j ~ P_i), the loss and its gradients come from the
//! product's loss crate (`kinfonce_loss::infonce`), so the lab exercises the same code as training.
//!
//! Full softmax: anchors = all nodes, candidates = all nodes, the self-pair excluded; its
//! expectation over sampled positives is H(pi, K_Z) / n. Mini-batch: anchors = B nodes drawn
//! without replacement, candidates = the anchors and their positives (SimCLR-style in-batch
//! negatives).

use crate::error::{GraphError, Result};
use crate::graph::Graph;
use crate::kernel::ExpKernel;
use crate::mrf::sample_row;
use crate::optim::{cosine_lr, Adam, RowAdam};
use faer::Mat;
use rand::seq::index::sample;

fn loss_kernel(k: &ExpKernel) -> kinfonce_loss::Kernel {
    kinfonce_loss::Kernel::exp(k.gamma, k.tau)
}

/// One InfoNCE evaluation on rows of `z` (n x dim, row-major): anchors `anchors[a]`, candidates
/// `candidates[c]`, anchor a's positive at candidate position `positives[a]`, optionally one
/// excluded candidate position per anchor. Returns the loss (mean over anchors) and dL/dz
/// scattered back onto the n x dim embedding.
pub fn infonce_on_nodes(
    kernel: &ExpKernel,
    z: &[f64],
    dim: usize,
    anchors: &[usize],
    candidates: &[usize],
    positives: &[usize],
    exclude: Option<&[usize]>,
) -> Result<(f64, Vec<f64>)> {
    let gather = |idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| z[i * dim..(i + 1) * dim].iter().copied())
            .collect()
    };
    let a = gather(anchors);
    let c = gather(candidates);
    let err = |e: kinfonce_loss::LossError| GraphError::Loss(e.to_string());
    let a_ref = kinfonce_loss::MatRef::new(&a, anchors.len(), dim).map_err(err)?;
    let c_ref = kinfonce_loss::MatRef::new(&c, candidates.len(), dim).map_err(err)?;
    let out = kinfonce_loss::infonce(
        &loss_kernel(kernel),
        a_ref,
        c_ref,
        kinfonce_loss::Positives::Index(positives),
        exclude,
    )
    .map_err(err)?;
    let mut grad = vec![0.0; z.len()];
    for (r, &i) in anchors.iter().enumerate() {
        for t in 0..dim {
            grad[i * dim + t] += out.anchors.data[r * dim + t];
        }
    }
    for (r, &i) in candidates.iter().enumerate() {
        for t in 0..dim {
            grad[i * dim + t] += out.candidates.data[r * dim + t];
        }
    }
    Ok((out.loss, grad))
}

/// Full-softmax InfoNCE with positives `pos[i] ~ P_i`: anchors and candidates are all nodes, the
/// self-pair excluded. Its expectation over the positives is H(pi, K_Z) / n.
pub fn full_softmax_infonce(
    kernel: &ExpKernel,
    z: &[f64],
    dim: usize,
    pos: &[usize],
) -> Result<(f64, Vec<f64>)> {
    let n = z.len() / dim;
    let all: Vec<usize> = (0..n).collect();
    infonce_on_nodes(kernel, z, dim, &all, &all, pos, Some(&all))
}

/// A mini-batch: B anchors drawn without replacement, each with a positive j ~ P_i; candidates
/// are the distinct nodes among anchors and positives, the anchor itself excluded.
#[derive(Clone, Debug)]
pub struct MiniBatch {
    /// Anchor nodes.
    pub anchors: Vec<usize>,
    /// Candidate nodes (distinct).
    pub candidates: Vec<usize>,
    /// Position of each anchor's positive in `candidates`.
    pub positives: Vec<usize>,
    /// Position of each anchor in `candidates`.
    pub exclude: Vec<usize>,
}

impl MiniBatch {
    /// Draws a batch of `batch` anchors from the rows of P.
    pub fn sample(p: &Mat<f64>, batch: usize, rng: &mut impl rand::Rng) -> Self {
        let n = p.nrows();
        let anchors: Vec<usize> = sample(rng, n, batch.min(n)).into_vec();
        let pos_nodes: Vec<usize> = anchors.iter().map(|&i| sample_row(p, i, rng)).collect();
        let mut slot = std::collections::HashMap::new();
        let mut candidates = Vec::new();
        for &v in anchors.iter().chain(&pos_nodes) {
            slot.entry(v).or_insert_with(|| {
                candidates.push(v);
                candidates.len() - 1
            });
        }
        let positives = pos_nodes.iter().map(|v| slot[v]).collect();
        let exclude = anchors.iter().map(|v| slot[v]).collect();
        Self {
            anchors,
            candidates,
            positives,
            exclude,
        }
    }

    /// Loss and gradient on the n x dim embedding.
    pub fn loss(&self, kernel: &ExpKernel, z: &[f64], dim: usize) -> Result<(f64, Vec<f64>)> {
        infonce_on_nodes(
            kernel,
            z,
            dim,
            &self.anchors,
            &self.candidates,
            &self.positives,
            Some(&self.exclude),
        )
    }
}

/// Training free node embeddings with sampled InfoNCE and Adam.
#[derive(Clone, Debug)]
pub struct FreeEmbeddingConfig {
    /// Embedding dimension (default 4).
    pub dim: usize,
    /// Kernel (default gamma 2, tau 0.5).
    pub kernel: ExpKernel,
    /// Adam steps (default 400).
    pub steps: usize,
    /// Adam learning rate at the first step (default 0.05).
    pub lr: f64,
    /// Decay the learning rate to 0 along a cosine (default `true`). The sampled gradients are
    /// noisy; with a constant rate the embedding jitters around the optimum instead of settling.
    pub cosine_decay: bool,
    /// Mini-batch size; `None` = full softmax over all nodes (default `None`).
    pub batch: Option<usize>,
    /// Scale of the random initialisation (default 0.1).
    pub init_std: f64,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for FreeEmbeddingConfig {
    fn default() -> Self {
        Self {
            dim: 4,
            kernel: ExpKernel::default(),
            steps: 400,
            lr: 0.05,
            cosine_decay: true,
            batch: None,
            init_std: 0.1,
            seed: 0,
        }
    }
}

/// Below this many nodes a training run stays on one thread: a step is then a few tens of
/// microseconds of arithmetic, and handing tiles to other threads costs more than it saves
/// (measured 7x slower with two threads on a busy 2-core machine at n = 160).
pub const SINGLE_THREAD_NODES: usize = 2000;

/// Runs `f` on a one-thread rayon pool when `n` is small (see [`SINGLE_THREAD_NODES`]).
pub fn small_problem<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    if n <= SINGLE_THREAD_NODES {
        if let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(1).build() {
            return pool.install(f);
        }
    }
    f()
}

/// Trains embeddings on the rows of P; returns Z (n x dim) and the loss of every step.
pub fn train_free_embeddings(
    p: &Mat<f64>,
    config: &FreeEmbeddingConfig,
) -> Result<(Vec<f64>, Vec<f64>)> {
    small_problem(p.nrows(), || train_free_embeddings_here(p, config))
}

fn train_free_embeddings_here(
    p: &Mat<f64>,
    config: &FreeEmbeddingConfig,
) -> Result<(Vec<f64>, Vec<f64>)> {
    config.kernel.validate()?;
    let n = p.nrows();
    let dim = config.dim;
    if dim == 0 {
        return Err(GraphError::param("dim", 0, "an embedding dimension >= 1"));
    }
    let mut rng = crate::rng::seeded(config.seed, 21);
    let mut z = crate::rng::normal_vec(&mut rng, n * dim, config.init_std);
    let mut opt = Adam::new(n * dim, config.lr);
    let mut losses = Vec::with_capacity(config.steps);
    for step in 0..config.steps {
        if config.cosine_decay {
            opt.lr = cosine_lr(config.lr, step, config.steps);
        }
        let (loss, grad) = match config.batch {
            None => {
                let pos: Vec<usize> = (0..n).map(|i| sample_row(p, i, &mut rng)).collect();
                full_softmax_infonce(&config.kernel, &z, dim, &pos)?
            }
            Some(b) => MiniBatch::sample(p, b, &mut rng).loss(&config.kernel, &z, dim)?,
        };
        opt.step(&mut z, &grad);
        losses.push(loss);
    }
    Ok((z, losses))
}

/// Mini-batch InfoNCE on the nodes of a large sparse graph (the CSR [`Graph`] itself, no dense
/// P): each step draws `batch` anchors uniformly without replacement and one positive
/// j ~ P_i = pi_ij / d_i for each; the candidates are the distinct nodes among anchors and
/// positives (SimCLR's in-batch negatives), the anchor itself excluded. Each touched row takes
/// one lazy Adam step ([`RowAdam`]) with a learning rate that warms up linearly over the first
/// 5% of the steps and then decays along a cosine to 0.
#[derive(Clone, Debug)]
pub struct SparseTrainConfig {
    /// Embedding dimension (default 16).
    pub dim: usize,
    /// Kernel (default gamma 2, tau 0.5).
    pub kernel: ExpKernel,
    /// Anchors per step (default 1024).
    pub batch: usize,
    /// Steps (default 3000).
    pub steps: usize,
    /// Peak learning rate (default 0.05).
    pub lr: f64,
    /// Standard deviation of the random initialisation (default 0.1).
    pub init_std: f64,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for SparseTrainConfig {
    fn default() -> Self {
        Self {
            dim: 16,
            kernel: ExpKernel::default(),
            batch: 1024,
            steps: 3000,
            lr: 0.05,
            init_std: 0.1,
            seed: 0,
        }
    }
}

/// Draws j ~ P_i from the CSR row of i (weights need not be equal).
pub fn sample_neighbor(graph: &Graph, i: usize, rng: &mut impl rand::Rng) -> usize {
    let (lo, hi) = (graph.indptr()[i], graph.indptr()[i + 1]);
    let (idx, w) = (&graph.indices()[lo..hi], &graph.weights()[lo..hi]);
    let total: f64 = w.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (&j, &wj) in idx.iter().zip(w) {
        if u < wj {
            return j;
        }
        u -= wj;
    }
    idx[idx.len() - 1]
}

/// Warmup (first 5% of the steps, linear) then cosine decay to 0.
fn warmup_cosine(base: f64, step: usize, total: usize) -> f64 {
    let warm = (total / 20).max(1);
    if step < warm {
        base * (step + 1) as f64 / warm as f64
    } else {
        cosine_lr(base, step - warm, total - warm)
    }
}

/// Trains free embeddings of every node of `graph` with mini-batch InfoNCE (see
/// [`SparseTrainConfig`]); `on_step(step, loss)` sees every step. Returns Z (n x dim,
/// row-major). Refuses graphs with an isolated node (its row of P is undefined).
pub fn train_sparse_minibatch(
    graph: &Graph,
    config: &SparseTrainConfig,
    mut on_step: impl FnMut(usize, f64),
) -> Result<Vec<f64>> {
    config.kernel.validate()?;
    graph.require_no_isolated()?;
    let (n, dim) = (graph.n_nodes(), config.dim);
    if dim == 0 {
        return Err(GraphError::param("dim", 0, "an embedding dimension >= 1"));
    }
    if config.batch < 2 {
        return Err(GraphError::param(
            "batch",
            config.batch,
            "at least 2 anchors",
        ));
    }
    crate::error::check_positive("lr", config.lr)?;
    let mut rng = crate::rng::seeded(config.seed, 22);
    let mut z = crate::rng::normal_vec(&mut rng, n * dim, config.init_std);
    let mut opt = RowAdam::new(n, dim, config.lr);
    let batch = config.batch.min(n);
    // slot[v] = position of node v among this step's candidates, valid when stamp[v] == step.
    let mut slot = vec![0usize; n];
    let mut stamp = vec![usize::MAX; n];
    let mut candidates: Vec<usize> = Vec::with_capacity(2 * batch);
    let mut positives = vec![0usize; batch];
    let mut exclude = vec![0usize; batch];
    // The loss runs in f32 (twice the SIMD width; a step's logits span ~10, far from f32's
    // limits); the table and Adam's moments stay f64.
    let mut a_rows = vec![0f32; batch * dim];
    let mut c_rows: Vec<f32> = Vec::with_capacity(2 * batch * dim);
    let mut grad: Vec<f64> = Vec::with_capacity(2 * batch * dim);
    let err = |e: kinfonce_loss::LossError| GraphError::Loss(e.to_string());
    let kernel = loss_kernel(&config.kernel);
    for step in 0..config.steps {
        let anchors = sample(&mut rng, n, batch).into_vec();
        candidates.clear();
        let mut place = |v: usize, candidates: &mut Vec<usize>| {
            if stamp[v] != step {
                stamp[v] = step;
                slot[v] = candidates.len();
                candidates.push(v);
            }
            slot[v]
        };
        for (a, &i) in anchors.iter().enumerate() {
            exclude[a] = place(i, &mut candidates);
        }
        for (a, &i) in anchors.iter().enumerate() {
            let j = sample_neighbor(graph, i, &mut rng);
            positives[a] = place(j, &mut candidates);
        }
        for (a, &i) in anchors.iter().enumerate() {
            for (dst, src) in a_rows[a * dim..(a + 1) * dim]
                .iter_mut()
                .zip(&z[i * dim..(i + 1) * dim])
            {
                *dst = *src as f32;
            }
        }
        c_rows.clear();
        for &v in &candidates {
            c_rows.extend(z[v * dim..(v + 1) * dim].iter().map(|&x| x as f32));
        }
        let out = kinfonce_loss::infonce(
            &kernel,
            kinfonce_loss::MatRef::new(&a_rows, batch, dim).map_err(err)?,
            kinfonce_loss::MatRef::new(&c_rows, candidates.len(), dim).map_err(err)?,
            kinfonce_loss::Positives::Index(&positives),
            Some(&exclude),
        )
        .map_err(err)?;
        if !out.loss.is_finite() {
            return Err(GraphError::NoConvergence {
                what: "mini-batch InfoNCE",
                detail: format!(
                    "loss is {} at step {step}; lower the learning rate",
                    out.loss
                ),
            });
        }
        // Every anchor is also a candidate (its own excluded slot): add its two gradients.
        grad.clear();
        grad.extend(out.candidates.data.iter().map(|&g| g as f64));
        for (&c, ga) in exclude.iter().zip(out.anchors.data.chunks_exact(dim)) {
            for (g, &x) in grad[c * dim..(c + 1) * dim].iter_mut().zip(ga) {
                *g += x as f64;
            }
        }
        opt.lr = warmup_cosine(config.lr, step, config.steps);
        for (c, &v) in candidates.iter().enumerate() {
            opt.step_row(&mut z, v, &grad[c * dim..(c + 1) * dim]);
        }
        on_step(step, out.loss);
    }
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mrf::{cross_entropy_grad, transition_matrix};

    #[test]
    fn expected_full_softmax_infonce_is_cross_entropy_over_n() {
        // Average the loss crate's value and gradient over every positive, weighted by P:
        // exactly H / n and dH / n.
        let g = Graph::from_edges(
            4,
            &[
                (0, 1, 1.0),
                (0, 2, 2.0),
                (1, 2, 0.5),
                (2, 3, 3.0),
                (1, 3, 1.5),
            ],
        )
        .unwrap();
        let p = transition_matrix(&g).unwrap();
        let k = ExpKernel {
            gamma: 2.0,
            tau: 0.8,
        };
        let z = crate::rng::normal_vec(&mut crate::rng::seeded(1, 0), 8, 1.0);
        let (h, gh) = cross_entropy_grad(&p, &z, 2, &k);
        let (mut loss, mut grad) = (0.0, vec![0.0; 8]);
        for i in 0..4 {
            for j in 0..4 {
                if p[(i, j)] == 0.0 {
                    continue;
                }
                // Anchor i alone with positive j: its term of the mean over anchors, times n.
                let (li, gi) = infonce_on_nodes(
                    &k,
                    &z,
                    2,
                    &[i],
                    &(0..4).collect::<Vec<_>>(),
                    &[j],
                    Some(&[i]),
                )
                .unwrap();
                loss += p[(i, j)] * li;
                grad.iter_mut()
                    .zip(&gi)
                    .for_each(|(a, b)| *a += p[(i, j)] * b);
                assert!(li > 0.0);
            }
        }
        assert!((loss - h).abs() < 1e-9, "{loss} vs {h}");
        for t in 0..8 {
            assert!((grad[t] - gh[t]).abs() < 1e-9);
        }
    }

    #[test]
    fn minibatch_positions_are_consistent() {
        let g = Graph::from_edges(
            5,
            &[
                (0, 1, 1.0),
                (1, 2, 1.0),
                (2, 3, 1.0),
                (3, 4, 1.0),
                (4, 0, 1.0),
            ],
        )
        .unwrap();
        let p = transition_matrix(&g).unwrap();
        let mut rng = crate::rng::seeded(0, 0);
        let b = MiniBatch::sample(&p, 3, &mut rng);
        for (a, &i) in b.anchors.iter().enumerate() {
            assert_eq!(b.candidates[b.exclude[a]], i);
            assert!(p[(i, b.candidates[b.positives[a]])] > 0.0);
        }
    }
}
