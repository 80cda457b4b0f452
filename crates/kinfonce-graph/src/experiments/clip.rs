//! `clip`: CLIP is InfoNCE on the bipartite pair graph.
//!
//! Nodes are n_A images and n_B texts (LaCLIP-style rewrites add text nodes joined to the same
//! images); pi only joins images to texts. With P^{AB} = rows of pi over texts and
//! Q^{AB}_ab = K(x_a, y_b) / sum_b' K(x_a, y_b') (and symmetrically for texts), the symmetric CLIP
//! loss with positives sampled per object has expectation
//! L_obj = (H_AB / n_A + H_BA / n_B) / 2, H_AB = -sum_ab P^{AB}_ab log Q^{AB}_ab (exact, 1e-9;
//! Monte Carlo within 3 standard errors). Sampling pairs (edges) uniformly instead weights each
//! object by its degree: L_edge = (sum_a d_a/vol l_a + sum_b d_b/vol l_b) / 2; the gap
//! L_edge - L_obj is non-zero when out-degrees differ (Monte Carlo within 3 standard errors).
//! Trained free embeddings co-cluster the modalities on a pair graph with class structure at
//! every pair (own caption 1, other captions of the class `class_weight`, other classes
//! `weak_weight`): k-means on images and texts together recovers the classes and equals spectral
//! clustering of that graph (ARI >= 0.95). On the sparse caption graph most pairs have weight 0
//! and the loss has no finite minimiser (see `docs/theory.md`).

use crate::error::Result;
use crate::experiments::common::project_2d;
use crate::generators::PairGraph;
use crate::kernel::{sq_dist, ExpKernel};
use crate::kmeans::{kmeans, KMeansConfig};
use crate::metrics::adjusted_rand_index;
use crate::mrf::mean_and_standard_error;
use crate::optim::{cosine_lr, Adam};
use crate::plot::{write_scatter, ScatterPanel};
use crate::report::{Claim, Report};
use crate::spectral::spectral_clustering;
use rand::Rng;
use std::path::Path;

/// Settings of the `clip` experiment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// Classes (default 3).
    pub classes: usize,
    /// Images per class (default 8); as many base texts.
    pub per_class: usize,
    /// LaCLIP rewrites per text (default 1).
    pub rewrites: usize,
    /// Weight of the weak cross-class pairs (default 0.05).
    pub weak_weight: f64,
    /// Weight of an image with the other captions of its class in the co-clustering graph
    /// (default 0.2; its own caption has weight 1).
    pub class_weight: f64,
    /// Embedding dimension (default 3).
    pub dim: usize,
    /// Kernel (default gamma 2, tau 0.5).
    #[serde(flatten)]
    pub kernel: ExpKernel,
    /// Monte Carlo draws (default 3000).
    pub samples: usize,
    /// Adam steps for the co-clustering (default 800).
    pub steps: usize,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            classes: 3,
            per_class: 8,
            rewrites: 1,
            weak_weight: 0.05,
            class_weight: 0.2,
            dim: 3,
            kernel: ExpKernel::default(),
            samples: 3000,
            steps: 800,
            seed: 0,
        }
    }
}

/// Row-stochastic cross blocks and log Q in both directions.
struct Bipartite {
    n_a: usize,
    n_b: usize,
    p_ab: Vec<f64>,
    p_ba: Vec<f64>,
    deg_a: Vec<f64>,
    deg_b: Vec<f64>,
}

impl Bipartite {
    fn new(pg: &PairGraph) -> Self {
        let (n_a, n_b) = (pg.n_a, pg.n_b);
        let w = pg.cross_weights();
        let deg_a: Vec<f64> = (0..n_a)
            .map(|a| (0..n_b).map(|b| w[a * n_b + b]).sum())
            .collect();
        let deg_b: Vec<f64> = (0..n_b)
            .map(|b| (0..n_a).map(|a| w[a * n_b + b]).sum())
            .collect();
        let p_ab = (0..n_a * n_b).map(|t| w[t] / deg_a[t / n_b]).collect();
        let p_ba = (0..n_b * n_a)
            .map(|t| w[(t % n_a) * n_b + t / n_a] / deg_b[t / n_a])
            .collect();
        Self {
            n_a,
            n_b,
            p_ab,
            p_ba,
            deg_a,
            deg_b,
        }
    }
}

/// Per-anchor cross-entropies l_i = -sum_j P_ij log Q_ij for anchors x against candidates y.
fn row_losses(p: &[f64], x: &[f64], y: &[f64], dim: usize, k: &ExpKernel) -> Vec<f64> {
    let (na, nb) = (x.len() / dim, y.len() / dim);
    (0..na)
        .map(|a| {
            let s: Vec<f64> = (0..nb)
                .map(|b| {
                    -k.energy(sq_dist(
                        &x[a * dim..(a + 1) * dim],
                        &y[b * dim..(b + 1) * dim],
                    ))
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + s.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            (0..nb)
                .filter(|&b| p[a * nb + b] > 0.0)
                .map(|b| -p[a * nb + b] * (s[b] - lse))
                .sum()
        })
        .collect()
}

fn sample_from(row: &[f64], rng: &mut impl Rng) -> usize {
    let mut u = rng.gen::<f64>();
    let mut last = 0;
    for (j, &x) in row.iter().enumerate() {
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

fn clip_call(
    k: &ExpKernel,
    x: &[f64],
    y: &[f64],
    dim: usize,
    pos: &[usize],
) -> Result<kinfonce_loss::InfoNceGrads<f64>> {
    let err = |e: kinfonce_loss::LossError| crate::GraphError::Loss(e.to_string());
    let xr = kinfonce_loss::MatRef::new(x, x.len() / dim, dim).map_err(err)?;
    let yr = kinfonce_loss::MatRef::new(y, y.len() / dim, dim).map_err(err)?;
    kinfonce_loss::infonce(
        &kinfonce_loss::Kernel::exp(k.gamma, k.tau),
        xr,
        yr,
        kinfonce_loss::Positives::Index(pos),
        None,
    )
    .map_err(err)
}

/// Runs the experiment (on one thread: every call of the loss is a few dozen rows).
pub fn run(config: &ClipConfig, out: Option<&Path>) -> Result<Report> {
    crate::free_embedding::small_problem(0, || run_here(config, out))
}

fn run_here(config: &ClipConfig, out: Option<&Path>) -> Result<Report> {
    config.kernel.validate()?;
    let (kc, m) = (config.classes, config.per_class);
    if kc < 2 || m < 2 {
        return Err(crate::GraphError::param(
            "classes x per-class",
            format!("{kc} x {m}"),
            "at least 2 classes of 2",
        ));
    }
    let n_base = kc * m;
    let mut pairs = Vec::new();
    for c in 0..kc {
        for r in 0..m {
            let a = c * m + r;
            // Captions form a cycle within the class (so the class is connected); every other
            // image has a third caption, so out-degrees differ.
            pairs.push((a, a, 1.0));
            pairs.push((a, c * m + (r + 1) % m, 1.0));
            if r % 2 == 0 && m > 2 {
                pairs.push((a, c * m + (r + 2) % m, 1.0));
            }
            if config.weak_weight > 0.0 {
                pairs.push((a, ((c + 1) % kc) * m + r, config.weak_weight));
            }
        }
    }
    let pg = PairGraph::new(n_base, n_base, &pairs, config.rewrites)?;
    let bp = Bipartite::new(&pg);
    let (n_a, n_b, dim) = (bp.n_a, bp.n_b, config.dim);
    let class_a: Vec<usize> = (0..n_a).map(|a| a / m).collect();
    let class_b: Vec<usize> = (0..n_b).map(|b| (b % n_base) / m).collect();
    let mut rng = crate::rng::seeded(config.seed, 41);
    let x = crate::rng::normal_vec(&mut rng, n_a * dim, 0.7);
    let y = crate::rng::normal_vec(&mut rng, n_b * dim, 0.7);
    let la = row_losses(&bp.p_ab, &x, &y, dim, &config.kernel);
    let lb = row_losses(&bp.p_ba, &y, &x, dim, &config.kernel);
    let l_obj = 0.5 * (la.iter().sum::<f64>() / n_a as f64 + lb.iter().sum::<f64>() / n_b as f64);
    let vol: f64 = bp.deg_a.iter().sum();
    let l_edge = 0.5
        * (la
            .iter()
            .zip(&bp.deg_a)
            .map(|(l, d)| l * d / vol)
            .sum::<f64>()
            + lb.iter()
                .zip(&bp.deg_b)
                .map(|(l, d)| l * d / vol)
                .sum::<f64>());
    // Exact expectation through the loss crate: every positive, weighted by P.
    let mut exact = 0.0;
    for a in 0..n_a {
        for b in 0..n_b {
            let w = bp.p_ab[a * n_b + b];
            if w > 0.0 {
                exact += 0.5 * w / n_a as f64
                    * clip_call(&config.kernel, &x[a * dim..(a + 1) * dim], &y, dim, &[b])?.loss;
            }
        }
    }
    for b in 0..n_b {
        for a in 0..n_a {
            let w = bp.p_ba[b * n_a + a];
            if w > 0.0 {
                exact += 0.5 * w / n_b as f64
                    * clip_call(&config.kernel, &y[b * dim..(b + 1) * dim], &x, dim, &[a])?.loss;
            }
        }
    }
    // Monte Carlo, object-uniform: every image and every text draws its positive.
    const EDGE_BATCH: usize = 16;
    let edge_a: Vec<f64> = bp.deg_a.iter().map(|d| d / vol).collect();
    let mut obj_draws = Vec::with_capacity(config.samples);
    let mut edge_draws = Vec::with_capacity(config.samples);
    for _ in 0..config.samples {
        let pa: Vec<usize> = (0..n_a)
            .map(|a| sample_from(&bp.p_ab[a * n_b..(a + 1) * n_b], &mut rng))
            .collect();
        let pb: Vec<usize> = (0..n_b)
            .map(|b| sample_from(&bp.p_ba[b * n_a..(b + 1) * n_a], &mut rng))
            .collect();
        obj_draws.push(
            0.5 * (clip_call(&config.kernel, &x, &y, dim, &pa)?.loss
                + clip_call(&config.kernel, &y, &x, dim, &pb)?.loss),
        );
        // Edge-uniform: a batch of pairs (a, b), each with probability w_ab / vol, both directions.
        let ea: Vec<usize> = (0..EDGE_BATCH)
            .map(|_| sample_from(&edge_a, &mut rng))
            .collect();
        let eb: Vec<usize> = ea
            .iter()
            .map(|&a| sample_from(&bp.p_ab[a * n_b..(a + 1) * n_b], &mut rng))
            .collect();
        let xa: Vec<f64> = ea
            .iter()
            .flat_map(|&a| x[a * dim..(a + 1) * dim].iter().copied())
            .collect();
        let yb: Vec<f64> = eb
            .iter()
            .flat_map(|&b| y[b * dim..(b + 1) * dim].iter().copied())
            .collect();
        let lab = clip_call(&config.kernel, &xa, &y, dim, &eb)?.loss;
        let lba = clip_call(&config.kernel, &yb, &x, dim, &ea)?.loss;
        edge_draws.push(0.5 * (lab + lba));
    }
    let (mc_obj, se_obj) = mean_and_standard_error(&obj_draws);
    let (mc_edge, se_edge) = mean_and_standard_error(&edge_draws);
    // Co-clustering. The caption graph above leaves most image-text pairs at weight 0, so (as
    // for the planted partition with q = 0) the CLIP loss has no finite minimiser there: the
    // embedding spreads without bound along the caption cycles, and where k-means cuts it says
    // nothing about the theory. The prediction is made on the graph that has class structure at
    // every pair: own caption 1, the class's other captions `class_weight`, every caption of
    // another class `weak_weight` > 0. There the minimiser collapses each class of both
    // modalities to one point (Q^{AB} = P^{AB} is reachable), so k-means on images and texts
    // together recovers the classes and equals spectral clustering of that pair graph.
    crate::error::check_positive("weak_weight (co-clustering graph)", config.weak_weight)?;
    crate::error::check_positive("class_weight", config.class_weight)?;
    let mut cc_pairs = Vec::new();
    for a in 0..n_base {
        for b in 0..n_base {
            let w = if a == b {
                1.0
            } else if a / m == b / m {
                config.class_weight
            } else {
                config.weak_weight
            };
            cc_pairs.push((a, b, w));
        }
    }
    let cc_graph = PairGraph::new(n_base, n_base, &cc_pairs, config.rewrites)?;
    let bp = Bipartite::new(&cc_graph);
    // Train free image and text embeddings with the symmetric CLIP loss, sampled positives.
    let mut xt = crate::rng::normal_vec(&mut rng, n_a * dim, 0.1);
    let mut yt = crate::rng::normal_vec(&mut rng, n_b * dim, 0.1);
    let mut opt_x = Adam::new(xt.len(), 0.1);
    let mut opt_y = Adam::new(yt.len(), 0.1);
    for step in 0..config.steps {
        // Noisy sampled gradients: decay the step to 0 so the embedding settles at the optimum.
        opt_x.lr = cosine_lr(0.1, step, config.steps);
        opt_y.lr = opt_x.lr;
        let pa: Vec<usize> = (0..n_a)
            .map(|a| sample_from(&bp.p_ab[a * n_b..(a + 1) * n_b], &mut rng))
            .collect();
        let pb: Vec<usize> = (0..n_b)
            .map(|b| sample_from(&bp.p_ba[b * n_a..(b + 1) * n_a], &mut rng))
            .collect();
        let g1 = clip_call(&config.kernel, &xt, &yt, dim, &pa)?;
        let g2 = clip_call(&config.kernel, &yt, &xt, dim, &pb)?;
        let gx: Vec<f64> = g1
            .anchors
            .data
            .iter()
            .zip(&g2.candidates.data)
            .map(|(u, v)| 0.5 * (u + v))
            .collect();
        let gy: Vec<f64> = g1
            .candidates
            .data
            .iter()
            .zip(&g2.anchors.data)
            .map(|(u, v)| 0.5 * (u + v))
            .collect();
        opt_x.step(&mut xt, &gx);
        opt_y.step(&mut yt, &gy);
    }
    let stacked: Vec<f64> = xt.iter().chain(&yt).copied().collect();
    let truth: Vec<usize> = class_a.iter().chain(&class_b).copied().collect();
    let labels = kmeans(
        &stacked,
        n_a + n_b,
        kc,
        &KMeansConfig {
            clusters: kc,
            seed: config.seed,
            ..Default::default()
        },
    )?
    .labels;
    let ari = adjusted_rand_index(&labels, &truth)?;
    let spectral = spectral_clustering(&cc_graph.graph, kc, config.seed)?;
    let ari_spec = adjusted_rand_index(&labels, &spectral)?;
    let claims = vec![
        Claim::equal("pair_graph_identity", l_obj, exact, 1e-9, "P-weighted symmetric CLIP loss (kinfonce-loss) = (H_AB / n_A + H_BA / n_B) / 2 on the pair graph"),
        Claim::equal("pair_graph_monte_carlo", l_obj, mc_obj, 3.0 * se_obj, "symmetric CLIP loss with sampled positives (object-uniform), 3 standard errors"),
        Claim::equal("edge_vs_object_uniform_gap", l_edge - l_obj, mc_edge - l_obj, 3.0 * se_edge, "sampling pairs uniformly weights objects by degree: gap = sum (d/vol - 1/n) l, 3 standard errors"),
        Claim::at_least("co_clustering_ari", 1.0, ari, 0.05, "co-clustering graph (own caption 1, class captions class_weight, others weak_weight): k-means on trained image and text embeddings together recovers the classes"),
        Claim::at_least("co_clustering_vs_spectral", 1.0, ari_spec, 0.05, "the CLIP clusters equal spectral clustering of the co-clustering pair graph"),
    ];
    let mut plots = Vec::new();
    if let Some(dir) = out {
        let proj = project_2d(&stacked, &stacked, dim);
        let panels = vec![
            ScatterPanel {
                title: "images".into(),
                points: proj[..n_a]
                    .iter()
                    .zip(&class_a)
                    .map(|(&(u, v), &c)| (u, v, c))
                    .collect(),
            },
            ScatterPanel {
                title: "texts (with rewrites)".into(),
                points: proj[n_a..]
                    .iter()
                    .zip(&class_b)
                    .map(|(&(u, v), &c)| (u, v, c))
                    .collect(),
            },
        ];
        plots = write_scatter(
            dir,
            "clip_co_clustering",
            "CLIP on the pair graph: both modalities cluster by class (2-D PCA)",
            &panels,
        )?;
    }
    Ok(Report {
        experiment: "clip".into(),
        params: serde_json::json!({
            "classes": kc, "per_class": m, "rewrites": config.rewrites, "weak_weight": config.weak_weight, "class_weight": config.class_weight,
            "n_images": n_a, "n_texts": n_b, "dim": dim, "tau": config.kernel.tau, "gamma": config.kernel.gamma,
            "samples": config.samples, "steps": config.steps, "seed": config.seed,
            "kernel_convention": config.kernel.convention(),
        }),
        claims,
        plots,
        details: serde_json::json!({"object_uniform_loss": l_obj, "edge_uniform_loss": l_edge}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_graph_identity_and_co_clustering() {
        let r = run(
            &ClipConfig {
                per_class: 6,
                samples: 1500,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert!(r.all_hold(), "{}", r.to_text());
    }
}
