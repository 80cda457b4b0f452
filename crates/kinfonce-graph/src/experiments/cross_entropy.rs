//! `cross-entropy`: H(pi, K_Z) three ways on a random graph and random embedding, and InfoNCE
//! simulated by sampling (through `kinfonce-loss`).
//!
//! Predictions: the trace form (2 / tau) tr(Z^T L(P_sym) Z) + log R(Z) equals the direct
//! -sum_ij P_ij log Q_ij (gamma = 2, tolerance 1e-9 x max(1, |H|)); the Monte Carlo mean of
//! -log P(W; K_Z) over W ~ P(W; pi) is H within 3 standard errors; the P-weighted average of the
//! full-softmax InfoNCE over positives, times n, is H exactly (1e-9); the sampled InfoNCE
//! (one positive j ~ P_i per anchor per draw), times n, is H within 3 standard errors.

use crate::error::Result;
use crate::free_embedding::{full_softmax_infonce, infonce_on_nodes};
use crate::generators::random_weighted_graph;
use crate::kernel::ExpKernel;
use crate::mrf::{
    cross_entropy, mean_and_standard_error, monte_carlo_cross_entropy, sample_positives,
    trace_form, transition_matrix,
};
use crate::plot::{write_line_chart, LineChart, Series};
use crate::report::{Claim, Report};
use std::path::Path;

/// Settings of the `cross-entropy` experiment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CrossEntropyConfig {
    /// Nodes (default 30).
    pub nodes: usize,
    /// Probability of each non-ring edge (default 0.2).
    pub edge_prob: f64,
    /// Embedding dimension (default 3).
    pub dim: usize,
    /// Kernel temperature tau (gamma is 2 for the trace form; default 0.5).
    pub tau: f64,
    /// Monte Carlo samples (default 4000).
    pub samples: usize,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for CrossEntropyConfig {
    fn default() -> Self {
        Self {
            nodes: 30,
            edge_prob: 0.2,
            dim: 3,
            tau: 0.5,
            samples: 4000,
            seed: 0,
        }
    }
}

/// Runs the experiment.
pub fn run(config: &CrossEntropyConfig, out: Option<&Path>) -> Result<Report> {
    let kernel = ExpKernel {
        gamma: 2.0,
        tau: config.tau,
    };
    kernel.validate()?;
    let n = config.nodes;
    let dim = config.dim;
    if dim == 0 {
        return Err(crate::GraphError::param("dim", 0, "dim >= 1"));
    }
    if config.samples < 2 {
        return Err(crate::GraphError::param(
            "samples",
            config.samples,
            "at least 2 Monte Carlo samples",
        ));
    }
    let g = random_weighted_graph(n, config.edge_prob, config.seed)?;
    let p = transition_matrix(&g)?;
    let mut rng = crate::rng::seeded(config.seed, 1);
    let z = crate::rng::normal_vec(&mut rng, n * dim, 1.0);
    let h = cross_entropy(&p, &z, dim, &kernel);
    let (tr, log_r) = trace_form(&p, &z, dim, config.tau);
    let (mc, mc_se) = monte_carlo_cross_entropy(&p, &z, dim, &kernel, config.samples, config.seed);
    // Exact expectation of the loss crate's InfoNCE over positives: sum_i sum_j P_ij l(i, j).
    let all: Vec<usize> = (0..n).collect();
    let mut expected = 0.0;
    for i in 0..n {
        for j in 0..n {
            if p[(i, j)] > 0.0 {
                let (l, _) = infonce_on_nodes(&kernel, &z, dim, &[i], &all, &[j], Some(&[i]))?;
                expected += p[(i, j)] * l;
            }
        }
    }
    // Sampled full-softmax InfoNCE, n x the mean over anchors, one positive per anchor per draw.
    let mut draws = Vec::with_capacity(config.samples);
    let mut running = Vec::new();
    let mut sampler = crate::rng::seeded(config.seed, 2);
    for s in 0..config.samples {
        let pos = sample_positives(&p, &mut sampler);
        let (l, _) = full_softmax_infonce(&kernel, &z, dim, &pos)?;
        draws.push(n as f64 * l);
        if (s + 1).is_power_of_two() || s + 1 == config.samples {
            let (m, se) = mean_and_standard_error(&draws);
            running.push(((s + 1) as f64, m, se));
        }
    }
    let (nce, nce_se) = mean_and_standard_error(&draws);
    let exact_tol = 1e-9 * h.abs().max(1.0);
    let claims = vec![
        Claim::equal("trace_form_vs_direct", h, tr + log_r, exact_tol, "(2/tau) tr(Z^T L(P_sym) Z) + log R(Z) equals -sum P_ij log Q_ij (gamma = 2)"),
        Claim::equal("monte_carlo_vs_direct", h, mc, 3.0 * mc_se, "mean of -log P(W; K_Z) over W ~ P(W; pi), within 3 standard errors"),
        Claim::equal("infonce_expectation_vs_direct", h, expected, exact_tol, "sum_i sum_j P_ij x (kinfonce-loss InfoNCE of anchor i with positive j) equals H exactly"),
        Claim::equal("infonce_sampled_vs_direct", h, nce, 3.0 * nce_se, "n x sampled full-softmax InfoNCE (kinfonce-loss), within 3 standard errors"),
    ];
    let mut plots = Vec::new();
    if let Some(dir) = out {
        let xs: Vec<f64> = running.iter().map(|r| r.0).collect();
        plots = write_line_chart(
            dir,
            "cross_entropy_sampled_infonce",
            &LineChart {
                title: "n x sampled InfoNCE converges to H(pi, K_Z)".into(),
                x_label: "samples (positive draws)".into(),
                y_label: "loss".into(),
                log_x: true,
                log_y: false,
                series: vec![
                    Series::line("running mean", running.iter().map(|r| (r.0, r.1)).collect()),
                    Series::line(
                        "mean + 3 SE",
                        running.iter().map(|r| (r.0, r.1 + 3.0 * r.2)).collect(),
                    ),
                    Series::line(
                        "mean - 3 SE",
                        running.iter().map(|r| (r.0, r.1 - 3.0 * r.2)).collect(),
                    ),
                    Series::prediction(
                        "H(pi, K_Z) closed form",
                        xs.iter().map(|&x| (x, h)).collect(),
                    ),
                ],
            },
        )?;
    }
    Ok(Report {
        experiment: "cross-entropy".into(),
        params: serde_json::json!({
            "nodes": n, "edge_prob": config.edge_prob, "dim": dim, "tau": config.tau, "gamma": 2.0,
            "samples": config.samples, "seed": config.seed, "kernel_convention": kernel.convention(),
        }),
        claims,
        plots,
        details: serde_json::json!({"trace_term": tr, "log_r": log_r, "monte_carlo_se": mc_se, "infonce_se": nce_se}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ways_agree() {
        let r = run(
            &CrossEntropyConfig {
                nodes: 12,
                samples: 1500,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        assert!(r.all_hold(), "{}", r.to_text());
    }
}
