//! `kinfonce theory ...`: the theory lab. Each experiment prints its closed-form predictions
//! next to the measured values (and with `--json` one JSON object on the last stdout line:
//! `{"experiment", "params", "claims": [{"name", "predicted", "measured", "tolerance", "holds"}]}`),
//! and writes SVG + PNG plots with `--out DIR`. The command fails (exit 1) if a claim does not hold.

use clap::{Args, Subcommand};
use kinfonce_graph::experiments::{
    all, batch_size, clip, cross_entropy, kernels, knn_real, mrf, planted, scale,
    spectral_agreement,
};
use kinfonce_graph::generators::PlantedConfig;
use kinfonce_graph::kernel::ExpKernel;
use kinfonce_graph::report::Report;
use std::path::PathBuf;

/// The theory lab: InfoNCE is spectral clustering, shown numerically.
///
/// Kernel convention: K(x, y) = exp(-||x - y||^gamma / tau), gamma = 2 unless stated; with
/// gamma = 2, -log K = d^2 / tau, the trace form's factor is 2 / tau and planted block centres
/// sit at squared distance tau ln(p/q). Tolerances: exact identities 1e-9, Monte Carlo 3
/// standard errors, optimisation 1e-3.
#[derive(Args, Debug)]
pub struct TheoryArgs {
    #[command(subcommand)]
    pub experiment: TheoryCommand,
}

/// Flags every experiment takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Print one JSON object on the last stdout line (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Folder for the plots (SVG and PNG); created if missing.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Random seed (graphs, initialisations, Monte Carlo draws).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Subcommand, Debug)]
pub enum TheoryCommand {
    /// Row factorisation of the MRF P(W; pi) by enumerating all unit-out-degree subgraphs.
    Mrf {
        /// Nodes of the random graph (the enumeration grows like degree^n; keep <= 8).
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Probability of each edge beyond the connecting ring.
        #[arg(long, default_value_t = 0.6)]
        edge_prob: f64,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// H(pi, K_Z) three ways (direct, trace form, Monte Carlo) and sampled InfoNCE = H.
    CrossEntropy {
        /// Nodes of the random graph.
        #[arg(long, default_value_t = 30)]
        nodes: usize,
        /// Probability of each edge beyond the connecting ring.
        #[arg(long, default_value_t = 0.2)]
        edge_prob: f64,
        /// Embedding dimension.
        #[arg(long, default_value_t = 3)]
        dim: usize,
        /// Temperature tau (gamma = 2).
        #[arg(long, default_value_t = 0.5)]
        tau: f64,
        /// Monte Carlo samples.
        #[arg(long, default_value_t = 4000)]
        samples: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Free-embedding optimum on a planted partition: blocks collapse, centres at squared
    /// distance (tau ln(p/q))^(2/gamma), H reaches sum_i Entropy(P_i). Needs dim >= blocks - 1.
    Planted {
        /// Number of blocks K.
        #[arg(long, default_value_t = 4)]
        blocks: usize,
        /// Nodes per block M.
        #[arg(long, default_value_t = 8)]
        block_size: usize,
        /// Weight within a block, in [0, 1].
        #[arg(long, default_value_t = 0.9)]
        p: f64,
        /// Weight across blocks, in [0, 1] (0: no finite optimum, prediction null).
        #[arg(long, default_value_t = 0.1)]
        q: f64,
        /// Kernel temperature tau > 0.
        #[arg(long, default_value_t = 0.5)]
        tau: f64,
        /// Kernel exponent gamma in (0, 2].
        #[arg(long, default_value_t = 2.0)]
        gamma: f64,
        /// Embedding dimension (>= blocks - 1).
        #[arg(long, default_value_t = 3)]
        dim: usize,
        /// L-BFGS iteration budget.
        #[arg(long, default_value_t = 3000)]
        max_iter: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// SBM sweep over q/p: InfoNCE clusters vs Laplacian-eigenvector clusters (ARI curves).
    SpectralAgreement {
        /// Number of blocks.
        #[arg(long, default_value_t = 4)]
        blocks: usize,
        /// Nodes per block.
        #[arg(long, default_value_t = 40)]
        block_size: usize,
        /// Edge probability within blocks.
        #[arg(long, default_value_t = 0.5)]
        p: f64,
        /// Ratios q/p to sweep, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0.02,0.05,0.1,0.15,0.2,0.3,0.4,0.6"
        )]
        ratios: Vec<f64>,
        /// Embedding dimension of the InfoNCE embeddings.
        #[arg(long, default_value_t = 4)]
        dim: usize,
        /// Kernel temperature tau (gamma 2).
        #[arg(long, default_value_t = 0.5)]
        tau: f64,
        /// Adam steps of InfoNCE training (learning rate 0.05, cosine decay to 0).
        #[arg(long, default_value_t = 1500)]
        steps: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// CLIP on the bipartite pair graph: identity, edge- vs object-uniform gap, co-clustering.
    Clip {
        /// Classes.
        #[arg(long, default_value_t = 3)]
        classes: usize,
        /// Images (and base texts) per class.
        #[arg(long, default_value_t = 8)]
        per_class: usize,
        /// LaCLIP-style rewrites per text.
        #[arg(long, default_value_t = 1)]
        rewrites: usize,
        /// Monte Carlo draws.
        #[arg(long, default_value_t = 3000)]
        samples: usize,
        /// Adam steps of the co-clustering training (cosine decay to 0).
        #[arg(long, default_value_t = 800)]
        steps: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Mini-batch InfoNCE vs the full loss H as the batch grows (bias, gradient error).
    BatchSize {
        /// Batch sizes, comma-separated (the largest should be the node count, 100 by default).
        #[arg(long, value_delimiter = ',', default_value = "4,8,16,32,64,100")]
        batches: Vec<usize>,
        /// Batches drawn per size.
        #[arg(long, default_value_t = 300)]
        draws: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Positive-definiteness of exp(-||x - y||^gamma) (iff gamma <= 2) and of mixtures; max-entropy.
    Kernels {
        /// Exponents gamma to test, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.5,1,1.5,2,2.5,3,4")]
        gammas: Vec<f64>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Benchmark (not in `all`): sparse SBM, 100,000 nodes in 10 blocks, degree 40, 20% across;
    /// sparse spectral embedding and mini-batch InfoNCE (d = 16) each must reach ARI >= 0.95.
    Scale {
        /// Blocks.
        #[arg(long, default_value_t = 10)]
        blocks: usize,
        /// Nodes per block.
        #[arg(long, default_value_t = 10_000)]
        block_size: usize,
        /// Average degree.
        #[arg(long, default_value_t = 40.0)]
        degree: f64,
        /// Fraction of each node's edges across blocks.
        #[arg(long, default_value_t = 0.2)]
        across: f64,
        /// InfoNCE embedding dimension.
        #[arg(long, default_value_t = 16)]
        dim: usize,
        /// InfoNCE mini-batch size (anchors per step; candidates are anchors + positives).
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// InfoNCE mini-batch steps (lazy Adam, 5% warmup, cosine decay to 0).
        #[arg(long, default_value_t = 40_000)]
        steps: usize,
        /// Peak Adam learning rate of the InfoNCE training.
        #[arg(long, default_value_t = 0.2)]
        lr: f64,
        /// Python with numpy + scipy for the side-by-side
        /// `scipy.sparse.linalg.eigsh(A_norm, k, which='LA')` run; skipped with a note when the
        /// file does not exist.
        #[arg(long, value_name = "PYTHON", default_value = ".venv/bin/python")]
        scipy_python: PathBuf,
        /// Skip the scipy comparison.
        #[arg(long)]
        no_scipy: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// k-nearest-neighbour graph over real MNIST test digits (pixels / 255): spectral clustering
    /// vs InfoNCE free embeddings on the same graph, both scored against the digit labels.
    /// Skipped with a message (not failed) when the data folder is absent.
    KnnReal {
        /// MNIST folder (IDX files, .gz or not); relative paths resolve from the current folder.
        /// [default: MNIST in the cache folder, where `kinfonce data fetch mnist` puts it]
        #[arg(long, value_name = "PATH", default_value_os_t = default_mnist(), hide_default_value = true)]
        data: PathBuf,
        /// Test images used, evenly spaced over the 10,000 (classes stay balanced).
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Neighbours per image before symmetrising (binary weights).
        #[arg(long, default_value_t = 10)]
        neighbours: usize,
        /// Clusters (and spectral eigenvectors).
        #[arg(long, default_value_t = 10)]
        clusters: usize,
        /// InfoNCE embedding dimension.
        #[arg(long, default_value_t = 16)]
        dim: usize,
        /// Temperature tau of the Gaussian kernel (gamma = 2).
        #[arg(long, default_value_t = 0.5)]
        tau: f64,
        /// InfoNCE anchors per mini-batch step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// InfoNCE mini-batch steps (lazy Adam, 5% warmup, cosine decay to 0).
        #[arg(long, default_value_t = 12_000)]
        steps: usize,
        /// Peak Adam learning rate.
        #[arg(long, default_value_t = 0.1)]
        lr: f64,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Every experiment at default size; writes DIR/report.md with the plots.
    All {
        /// Output folder for report.md and the plots.
        #[arg(long, value_name = "DIR", default_value = "theory-report")]
        out: PathBuf,
        /// MNIST folder for `knn-real` (skipped, and noted in the report, when absent).
        /// [default: MNIST in the cache folder, where `kinfonce data fetch mnist` puts it]
        #[arg(long, value_name = "PATH", default_value_os_t = default_mnist(), hide_default_value = true)]
        data: PathBuf,
        /// Print one JSON object (all reports) on the last stdout line.
        #[arg(long)]
        json: bool,
    },
}

/// Default MNIST folder of `knn-real`: the one `kinfonce data fetch mnist` fills in the cache
/// folder (`$KINFONCE_DATA` or `~/.cache/kinfonce`).
pub fn default_mnist() -> PathBuf {
    let cache = kinfonce_data::fetch::default_cache_dir();
    match kinfonce_data::fetch::known_dataset("mnist") {
        Ok(d) => cache.join(d.name).join(d.data_path),
        Err(_) => cache.join("mnist"),
    }
}

/// Why `knn-real` cannot run on `path`, when the folder is absent.
fn missing_data(path: &std::path::Path) -> Option<String> {
    (!path.exists()).then(|| {
        format!(
            "MNIST not found at {} (`kinfonce data fetch mnist` downloads it; --data PATH points at IDX files elsewhere)",
            path.display()
        )
    })
}

/// `n` MNIST test images, evenly spaced, as f64 pixels / 255 with their digit labels.
pub fn load_mnist_points(
    path: &std::path::Path,
    n: usize,
) -> anyhow::Result<knn_real::KnnRealData> {
    let test = kinfonce_data::DataConfig::new(path).load(kinfonce_data::Split::Test)?;
    let idx = knn_real::evenly_spaced(test.len(), n)?;
    let dim = test.image_len();
    let mut points = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for &i in &idx {
        points.extend(test.image(i).iter().map(|&v| f64::from(v) / 255.0));
        labels.push(test.labels()[i] as usize);
    }
    Ok(knn_real::KnnRealData {
        points,
        dim,
        labels,
        source: format!("MNIST test, {n} of {} images", test.len()),
    })
}

/// Runs one experiment (or all) and returns the reports, without printing.
pub fn execute(cmd: &TheoryCommand) -> anyhow::Result<Vec<Report>> {
    let report = match cmd {
        TheoryCommand::Mrf {
            nodes,
            edge_prob,
            common,
        } => mrf::run(
            &mrf::MrfConfig {
                nodes: *nodes,
                edge_prob: *edge_prob,
                seed: common.seed,
            },
            common.out.as_deref(),
        )?,
        TheoryCommand::CrossEntropy {
            nodes,
            edge_prob,
            dim,
            tau,
            samples,
            common,
        } => cross_entropy::run(
            &cross_entropy::CrossEntropyConfig {
                nodes: *nodes,
                edge_prob: *edge_prob,
                dim: *dim,
                tau: *tau,
                samples: *samples,
                seed: common.seed,
            },
            common.out.as_deref(),
        )?,
        TheoryCommand::Planted {
            blocks,
            block_size,
            p,
            q,
            tau,
            gamma,
            dim,
            max_iter,
            common,
        } => planted::run(
            &planted::PlantedExperimentConfig {
                graph: PlantedConfig {
                    blocks: *blocks,
                    block_size: *block_size,
                    p: *p,
                    q: *q,
                },
                kernel: ExpKernel {
                    gamma: *gamma,
                    tau: *tau,
                },
                dim: *dim,
                seed: common.seed,
                max_iter: *max_iter,
            },
            common.out.as_deref(),
        )?,
        TheoryCommand::SpectralAgreement {
            blocks,
            block_size,
            p,
            ratios,
            dim,
            tau,
            steps,
            common,
        } => spectral_agreement::run(
            &spectral_agreement::SpectralAgreementConfig {
                blocks: *blocks,
                block_size: *block_size,
                p: *p,
                ratios: ratios.clone(),
                dim: *dim,
                kernel: ExpKernel {
                    gamma: 2.0,
                    tau: *tau,
                },
                steps: *steps,
                seed: common.seed,
            },
            common.out.as_deref(),
        )?,
        TheoryCommand::Clip {
            classes,
            per_class,
            rewrites,
            samples,
            steps,
            common,
        } => clip::run(
            &clip::ClipConfig {
                classes: *classes,
                per_class: *per_class,
                rewrites: *rewrites,
                samples: *samples,
                steps: *steps,
                seed: common.seed,
                ..Default::default()
            },
            common.out.as_deref(),
        )?,
        TheoryCommand::BatchSize {
            batches,
            draws,
            common,
        } => batch_size::run(
            &batch_size::BatchSizeConfig {
                batches: batches.clone(),
                draws: *draws,
                seed: common.seed,
                ..Default::default()
            },
            common.out.as_deref(),
        )?,
        TheoryCommand::Kernels { gammas, common } => kernels::run(
            &kernels::KernelsConfig {
                gammas: gammas.clone(),
                seed: common.seed,
                ..Default::default()
            },
            common.out.as_deref(),
        )?,
        TheoryCommand::Scale {
            blocks,
            block_size,
            degree,
            across,
            dim,
            batch,
            steps,
            lr,
            scipy_python,
            no_scipy,
            common,
        } => {
            let python = if *no_scipy {
                None
            } else if scipy_python.exists() {
                Some(scipy_python.clone())
            } else {
                eprintln!(
                    "scipy comparison skipped: {} does not exist (--scipy-python PATH to name a Python with scipy)",
                    scipy_python.display()
                );
                None
            };
            scale::run(
                &scale::ScaleConfig {
                    blocks: *blocks,
                    block_size: *block_size,
                    degree: *degree,
                    across: *across,
                    dim: *dim,
                    batch: *batch,
                    steps: *steps,
                    lr: *lr,
                    python,
                    seed: common.seed,
                    ..Default::default()
                },
                |line| eprintln!("{line}"),
            )?
        }
        TheoryCommand::KnnReal {
            data,
            n,
            neighbours,
            clusters,
            dim,
            tau,
            batch,
            steps,
            lr,
            common,
        } => {
            if let Some(reason) = missing_data(data) {
                eprintln!("knn-real skipped: {reason}");
                return Ok(vec![]);
            }
            let points = load_mnist_points(data, *n)?;
            knn_real::run(
                &knn_real::KnnRealConfig {
                    neighbours: *neighbours,
                    clusters: *clusters,
                    dim: *dim,
                    kernel: ExpKernel {
                        gamma: 2.0,
                        tau: *tau,
                    },
                    batch: *batch,
                    steps: *steps,
                    lr: *lr,
                    seed: common.seed,
                },
                &points,
                common.out.as_deref(),
            )?
        }
        TheoryCommand::All { out, data, .. } => {
            let loaded = match missing_data(data) {
                Some(reason) => {
                    eprintln!("knn-real skipped: {reason}");
                    Err(reason)
                }
                None => Ok(load_mnist_points(data, 2000)?),
            };
            return Ok(all::run_all(
                out,
                loaded.as_ref().map_err(Clone::clone),
                |name| eprintln!("running {name} ..."),
            )?);
        }
    };
    Ok(vec![report])
}

fn wants_json(cmd: &TheoryCommand) -> bool {
    match cmd {
        TheoryCommand::Mrf { common, .. }
        | TheoryCommand::CrossEntropy { common, .. }
        | TheoryCommand::Planted { common, .. }
        | TheoryCommand::SpectralAgreement { common, .. }
        | TheoryCommand::Clip { common, .. }
        | TheoryCommand::BatchSize { common, .. }
        | TheoryCommand::Kernels { common, .. }
        | TheoryCommand::Scale { common, .. }
        | TheoryCommand::KnnReal { common, .. } => common.json,
        TheoryCommand::All { json, .. } => *json,
    }
}

/// The JSON line: one report as is; `all` as `{"experiment": "all", "reports": [...]}`.
pub fn json_line(cmd: &TheoryCommand, reports: &[Report]) -> String {
    match (cmd, reports) {
        (TheoryCommand::All { out, .. }, _) => serde_json::json!({
            "experiment": "all",
            "report": out.join("report.md"),
            "claims_total": reports.iter().map(|r| r.claims.len()).sum::<usize>(),
            "claims_holding": reports.iter().map(|r| r.claims.iter().filter(|c| c.holds).count()).sum::<usize>(),
            "reports": reports,
        })
        .to_string(),
        (TheoryCommand::KnnReal { data, .. }, []) => serde_json::json!({
            "experiment": "knn-real",
            "skipped": missing_data(data).unwrap_or_default(),
            "claims": [],
        })
        .to_string(),
        (_, [one]) => one.to_json_line(),
        _ => serde_json::to_string(reports).unwrap_or_default(),
    }
}

pub fn run(args: TheoryArgs) -> anyhow::Result<()> {
    let cmd = &args.experiment;
    let reports = execute(cmd)?;
    let json = wants_json(cmd);
    for r in &reports {
        if json {
            eprint!("{}", r.to_text());
        } else {
            print!("{}", r.to_text());
        }
    }
    if let TheoryCommand::All { out, .. } = cmd {
        let line = format!("report: {}", out.join("report.md").display());
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    if json {
        println!("{}", json_line(cmd, &reports));
    }
    let failed: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.claims
                .iter()
                .filter(|c| !c.holds)
                .map(move |c| format!("{}/{}", r.experiment, c.name))
        })
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} claim(s) did not hold: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: TheoryCommand,
    }

    #[test]
    fn planted_json_contract() {
        let cli = Cli::try_parse_from([
            "theory",
            "planted",
            "--blocks",
            "3",
            "--block-size",
            "4",
            "--p",
            "0.8",
            "--q",
            "0.2",
            "--tau",
            "0.5",
            "--dim",
            "2",
            "--seed",
            "1",
            "--json",
        ])
        .unwrap();
        let reports = execute(&cli.cmd).unwrap();
        let line = json_line(&cli.cmd, &reports);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["experiment"], "planted");
        assert_eq!(v["params"]["blocks"], 3);
        for name in [
            "center_sq_distance",
            "within_block_spread",
            "cross_entropy_vs_bound",
        ] {
            let c = v["claims"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap();
            for key in ["predicted", "measured", "tolerance", "holds"] {
                assert!(c.get(key).is_some(), "{name} lacks {key}");
            }
            assert_eq!(c["holds"], true, "{c}");
        }
        let d = v["claims"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "center_sq_distance")
            .unwrap();
        assert!((d["predicted"].as_f64().unwrap() - 0.5 * 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn planted_refuses_small_dim() {
        let cli =
            Cli::try_parse_from(["theory", "planted", "--blocks", "5", "--dim", "3"]).unwrap();
        let e = execute(&cli.cmd).unwrap_err().to_string();
        assert!(e.contains("dim") && e.contains("blocks - 1 = 4"), "{e}");
    }

    #[test]
    fn q_zero_predicts_null() {
        let cli = Cli::try_parse_from([
            "theory",
            "planted",
            "--blocks",
            "2",
            "--block-size",
            "3",
            "--p",
            "1",
            "--q",
            "0",
            "--dim",
            "1",
            "--max-iter",
            "200",
            "--json",
        ])
        .unwrap();
        let reports = execute(&cli.cmd).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json_line(&cli.cmd, &reports)).unwrap();
        let d = v["claims"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "center_sq_distance")
            .unwrap();
        assert!(d["predicted"].is_null());
        assert_eq!(d["holds"], true);
    }

    #[test]
    fn knn_real_skips_without_data() {
        let cli = Cli::try_parse_from([
            "theory",
            "knn-real",
            "--data",
            "/nonexistent/mnist",
            "--json",
        ])
        .unwrap();
        let reports = execute(&cli.cmd).unwrap();
        assert!(reports.is_empty());
        let v: serde_json::Value = serde_json::from_str(&json_line(&cli.cmd, &reports)).unwrap();
        assert_eq!(v["experiment"], "knn-real");
        assert!(v["skipped"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/mnist"));
    }

    #[test]
    fn knn_real_on_mnist_reports_spectral_recovery() {
        let data =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
        if !data.exists() {
            eprintln!("skipping: MNIST not found at {}", data.display());
            return;
        }
        let points = load_mnist_points(&data, 500).unwrap();
        assert_eq!(points.dim, 784);
        assert!(points.points.iter().all(|&x| (0.0..=1.0).contains(&x)));
        // Evenly spaced over the test set: every digit is present, none dominates.
        let mut counts = [0usize; 10];
        points.labels.iter().for_each(|&l| counts[l] += 1);
        assert!(counts.iter().all(|&c| (25..=80).contains(&c)), "{counts:?}");
        let r = knn_real::run(
            &knn_real::KnnRealConfig {
                steps: 2000,
                ..Default::default()
            },
            &points,
            None,
        )
        .unwrap();
        let names: Vec<&str> = r.claims.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ari_infonce_vs_spectral", "trace_form_vs_direct"]);
        // Spectral clustering of raw-pixel kNN graphs finds the digits well above chance
        // (NMI 0.66 at n = 2,000).
        let nmi_spectral = r.details["nmi_spectral_vs_truth"].as_f64().unwrap();
        assert!(nmi_spectral > 0.5, "{nmi_spectral}");
        // The prediction of the agreement claim is InfoNCE's agreement with itself.
        let ari_self = r.details["ari_infonce_seed_vs_seed"].as_f64().unwrap();
        assert_eq!(r.claims[0].predicted, Some(ari_self));
        assert!(r.claims[1].holds, "{}", r.to_text());
    }
}
