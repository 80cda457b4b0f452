//! `scale` (a benchmark, not part of `all`): a sparse stochastic block model with 100,000 nodes
//! in 10 blocks, average degree 40, 20% of each node's edges across blocks. Spectral embedding
//! (the leading eigenvectors of D^{-1/2} A D^{-1/2}, matrix-free Chebyshev-filtered subspace iteration) and mini-batch
//! free-embedding InfoNCE (through `kinfonce-loss`) each cluster the nodes; the claims are
//! ARI >= 0.95 against the planted blocks. Generation, eigensolver and training are timed apart.

use crate::error::{GraphError, Result};
use crate::free_embedding::{train_sparse_minibatch, SparseTrainConfig};
use crate::generators::SbmConfig;
use crate::graph::Graph;
use crate::kernel::ExpKernel;
use crate::kmeans::{kmeans, KMeansConfig};
use crate::metrics::adjusted_rand_index;
use crate::report::{Claim, Report};
use crate::spectral::{normalised_rows, sparse_spectral_embedding};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings of the `scale` benchmark.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ScaleConfig {
    /// Blocks (default 10).
    pub blocks: usize,
    /// Nodes per block (default 10,000).
    pub block_size: usize,
    /// Average degree (default 40).
    pub degree: f64,
    /// Fraction of each node's edges across blocks (default 0.2).
    pub across: f64,
    /// Embedding dimension of the InfoNCE embeddings (default 16).
    pub dim: usize,
    /// Mini-batch size (default 128: the cost per node update grows with the batch, and many
    /// small steps spread the graph's signal faster than few large ones).
    pub batch: usize,
    /// Mini-batch steps (default 40,000: each node is updated about 100 times).
    pub steps: usize,
    /// Peak lazy-Adam learning rate (default 0.2).
    pub lr: f64,
    /// Kernel (default gamma 2, tau 0.5).
    #[serde(flatten)]
    pub kernel: ExpKernel,
    /// Python with numpy and scipy for the side-by-side `scipy.sparse.linalg.eigsh` run
    /// (default `None`: skipped).
    pub python: Option<PathBuf>,
    /// Seed (default 0).
    pub seed: u64,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            blocks: 10,
            block_size: 10_000,
            degree: 40.0,
            across: 0.2,
            dim: 16,
            batch: 128,
            steps: 40_000,
            lr: 0.2,
            kernel: ExpKernel::default(),
            python: None,
            seed: 0,
        }
    }
}

/// What the scipy run reported.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ScipyRun {
    /// Seconds of `eigsh` alone (building A_norm excluded, as ours excludes building the operator).
    pub eigsh_seconds: f64,
    /// The k largest eigenvalues of A_norm, descending.
    pub eigenvalues: Vec<f64>,
    /// scipy's version.
    pub scipy: String,
}

/// The script the scipy side runs: reads the CSR arrays, times
/// `eigsh(A_norm, k, which='LA', tol=tol)` and prints one JSON line.
const SCIPY_SCRIPT: &str = r#"
import json, sys, time
import numpy as np, scipy, scipy.sparse as sp
from scipy.sparse.linalg import eigsh
d, k, tol = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
indptr = np.fromfile(d + "/indptr.u64", dtype="<u8").astype(np.int64)
indices = np.fromfile(d + "/indices.u64", dtype="<u8").astype(np.int64)
weights = np.fromfile(d + "/weights.f64", dtype="<f8")
n = len(indptr) - 1
a = sp.csr_matrix((weights, indices, indptr), shape=(n, n))
s = 1.0 / np.sqrt(np.asarray(a.sum(axis=1)).ravel())
a_norm = sp.diags(s) @ a @ sp.diags(s)
a_norm = a_norm.tocsr()
t = time.perf_counter()
vals = eigsh(a_norm, k=k, which="LA", tol=tol, return_eigenvectors=True)[0]
secs = time.perf_counter() - t
print(json.dumps({"eigsh_seconds": secs, "eigenvalues": sorted(vals.tolist(), reverse=True), "scipy": scipy.__version__}))
"#;

/// Runs `scipy.sparse.linalg.eigsh(A_norm, k, which='LA')` on `graph` with `python`: the CSR
/// arrays go through files in a temporary folder.
pub fn run_scipy(python: &Path, graph: &Graph, k: usize, tol: f64) -> Result<ScipyRun> {
    let dir = std::env::temp_dir().join(format!("kinfonce-scale-{}", std::process::id()));
    let io = |path: &Path, source| GraphError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let write = |name: &str, bytes: Vec<u8>| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))
    };
    write(
        "indptr.u64",
        graph
            .indptr()
            .iter()
            .flat_map(|&v| (v as u64).to_le_bytes())
            .collect(),
    )?;
    write(
        "indices.u64",
        graph
            .indices()
            .iter()
            .flat_map(|&v| (v as u64).to_le_bytes())
            .collect(),
    )?;
    write(
        "weights.f64",
        graph
            .weights()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    )?;
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(SCIPY_SCRIPT)
        .arg(&dir)
        .arg(k.to_string())
        .arg(tol.to_string())
        .output()
        .map_err(|e| io(python, e));
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    let fail = |message: String| GraphError::Format {
        path: python.to_path_buf(),
        message,
    };
    if !output.status.success() {
        return Err(fail(format!(
            "the scipy eigsh script failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| fail(format!("unreadable scipy output {line:?}: {e}")))
}

/// Runs the benchmark; `progress` receives one line per phase.
pub fn run(config: &ScaleConfig, mut progress: impl FnMut(&str)) -> Result<Report> {
    config.kernel.validate()?;
    let sbm = SbmConfig::with_degree(
        config.blocks,
        config.block_size,
        config.degree,
        config.across,
        config.seed,
    );
    let t = Instant::now();
    let g = sbm.sample()?;
    let gen_s = t.elapsed().as_secs_f64();
    g.require_no_isolated()?;
    let truth = sbm.labels();
    let n = g.n_nodes();
    let k = config.blocks;
    progress(&format!(
        "graph: {n} nodes, {} edges in {gen_s:.2} s",
        g.n_edges()
    ));
    let kmeans_config = KMeansConfig {
        clusters: k,
        seed: config.seed,
        restarts: 3,
        max_iter: 100,
    };
    // Tolerance 1e-6 on the residual: the clustering only needs the invariant subspace.
    let eig_tol = 1e-6;
    let t = Instant::now();
    let emb = sparse_spectral_embedding(&g, k, eig_tol)?;
    let eig_s = t.elapsed().as_secs_f64();
    let rows = normalised_rows(&emb.vectors);
    let spectral = kmeans(&rows, n, k, &kmeans_config)?.labels;
    let spectral_s = t.elapsed().as_secs_f64();
    let ari_spectral = adjusted_rand_index(&spectral, &truth)?;
    progress(&format!(
        "spectral: eigensolver {eig_s:.2} s, with k-means {spectral_s:.2} s, ARI {ari_spectral:.4}"
    ));
    let scipy = match &config.python {
        Some(python) => {
            let run = run_scipy(python, &g, k, eig_tol)?;
            progress(&format!(
                "scipy {}: eigsh {:.2} s (ours {eig_s:.2} s, ratio scipy / ours {:.2})",
                run.scipy,
                run.eigsh_seconds,
                run.eigsh_seconds / eig_s
            ));
            Some(run)
        }
        None => None,
    };
    let t = Instant::now();
    let train = SparseTrainConfig {
        dim: config.dim,
        kernel: config.kernel,
        batch: config.batch,
        steps: config.steps,
        lr: config.lr,
        init_std: 0.1,
        seed: config.seed,
    };
    let every = (config.steps / 10).max(1);
    let z = train_sparse_minibatch(&g, &train, |step, loss| {
        if step % every == 0 || step + 1 == config.steps {
            progress(&format!(
                "infonce step {step}/{}: loss {loss:.4}",
                config.steps
            ));
        }
    })?;
    let train_s = t.elapsed().as_secs_f64();
    let infonce = kmeans(&z, n, k, &kmeans_config)?.labels;
    let infonce_s = t.elapsed().as_secs_f64();
    let ari_infonce = adjusted_rand_index(&infonce, &truth)?;
    progress(&format!(
        "infonce: training {train_s:.2} s, with k-means {infonce_s:.2} s, ARI {ari_infonce:.4}"
    ));
    let mut claims = vec![
        Claim::at_least(
            "ari_spectral_vs_truth",
            1.0,
            ari_spectral,
            0.05,
            "spectral clustering (sparse subspace iteration) recovers the blocks",
        ),
        Claim::at_least(
            "ari_infonce_vs_truth",
            1.0,
            ari_infonce,
            0.05,
            "mini-batch free-embedding InfoNCE recovers the blocks",
        ),
        Claim::at_most(
            "spectral_seconds",
            120.0,
            spectral_s,
            0.0,
            "spectral embedding + k-means in under 2 minutes",
        ),
        Claim::at_most(
            "infonce_seconds",
            120.0,
            infonce_s,
            0.0,
            "InfoNCE training + k-means in under 2 minutes",
        ),
    ];
    let ours_top: Vec<f64> = emb.eigenvalues.iter().map(|l| 1.0 - l).collect();
    if let Some(run) = &scipy {
        let gap = run
            .eigenvalues
            .iter()
            .zip(&ours_top)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        claims.push(Claim::equal(
            "eigenvalues_vs_scipy",
            0.0,
            gap,
            1e-5,
            "max |ours - scipy| over the k largest eigenvalues of A_norm (both solvers at tolerance 1e-6)",
        ));
    }
    Ok(Report {
        experiment: "scale".into(),
        params: serde_json::json!({
            "blocks": k, "block_size": config.block_size, "degree": config.degree, "across": config.across,
            "dim": config.dim, "batch": config.batch, "steps": config.steps, "lr": config.lr, "seed": config.seed,
            "threads": rayon::current_num_threads(), "kernel_convention": config.kernel.convention(),
            "eigensolver_tolerance": eig_tol,
        }),
        claims,
        plots: vec![],
        details: serde_json::json!({
            "nodes": n, "edges": g.n_edges(), "generation_seconds": gen_s,
            "eigensolver_seconds": eig_s, "spectral_seconds": spectral_s, "ari_spectral": ari_spectral,
            "infonce_training_seconds": train_s, "infonce_seconds": infonce_s, "ari_infonce": ari_infonce,
            "eigenvalues_anorm": ours_top,
            "scipy": scipy.as_ref().map(|r| serde_json::json!({
                "eigsh_seconds": r.eigsh_seconds, "eigenvalues_anorm": r.eigenvalues, "version": r.scipy,
                "ratio_scipy_over_ours": r.eigsh_seconds / eig_s,
            })),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_scale_spectral_and_infonce_recover_blocks() {
        // Both halves of the benchmark at a size a test can afford (6,000 nodes, each node
        // updated about 100 times by the mini-batch InfoNCE, as at full size).
        let cfg = ScaleConfig {
            blocks: 4,
            block_size: 1500,
            steps: 2500,
            ..Default::default()
        };
        let r = run(&cfg, |_| {}).unwrap();
        assert_eq!(r.claims[0].name, "ari_spectral_vs_truth");
        assert!(r.claims[0].holds, "{}", r.to_text());
        assert_eq!(r.claims[1].name, "ari_infonce_vs_truth");
        assert!(r.claims[1].holds, "{}", r.to_text());
    }
}
