//! The flags of each experiment. Every flag that sets a setting is an `Option` named like the
//! key of the experiment's config, so the given ones lay over the config's `Default` (see
//! [`crate::overlay`]) and the defaults are written once, in `kinfonce-graph`. Flags that are
//! not settings (`--out`, `--json`, data paths) are `#[serde(skip)]`.

use super::knn;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

/// Flags every experiment takes.
#[derive(Args, Serialize, Debug, Clone)]
pub struct CommonArgs {
    /// Print one JSON object on the last stdout line (the table goes to stderr).
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
    /// Folder for the plots (SVG and PNG); created if missing.
    #[arg(long, value_name = "DIR")]
    #[serde(skip)]
    pub out: Option<PathBuf>,
    /// Random seed (graphs, initialisations, Monte Carlo draws).
    // Capped at i64::MAX: the flags pass through TOML, whose integers are i64.
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64))]
    pub seed: Option<u64>,
}

// `mrf`.
#[derive(Args, Serialize, Debug)]
pub struct MrfArgs {
    /// Nodes of the random graph (the enumeration grows like degree^n; keep <= 8).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Probability of each edge beyond the connecting ring.
    #[arg(long)]
    pub edge_prob: Option<f64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `cross-entropy`.
#[derive(Args, Serialize, Debug)]
pub struct CrossEntropyArgs {
    /// Nodes of the random graph.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Probability of each edge beyond the connecting ring.
    #[arg(long)]
    pub edge_prob: Option<f64>,
    /// Embedding dimension.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Temperature tau (gamma = 2).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Monte Carlo samples.
    #[arg(long)]
    pub samples: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `planted`.
#[derive(Args, Serialize, Debug)]
pub struct PlantedArgs {
    /// Number of blocks K.
    #[arg(long)]
    pub blocks: Option<usize>,
    /// Nodes per block M.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Weight within a block, in [0, 1].
    #[arg(long)]
    pub p: Option<f64>,
    /// Weight across blocks, in [0, 1] (0: no finite optimum, prediction null).
    #[arg(long)]
    pub q: Option<f64>,
    /// Kernel temperature tau > 0.
    #[arg(long)]
    pub tau: Option<f64>,
    /// Kernel exponent gamma in (0, 2].
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Embedding dimension (>= blocks - 1).
    #[arg(long)]
    pub dim: Option<usize>,
    /// L-BFGS iteration budget.
    #[arg(long)]
    pub max_iter: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `spectral-agreement`.
#[derive(Args, Serialize, Debug)]
pub struct SpectralAgreementArgs {
    /// Number of blocks.
    #[arg(long)]
    pub blocks: Option<usize>,
    /// Nodes per block.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Edge probability within blocks.
    #[arg(long)]
    pub p: Option<f64>,
    /// Ratios q/p to sweep, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ratios: Option<Vec<f64>>,
    /// Embedding dimension of the InfoNCE embeddings.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Kernel temperature tau (gamma 2).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Adam steps of InfoNCE training (learning rate 0.05, cosine decay to 0).
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `clip`.
#[derive(Args, Serialize, Debug)]
pub struct ClipArgs {
    /// Classes.
    #[arg(long)]
    pub classes: Option<usize>,
    /// Images (and base texts) per class.
    #[arg(long)]
    pub per_class: Option<usize>,
    /// LaCLIP-style rewrites per text.
    #[arg(long)]
    pub rewrites: Option<usize>,
    /// Monte Carlo draws.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Adam steps of the co-clustering training (cosine decay to 0).
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `batch-size`.
#[derive(Args, Serialize, Debug)]
pub struct BatchSizeArgs {
    /// Batch sizes, comma-separated (the largest should be the node count, 100 by default).
    #[arg(long, value_delimiter = ',')]
    pub batches: Option<Vec<usize>>,
    /// Batches drawn per size.
    #[arg(long)]
    pub draws: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `kernels`.
#[derive(Args, Serialize, Debug)]
pub struct KernelsArgs {
    /// Exponents gamma to test, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub gammas: Option<Vec<f64>>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `scale`.
#[derive(Args, Serialize, Debug)]
pub struct ScaleArgs {
    /// Blocks.
    #[arg(long)]
    pub blocks: Option<usize>,
    /// Nodes per block.
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Average degree.
    #[arg(long)]
    pub degree: Option<f64>,
    /// Fraction of each node's edges across blocks.
    #[arg(long)]
    pub across: Option<f64>,
    /// InfoNCE embedding dimension.
    #[arg(long)]
    pub dim: Option<usize>,
    /// InfoNCE mini-batch size (anchors per step; candidates are anchors + positives).
    #[arg(long)]
    pub batch: Option<usize>,
    /// InfoNCE mini-batch steps (lazy Adam, 5% warmup, cosine decay to 0).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak Adam learning rate of the InfoNCE training.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Python with numpy + scipy for the side-by-side
    /// `scipy.sparse.linalg.eigsh(A_norm, k, which='LA')` run; skipped with a note when the
    /// file does not exist.
    // Not the config's `python`: that one is set only once the file is known to exist.
    #[arg(long, value_name = "PYTHON", default_value = ".venv/bin/python")]
    #[serde(skip)]
    pub scipy_python: PathBuf,
    /// Skip the scipy comparison.
    #[arg(long)]
    #[serde(skip)]
    pub no_scipy: bool,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

impl ScaleArgs {
    /// The Python of the scipy comparison, or `None` (with a note when the file is missing).
    pub fn python(&self) -> Option<PathBuf> {
        if self.no_scipy {
            None
        } else if self.scipy_python.exists() {
            Some(self.scipy_python.clone())
        } else {
            eprintln!(
                "scipy comparison skipped: {} does not exist (--scipy-python PATH to name a Python with scipy)",
                self.scipy_python.display()
            );
            None
        }
    }
}

// `knn-real`.
#[derive(Args, Serialize, Debug)]
pub struct KnnRealArgs {
    /// MNIST folder (IDX files, .gz or not); relative paths resolve from the current folder.
    /// [default: MNIST in the cache folder, where `kinfonce data fetch mnist` puts it]
    #[arg(long, value_name = "PATH", default_value_os_t = knn::default_mnist(), hide_default_value = true)]
    #[serde(skip)]
    pub data: PathBuf,
    /// Test images used, evenly spaced over the 10,000 (classes stay balanced).
    // Not a config key: the images are loaded before the experiment runs.
    #[arg(long, default_value_t = knn::DEFAULT_IMAGES)]
    #[serde(skip)]
    pub n: usize,
    /// Neighbours per image before symmetrising (binary weights).
    #[arg(long)]
    pub neighbours: Option<usize>,
    /// Clusters (and spectral eigenvectors).
    #[arg(long)]
    pub clusters: Option<usize>,
    /// InfoNCE embedding dimension.
    #[arg(long)]
    pub dim: Option<usize>,
    /// Temperature tau of the Gaussian kernel (gamma = 2).
    #[arg(long)]
    pub tau: Option<f64>,
    /// InfoNCE anchors per mini-batch step.
    #[arg(long)]
    pub batch: Option<usize>,
    /// InfoNCE mini-batch steps (lazy Adam, 5% warmup, cosine decay to 0).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak Adam learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

// `all`: no settings, every experiment runs at its default.
#[derive(Args, Debug)]
pub struct AllArgs {
    /// Output folder for report.md and the plots.
    #[arg(long, value_name = "DIR", default_value = "theory-report")]
    pub out: PathBuf,
    /// MNIST folder for `knn-real` (skipped, and noted in the report, when absent).
    /// [default: MNIST in the cache folder, where `kinfonce data fetch mnist` puts it]
    #[arg(long, value_name = "PATH", default_value_os_t = knn::default_mnist(), hide_default_value = true)]
    pub data: PathBuf,
    /// Print one JSON object (all reports) on the last stdout line.
    #[arg(long)]
    pub json: bool,
}
