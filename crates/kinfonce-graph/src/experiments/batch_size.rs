//! `batch-size`: mini-batch InfoNCE against the full loss H(pi, K_Z) as the batch grows: the
//! quantitative form of "larger batches help".
//!
//! A batch is B anchors drawn without replacement, each with a positive j ~ P_i; candidates are
//! the anchors and their positives (in-batch negatives), the anchor itself excluded; loss and
//! gradients come from `kinfonce-loss`. Predictions: each anchor's denominator sums over a
//! subset of the full one, so the batch loss is at most the full loss H / n (bias <= 0); at
//! B = n the candidates are all nodes and the expectation is exactly H / n (bias 0 within 3
//! standard errors); |bias| and the gradient error shrink as B grows (no increase beyond 3
//! standard errors).

use crate::error::Result;
use crate::free_embedding::MiniBatch;
use crate::generators::PlantedConfig;
use crate::kernel::ExpKernel;
use crate::mrf::{cross_entropy_grad, mean_and_standard_error, transition_matrix};
use crate::plot::{write_line_chart, LineChart, Series};
use crate::report::{Claim, Report};
use std::path::Path;

/// Settings of the `batch-size` experiment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BatchSizeConfig {
    /// The graph: a planted partition (default 4 blocks of 25, p = 0.9, q = 0.1).
    #[serde(flatten)]
    pub graph: PlantedConfig,
    /// Embedding dimension (default 4).
    pub dim: usize,
    /// Kernel (default gamma 2, tau 0.5).
    #[serde(flatten)]
    pub kernel: ExpKernel,
    /// Batch sizes; the last should be n for the exact check (default 4, 8, 16, 32, 64, 100).
    pub batches: Vec<usize>,
    /// Batches drawn per size (default 300).
    pub draws: usize,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for BatchSizeConfig {
    fn default() -> Self {
        Self {
            graph: PlantedConfig {
                blocks: 4,
                block_size: 25,
                p: 0.9,
                q: 0.1,
            },
            dim: 4,
            kernel: ExpKernel::default(),
            batches: vec![4, 8, 16, 32, 64, 100],
            draws: 300,
            seed: 0,
        }
    }
}

/// One batch size's measurements.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BatchPoint {
    /// Batch size B.
    pub batch: usize,
    /// Mean batch loss minus H / n.
    pub bias: f64,
    /// Standard error of the bias.
    pub bias_se: f64,
    /// Mean of ||g_B - grad(H / n)|| / ||grad(H / n)||.
    pub grad_error: f64,
    /// Standard error of the gradient error.
    pub grad_error_se: f64,
}

/// Runs the experiment.
pub fn run(config: &BatchSizeConfig, out: Option<&Path>) -> Result<Report> {
    config.kernel.validate()?;
    if config.draws < 2 {
        return Err(crate::GraphError::param(
            "draws",
            config.draws,
            "at least 2 batches per size",
        ));
    }
    let g = config.graph.build()?;
    let n = g.n_nodes();
    if let Some(&b) = config.batches.iter().find(|&&b| b == 0 || b > n) {
        return Err(crate::GraphError::param(
            "batch",
            b,
            format!("batch sizes in 1..={n} (the number of nodes)"),
        ));
    }
    let p = transition_matrix(&g)?;
    let dim = config.dim;
    let mut rng = crate::rng::seeded(config.seed, 31);
    let z = crate::rng::normal_vec(&mut rng, n * dim, 0.5);
    let (h, gh) = cross_entropy_grad(&p, &z, dim, &config.kernel);
    let full = h / n as f64;
    let g_full: Vec<f64> = gh.iter().map(|v| v / n as f64).collect();
    let g_norm = g_full.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut points = Vec::new();
    for &b in &config.batches {
        let mut losses = Vec::with_capacity(config.draws);
        let mut errs = Vec::with_capacity(config.draws);
        for _ in 0..config.draws {
            let batch = MiniBatch::sample(&p, b, &mut rng);
            let (l, gb) = batch.loss(&config.kernel, &z, dim)?;
            losses.push(l - full);
            errs.push(
                gb.iter()
                    .zip(&g_full)
                    .map(|(a, c)| (a - c) * (a - c))
                    .sum::<f64>()
                    .sqrt()
                    / g_norm,
            );
        }
        let (bias, bias_se) = mean_and_standard_error(&losses);
        let (grad_error, grad_error_se) = mean_and_standard_error(&errs);
        points.push(BatchPoint {
            batch: b,
            bias,
            bias_se,
            grad_error,
            grad_error_se,
        });
    }
    let increases = |f: &dyn Fn(&BatchPoint) -> (f64, f64)| -> f64 {
        points
            .windows(2)
            .filter(|w| {
                let (a, sa) = f(&w[0]);
                let (c, sc) = f(&w[1]);
                c > a + 3.0 * (sa * sa + sc * sc).sqrt()
            })
            .count() as f64
    };
    let mut claims = Vec::new();
    if let Some(last) = points.iter().find(|pt| pt.batch == n) {
        claims.push(Claim::equal(
            "bias_at_full_batch",
            0.0,
            last.bias,
            3.0 * last.bias_se,
            "B = n: candidates are all nodes, E[batch loss] = H / n (3 standard errors)",
        ));
    }
    let worst = points
        .iter()
        .max_by(|a, b| a.bias.total_cmp(&b.bias))
        .expect("at least one batch size");
    claims.push(Claim::at_most(
        "minibatch_loss_at_most_full",
        0.0,
        worst.bias,
        3.0 * worst.bias_se,
        "fewer negatives, smaller denominator: max over B of E[batch loss] - H / n <= 0",
    ));
    claims.push(Claim::equal(
        "bias_increases_with_batch",
        0.0,
        increases(&|pt| (pt.bias.abs(), pt.bias_se)),
        0.0,
        "number of steps up in B where |bias| grows beyond 3 standard errors",
    ));
    claims.push(Claim::equal(
        "grad_error_increases_with_batch",
        0.0,
        increases(&|pt| (pt.grad_error, pt.grad_error_se)),
        0.0,
        "number of steps up in B where the relative gradient error grows beyond 3 standard errors",
    ));
    let mut plots = Vec::new();
    if let Some(dir) = out {
        plots.extend(write_line_chart(
            dir,
            "batch_size_bias",
            &LineChart {
                title: "mini-batch InfoNCE: bias against H / n".into(),
                x_label: "batch size B".into(),
                y_label: "|E[batch loss] - H/n|".into(),
                log_x: true,
                log_y: true,
                series: vec![Series::line(
                    "|bias|",
                    points
                        .iter()
                        .map(|pt| (pt.batch as f64, pt.bias.abs().max(1e-6)))
                        .collect(),
                )],
            },
        )?);
        plots.extend(write_line_chart(
            dir,
            "batch_size_gradient",
            &LineChart {
                title: "mini-batch InfoNCE: gradient error against grad(H / n)".into(),
                x_label: "batch size B".into(),
                y_label: "||g_B - grad|| / ||grad||".into(),
                log_x: true,
                log_y: true,
                series: vec![Series::line(
                    "relative gradient error",
                    points
                        .iter()
                        .map(|pt| (pt.batch as f64, pt.grad_error))
                        .collect(),
                )],
            },
        )?);
    }
    Ok(Report {
        experiment: "batch-size".into(),
        params: serde_json::json!({
            "blocks": config.graph.blocks, "block_size": config.graph.block_size, "p": config.graph.p, "q": config.graph.q,
            "dim": dim, "tau": config.kernel.tau, "gamma": config.kernel.gamma, "batches": config.batches,
            "draws": config.draws, "seed": config.seed, "kernel_convention": config.kernel.convention(),
        }),
        claims,
        plots,
        details: serde_json::json!({"full_loss_h_over_n": full, "points": points}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn larger_batches_help() {
        let cfg = BatchSizeConfig {
            graph: PlantedConfig {
                blocks: 3,
                block_size: 10,
                p: 0.9,
                q: 0.1,
            },
            batches: vec![4, 10, 30],
            draws: 200,
            ..Default::default()
        };
        let r = run(&cfg, None).unwrap();
        assert!(r.all_hold(), "{}", r.to_text());
    }
}
