//! `planted`: the free-embedding optimum of H(pi, K_Z) on a planted partition with fixed weights
//! (pi_ij = p within a block, q across, 0 on the diagonal).
//!
//! Closed form: Q = P is reachable when every block collapses to a point and the K block
//! centres form a regular simplex whose squared side D^2 satisfies exp(-D^gamma / tau) = q / p,
//! i.e. D^gamma = tau ln(p / q) (D^2 = tau ln(p / q) for the Gaussian kernel, gamma = 2). A
//! simplex of K vertices needs dim >= K - 1. There H reaches its lower bound sum_i Entropy(P_i)
//! (Gibbs' inequality). With q = 0 no finite optimum exists: the blocks separate without bound.
//! The optimum is found by L-BFGS on the exact objective (tolerance 1e-3 on every claim).

use crate::error::{GraphError, Result};
use crate::experiments::common::{centre_sq_distances, centres, max_spread, project_2d};
use crate::generators::PlantedConfig;
use crate::kernel::ExpKernel;
use crate::mrf::{cross_entropy_grad, row_entropy, transition_matrix};
use crate::optim::{lbfgs, LbfgsConfig};
use crate::plot::{write_line_chart, write_scatter, LineChart, ScatterPanel, Series};
use crate::report::{Claim, Report};
use std::path::Path;

/// Settings of the `planted` experiment.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PlantedExperimentConfig {
    /// The planted partition (default 4 blocks of 8, p = 0.9, q = 0.1).
    #[serde(flatten)]
    pub graph: PlantedConfig,
    /// Kernel (default gamma 2, tau 0.5).
    #[serde(flatten)]
    pub kernel: ExpKernel,
    /// Embedding dimension; must be >= blocks - 1 (default 3).
    pub dim: usize,
    /// Seed of the random initialisation (default 0).
    pub seed: u64,
    /// L-BFGS iteration budget (default 3000).
    pub max_iter: usize,
}

impl Default for PlantedExperimentConfig {
    fn default() -> Self {
        Self {
            graph: PlantedConfig::default(),
            kernel: ExpKernel::default(),
            dim: 3,
            seed: 0,
            max_iter: 3000,
        }
    }
}

/// Refuses an embedding dimension too small for the simplex of block centres.
pub fn check_dim(dim: usize, blocks: usize) -> Result<()> {
    if dim + 1 < blocks {
        return Err(GraphError::param(
            "dim",
            dim,
            format!(
                "dim >= blocks - 1 = {}: the {blocks} block centres of the optimum form a regular simplex, which needs {} dimensions",
                blocks - 1,
                blocks - 1
            ),
        ));
    }
    if dim == 0 {
        return Err(GraphError::param("dim", 0, "dim >= 1"));
    }
    Ok(())
}

/// Runs the experiment.
pub fn run(config: &PlantedExperimentConfig, out: Option<&Path>) -> Result<Report> {
    let cfg = &config.graph;
    cfg.validate()?;
    config.kernel.validate()?;
    check_dim(config.dim, cfg.blocks)?;
    if cfg.q >= cfg.p {
        return Err(GraphError::param(
            "q",
            cfg.q,
            format!(
                "q < p = {}: with across-block weight q at or above the within-block weight p \
                 there is no planted partition, and the theorem's optimum does not exist",
                cfg.p
            ),
        ));
    }
    let g = cfg.build()?;
    let labels = cfg.labels();
    let (n, dim, k) = (g.n_nodes(), config.dim, cfg.blocks);
    let p = transition_matrix(&g)?;
    let bound = row_entropy(&p);
    let predicted_d2 = if cfg.q > 0.0 {
        Some((config.kernel.tau * (cfg.p / cfg.q).ln()).powf(2.0 / config.kernel.gamma))
    } else {
        None
    };
    let mut rng = crate::rng::seeded(config.seed, 3);
    let z0 = crate::rng::normal_vec(&mut rng, n * dim, 0.5);
    // Trajectory: (iteration, H - bound, mean centre sq distance, spread) and a few snapshots.
    let mut trajectory = Vec::new();
    let mut snapshots: Vec<(usize, Vec<f64>)> = Vec::new();
    let lb = LbfgsConfig {
        max_iter: config.max_iter,
        history: 20,
        grad_tol: 1e-10,
    };
    let result = lbfgs(
        z0,
        |z| cross_entropy_grad(&p, z, dim, &config.kernel),
        &lb,
        |it, z, value| {
            let c = centres(z, dim, &labels, k);
            let d = centre_sq_distances(&c, dim);
            let mean_d = if d.is_empty() {
                0.0
            } else {
                d.iter().sum::<f64>() / d.len() as f64
            };
            trajectory.push((it, value - bound, mean_d, max_spread(z, dim, &labels, &c)));
            if it == 0 || it.is_power_of_two() {
                snapshots.push((it, z.to_vec()));
            }
        },
    );
    let z = &result.x;
    let c = centres(z, dim, &labels, k);
    let d = centre_sq_distances(&c, dim);
    let spread = max_spread(z, dim, &labels, &c);
    let mean_d = if d.is_empty() {
        0.0
    } else {
        d.iter().sum::<f64>() / d.len() as f64
    };
    let d_range = d.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        - d.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut claims = Vec::new();
    match predicted_d2 {
        Some(pred) if k > 1 => {
            claims.push(Claim::equal(
                "center_sq_distance",
                pred,
                mean_d,
                1e-3,
                "squared distance between block centres = (tau ln(p/q))^(2/gamma)",
            ));
            claims.push(Claim::equal(
                "center_sq_distance_range",
                0.0,
                d_range,
                1e-3,
                "all pairs of centres equidistant (a regular simplex): max - min squared distance",
            ));
        }
        _ if k > 1 => {
            // q = 0: the distance must keep growing; compare with the value halfway through.
            let half = trajectory[trajectory.len() / 2].2;
            let grew = mean_d > half * (1.0 + 1e-6) && mean_d > trajectory[0].2;
            claims.push(Claim::grows(
                "center_sq_distance",
                mean_d,
                grew,
                "q = 0: no finite optimum, centres separate without bound (prediction null)",
            ));
        }
        _ => {}
    }
    claims.push(Claim::equal(
        "within_block_spread",
        0.0,
        spread,
        1e-3,
        "blocks collapse: max squared distance of a node to its block centre",
    ));
    claims.push(Claim::equal(
        "cross_entropy_vs_bound",
        bound,
        result.value,
        1e-3,
        "H(pi, K_Z) at the optimum = sum_i Entropy(P_i), its lower bound",
    ));
    let mut plots = Vec::new();
    if let Some(dir) = out {
        let panels: Vec<ScatterPanel> = snapshots
            .iter()
            .filter(|(it, _)| *it == 0 || [2, 8, 32, 128, 512, 2048].contains(it))
            .chain(std::iter::once(&(result.iterations, z.clone())))
            .map(|(it, s)| ScatterPanel {
                title: format!("iteration {it}"),
                points: project_2d(s, s, dim)
                    .into_iter()
                    .zip(&labels)
                    .map(|((x, y), &l)| (x, y, l))
                    .collect(),
            })
            .collect();
        plots.extend(write_scatter(
            dir,
            "planted_embedding",
            "planted partition: free embeddings collapse per block (2-D PCA)",
            &panels,
        )?);
        let mut series = vec![Series::line(
            "centre sq distance",
            trajectory.iter().map(|t| ((t.0 + 1) as f64, t.2)).collect(),
        )];
        if let Some(pred) = predicted_d2 {
            series.push(Series::prediction(
                "tau ln(p/q) (closed form)",
                trajectory
                    .iter()
                    .map(|t| ((t.0 + 1) as f64, pred))
                    .collect(),
            ));
        }
        series.push(Series::line(
            "within-block spread",
            trajectory.iter().map(|t| ((t.0 + 1) as f64, t.3)).collect(),
        ));
        plots.extend(write_line_chart(
            dir,
            "planted_distances",
            &LineChart {
                title: "planted: centre distance and spread over L-BFGS iterations".into(),
                x_label: "iteration + 1".into(),
                y_label: "squared distance".into(),
                log_x: true,
                log_y: false,
                series,
            },
        )?);
        plots.extend(write_line_chart(
            dir,
            "planted_gap",
            &LineChart {
                title: "planted: H(pi, K_Z) - sum_i Entropy(P_i)".into(),
                x_label: "iteration + 1".into(),
                y_label: "gap to the lower bound".into(),
                log_x: true,
                log_y: true,
                series: vec![Series::line(
                    "H - bound",
                    trajectory
                        .iter()
                        .map(|t| ((t.0 + 1) as f64, t.1.max(1e-16)))
                        .collect(),
                )],
            },
        )?);
    }
    Ok(Report {
        experiment: "planted".into(),
        params: serde_json::json!({
            "blocks": k, "block_size": cfg.block_size, "p": cfg.p, "q": cfg.q, "tau": config.kernel.tau,
            "gamma": config.kernel.gamma, "dim": dim, "seed": config.seed, "max_iter": config.max_iter,
            "kernel_convention": config.kernel.convention(),
        }),
        claims,
        plots,
        details: serde_json::json!({
            "iterations": result.iterations, "grad_max_norm": result.grad_norm,
            "centre_sq_distances": d, "entropy_bound": bound, "final_cross_entropy": result.value,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms_hold_at_small_size() {
        let cfg = PlantedExperimentConfig {
            graph: PlantedConfig {
                blocks: 3,
                block_size: 5,
                p: 0.8,
                q: 0.2,
            },
            dim: 2,
            ..Default::default()
        };
        let r = run(&cfg, None).unwrap();
        assert!(r.all_hold(), "{}", r.to_text());
        let d = r
            .claims
            .iter()
            .find(|c| c.name == "center_sq_distance")
            .unwrap();
        assert!((d.predicted.unwrap() - 0.5 * 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn laplacian_kernel_closed_form() {
        let cfg = PlantedExperimentConfig {
            graph: PlantedConfig {
                blocks: 3,
                block_size: 4,
                p: 0.9,
                q: 0.3,
            },
            kernel: ExpKernel {
                gamma: 1.0,
                tau: 0.5,
            },
            dim: 2,
            ..Default::default()
        };
        let r = run(&cfg, None).unwrap();
        assert!(r.all_hold(), "{}", r.to_text());
    }

    #[test]
    fn q_zero_separates_without_bound() {
        let cfg = PlantedExperimentConfig {
            graph: PlantedConfig {
                blocks: 2,
                block_size: 4,
                p: 1.0,
                q: 0.0,
            },
            dim: 1,
            max_iter: 300,
            ..Default::default()
        };
        let r = run(&cfg, None).unwrap();
        let d = &r.claims[0];
        assert_eq!(d.predicted, None);
        assert!(d.holds, "{}", r.to_text());
    }

    #[test]
    fn too_small_dim_is_refused() {
        let cfg = PlantedExperimentConfig {
            dim: 2,
            ..Default::default()
        };
        let e = run(&cfg, None).unwrap_err().to_string();
        assert!(
            e.contains("`dim` = 2") && e.contains("blocks - 1 = 3"),
            "{e}"
        );
    }
}
