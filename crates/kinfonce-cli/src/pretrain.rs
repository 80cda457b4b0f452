//! `kinfonce pretrain`: self-supervised pretraining of a ResNet encoder with a Kernel-InfoNCE
//! loss (SimCLR pairing), on the CPU or a CUDA GPU.
//!
//! Precedence of settings: flag > `--config FILE` (TOML, keys = flag names in snake_case) >
//! preset > built-in default.

use crate::launcher::{self, LaunchPlan};
use crate::loss_options::{apply_loss_options, take_loss_options};
use crate::run_lock::RunLock;
use crate::{default_data, overlay};
use anyhow::{bail, Context};
use kinfonce_train::checkpoint;
use kinfonce_train::compare::{run_state_with, RunState};
use kinfonce_train::distributed::{dist_err, Backend, Distributed, Launch, ProcessGroup};
use kinfonce_train::error::TrainError;
use kinfonce_train::trainer::{self, read_run_config};
use kinfonce_train::{Precision, RunOptions, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

/// Pretrain an encoder with a Kernel-InfoNCE loss.
///
/// Kernel convention: K(x, y) = exp(-||x - y||_p^gamma / tau); gamma = 2 on unit vectors is
/// SimCLR's NT-Xent at temperature tau / 2. Presets: gaussian (gamma 2, tau 0.4),
/// laplacian (gamma 1, tau 0.2), exp-0.5 (gamma 0.5, tau 0.15), simple-sum (one softmax over
/// 0.5 K(1, 0.2) + 0.5 K(2, 0.4)), sum-of-losses (0.5 L(gamma 1) + 0.5 L(gamma 2), tau 0.2),
/// concat-sum (head output doubled; gamma 1 on the first half, gamma 2 on the second, tau 0.2).
///
/// A run is a folder: config.toml, metrics.jsonl (+ metrics.csv), checkpoints/, report.md,
/// loss.svg. Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and stops; `--resume DIR` continues.
#[derive(clap::Args, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PretrainArgs {
    /// Data set: a file or folder (CIFAR-10/100 binary or .tar.gz, MNIST IDX, STL-10, an
    /// ImageFolder, TinyImageNet). [default: $KINFONCE_DATA, else CIFAR-10 from the cache
    /// folder, else downloaded into it (checksum verified); offline, a built-in synthetic set
    /// of 10 shape classes]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data layout when detection is not wanted: cifar10, cifar100, mnist, stl10, imagefolder,
    /// tiny-imagenet.
    #[arg(long)]
    pub format: Option<String>,
    /// Loss preset: gaussian, laplacian, exp-0.5, simple-sum, sum-of-losses, concat-sum.
    #[arg(long)]
    pub preset: Option<String>,
    /// Kernel exponent gamma in (0, 2] (first kernel of sum-of-losses / concat-sum).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Second kernel's gamma of sum-of-losses / concat-sum.
    #[arg(long)]
    pub gamma2: Option<f64>,
    /// Kernel temperature tau > 0 (shared by both kernels of sum-of-losses / concat-sum).
    #[arg(long)]
    pub tau: Option<f64>,
    /// Norm of the kernel distance: 1, 2 or inf.
    #[arg(long)]
    pub p: Option<String>,
    /// Weight lambda in [0, 1] of the first loss (sum-of-losses, concat-sum).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// The whole loss as JSON (kinfonce-loss `LossSpec`), overriding the preset, e.g.
    /// '{"loss":"info_nce","kernel":{"type":"exp","gamma":1.0,"tau":0.2}}'.
    #[serde(skip)]
    #[arg(long)]
    pub loss_json: Option<String>,
    /// Method: simclr (the two views are each other's positive and candidates) or moco
    /// (queries against keys of a momentum encoder, negatives from a queue of past keys; on
    /// several processes each forwards whole --bn-splits groups and all keys join one queue).
    #[arg(long, value_name = "simclr|moco")]
    pub method: Option<String>,
    /// MoCo: momentum m of the key encoder (m * momentum + (1 - m) * trained before each step).
    #[arg(long, value_name = "M")]
    pub moco_momentum: Option<f64>,
    /// MoCo: keys in the queue of negatives.
    #[arg(long, value_name = "KEYS")]
    pub queue_size: Option<usize>,
    /// MoCo: batch-norm splits of both encoders in training (samples i, i + s, ... share
    /// statistics, as if on s devices); 1 = plain batch norm.
    #[arg(long, value_name = "S")]
    pub bn_splits: Option<usize>,
    /// A whole recipe of the official code, below --config and the other flags: moco-origin,
    /// moco-sum (MoCo with its queue, head, augmentation, optimiser and batch; README "MoCo").
    #[serde(skip)]
    #[arg(long, value_name = "NAME")]
    pub run_preset: Option<String>,
    /// The views' augmentation: auto (the data set's SimCLR preset), moco-v2 (lightly's MoCo v2
    /// transform from lightly 1.4.24 on: crop 0.2-1, jitter 0.4/0.4/0.4/0.1, no blur, ImageNet
    /// normalisation) or moco-v2-simclr-views (the same before 1.4.24: SimCLR's crop 0.08-1 and
    /// jitter 0.8/0.8/0.8/0.2).
    #[arg(long, value_name = "auto|moco-v2|moco-v2-simclr-views")]
    pub augment: Option<String>,
    /// Batch norm in the projection head: `--head-bn` on (SimCLR's head), `--head-bn=false`
    /// off (Linear - ReLU - Linear, lightly's MoCo head).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub head_bn: Option<bool>,
    /// Encoder: resnet18, resnet34, resnet50.
    #[arg(long)]
    pub arch: Option<String>,
    /// Base channel count (64 = standard ResNet; 16 or 8 for small CPU runs).
    #[arg(long)]
    pub width: Option<i64>,
    /// Stem: auto (stl10 for STL-10, cifar below 64 px, imagenet from 64 px up), cifar (3x3
    /// conv, no max-pool), imagenet (7x7 conv, max-pool), stl10 (7x7 conv, no max-pool).
    #[arg(long)]
    pub stem: Option<String>,
    /// A ReLU after the stem's batch norm: `--stem-relu` on (torchvision's ResNet),
    /// `--stem-relu=false` off (the official MoCo backbone, lightly's ResNet cut before its
    /// classifier).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub stem_relu: Option<bool>,
    /// Convolution initialisation: kaiming-fan-out (torchvision's) or torch-default (PyTorch's
    /// nn.Conv2d default, as lightly's ResNet).
    #[arg(long, value_name = "kaiming-fan-out|torch-default")]
    pub init: Option<String>,
    /// Batch-norm statistics in training forwards: separate (per view, the official code's two
    /// forwards) or joint (both views in one forward, as google-research/simclr).
    #[arg(long, value_name = "separate|joint")]
    pub bn_views: Option<String>,
    /// Projection head hidden width.
    #[arg(long)]
    pub hidden_dim: Option<i64>,
    /// Projection output dimension (doubled by concat-sum).
    #[arg(long)]
    pub out_dim: Option<i64>,
    /// Norm p of the projection normalisation (1, 2 or inf).
    #[arg(long)]
    pub norm_p: Option<f64>,
    /// Squared norm mu of the projections (scale sqrt(mu)).
    #[arg(long)]
    pub mu: Option<f64>,
    /// Pairs (images) per step; each step sees 2 x batch views.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Schedule length in epochs. [default: 10 when --max-steps is absent]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: Option<u64>,
    /// Learning-rate schedule: warmup-cosine-per-step (linear warmup for min(10 epochs, 10%),
    /// then a cosine stepped per batch; the official SimCLR) or cosine-per-epoch (no warmup, a
    /// cosine stepped once per epoch; the official MoCo).
    #[arg(long, value_name = "warmup-cosine-per-step|cosine-per-epoch")]
    pub schedule: Option<String>,
    /// Stop after this many steps (alone: the schedule's horizon).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Train on a class-balanced seeded subset of N training images (leave it out for all).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub subset: Option<u64>,
    /// Fraction of training images held out for the k-NN monitor.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Image folders: auto (stream a folder whose images differ in size or would take more
    /// than 2 GiB decoded, the crop taken at decode), always or never.
    #[arg(long, value_parser = ["auto", "always", "never"])]
    pub stream: Option<String>,
    /// Side of a streamed folder's views.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub view_size: Option<u64>,
    /// Seed of everything random.
    // Capped at i64::MAX: settings pass through TOML, whose integers are i64.
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64))]
    pub seed: Option<u64>,
    /// Optimiser: adam, lars, sgd.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Base learning rate. [default: adam 1e-3, lars 0.3, sgd 0.05]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay (on every parameter unless --exclude-bn-bias).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Leave biases and batch-norm parameters out of weight decay (and LARS adaptation):
    /// `--exclude-bn-bias` on, `--exclude-bn-bias=false` off. [default: off, as the official
    /// code]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub exclude_bn_bias: Option<bool>,
    /// Momentum of SGD and LARS.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// LARS trust coefficient.
    #[arg(long)]
    pub trust_coefficient: Option<f64>,
    /// Learning rate of the online linear probe (Adam; trained as pl_bolts'
    /// SSLOnlineEvaluator on its own crop + flip view through the encoder in eval mode).
    #[arg(long)]
    pub probe_lr: Option<f64>,
    /// Compute precision: auto, f32 or bf16 (bf16 keeps f32 master weights and loss). auto
    /// picks bf16 on CPUs that compute it natively (avx512_bf16 or AMX) and on GPUs of compute
    /// capability 8.0 or newer, f32 elsewhere (bf16 is emulated about 12x slower there);
    /// `kinfonce info` shows the choice.
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Channels-last memory layout: `--channels-last` on, `--channels-last=false` off.
    /// [default: chosen with the precision: on for CPUs and for bf16 on GPUs]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub channels_last: Option<bool>,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// What computes the loss: auto (the fused kernel on CPUs, libtorch tensor ops on GPUs),
    /// fused or tensor.
    #[arg(long, value_name = "auto|fused|tensor")]
    pub loss_engine: Option<String>,
    /// Threads for libtorch and the augmentation workers (0 = all cores); with
    /// --nproc-per-node, the node's threads, split between its processes.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Data parallelism: processes to start on this node, as torchrun's --nproc-per-node (the
    /// same binary also runs under `torchrun --no-python`). --batch is pairs per process; the
    /// run keeps the global batch, and its trajectory does not depend on the process count.
    #[serde(skip)]
    #[arg(long, value_name = "N", value_parser = at_least_one, help_heading = "Several processes")]
    pub nproc_per_node: Option<usize>,
    /// Nodes of the job (each runs this command with its own --node-rank). [default: 1]
    #[serde(skip)]
    #[arg(long, value_name = "M", value_parser = at_least_one, help_heading = "Several processes")]
    pub nnodes: Option<usize>,
    /// This node's rank, 0 .. nnodes - 1. [default: 0]
    #[serde(skip)]
    #[arg(long, value_name = "K", help_heading = "Several processes")]
    pub node_rank: Option<usize>,
    /// Address of node 0, where the rendezvous runs. [default: $MASTER_ADDR, else 127.0.0.1 on
    /// one node; several nodes need it]
    #[serde(skip)]
    #[arg(long, value_name = "HOST", help_heading = "Several processes")]
    pub master_addr: Option<String>,
    /// Port of the rendezvous on node 0. [default: $MASTER_PORT, else a free port on one node
    /// and 29500 on several]
    #[serde(skip)]
    #[arg(long, value_name = "PORT", help_heading = "Several processes")]
    pub master_port: Option<u16>,
    /// Start more processes on this node than it has CPU cores (refused by default on CPUs:
    /// they would only slow each other down, and many exhaust memory).
    #[serde(skip)]
    #[arg(long, help_heading = "Several processes")]
    pub oversubscribe: bool,
    /// Collective backend: auto (NCCL when training on CUDA, else Gloo), gloo, nccl (builds with
    /// --features cuda). Each rank trains on cuda:LOCAL_RANK (cuda:0 when it sees one GPU).
    #[serde(skip)]
    #[arg(
        long,
        value_name = "auto|gloo|nccl",
        help_heading = "Several processes"
    )]
    pub backend: Option<String>,
    /// Seconds a process waits for the others (rendezvous, a collective) before giving up.
    /// [default: 300]
    #[serde(skip)]
    #[arg(long, value_name = "SECONDS", help_heading = "Several processes")]
    pub dist_timeout: Option<u64>,
    /// Each process's anchors compete with its own rows only, instead of the candidates
    /// gathered from every process (the per-process loss).
    #[arg(long, help_heading = "Several processes")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub local_negatives: bool,
    /// Keep batch-norm statistics per process (by default they are synchronised across the
    /// processes, per view under --bn-views separate).
    #[serde(skip)]
    #[arg(long, help_heading = "Several processes")]
    pub no_sync_bn: bool,
    /// Scale --lr with the number of processes when a run starts: none, linear (x W) or sqrt
    /// (x sqrt W). [default: none]
    #[serde(skip)]
    #[arg(
        long,
        value_name = "none|linear|sqrt",
        help_heading = "Several processes"
    )]
    pub lr_scaling: Option<String>,
    /// Reproducible run: same seed and threads give bitwise the same losses.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// A step line in metrics.jsonl every N steps.
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Checkpoint every N steps (0 = off).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Checkpoint every M minutes (0 = off).
    #[arg(long, value_parser = parse_minutes)]
    pub checkpoint_minutes: Option<f64>,
    /// Checkpoints kept.
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// k-NN monitor: neighbours k.
    #[arg(long)]
    pub knn_k: Option<i64>,
    /// k-NN monitor: temperature.
    #[arg(long)]
    pub knn_t: Option<f64>,
    /// k-NN monitor every N epochs (0 = off).
    #[arg(long)]
    pub knn_every: Option<u64>,
    /// k-NN monitor: at most N bank images from train.
    #[arg(long)]
    pub knn_bank: Option<usize>,
    /// k-NN monitor: at most N query images from val.
    #[arg(long)]
    pub knn_queries: Option<usize>,
    /// TOML file of settings (keys: these flags in snake_case).
    #[serde(skip)]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run folder. [default: runs/<preset>-<arch>-w<width>-<unix time>]
    #[serde(skip)]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in DIR from its newest checkpoint, with its saved configuration.
    #[serde(skip)]
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Print the summary as one JSON object on the last line of stdout.
    #[serde(skip)]
    #[arg(long)]
    pub json: bool,
}

/// A count of at least 1 (processes, nodes).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number >= 1".into()),
    }
}

fn parse_minutes(s: &str) -> Result<f64, String> {
    let minutes = s.parse::<f64>().map_err(|e| e.to_string())?;
    kinfonce_train::config::check_checkpoint_minutes(minutes)
}

/// The flags given, as a TOML table with the config file's keys.
fn flag_table(a: &PretrainArgs) -> anyhow::Result<toml::Table> {
    let mut t = overlay::flags_table(a)?;
    if let Some(json) = &a.loss_json {
        let spec: kinfonce_loss::LossSpec =
            serde_json::from_str(json).context("--loss-json is not a valid loss specification")?;
        t.insert("loss".into(), toml::Value::try_from(spec)?);
    }
    Ok(t)
}

/// The configuration `kinfonce pretrain` would run with these arguments (also used by
/// `kinfonce compare`, so its runs are exactly those of `kinfonce pretrain`).
pub(crate) fn resolve_config(args: &PretrainArgs) -> anyhow::Result<TrainConfig> {
    let mut merged = toml::Table::new();
    if let Ok(data) = std::env::var("KINFONCE_DATA") {
        merged.insert("data".into(), toml::Value::String(data));
    }
    if let Some(name) = &args.run_preset {
        merged.extend(kinfonce_train::config::run_preset(name)?);
    }
    let mut later = toml::Table::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --config {}", path.display()))?;
        let file: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        later.extend(file);
    }
    later.extend(flag_table(args)?);
    // A loss preset named above the run preset replaces the run preset's loss too.
    if later.contains_key("preset") && !later.contains_key("loss") {
        merged.remove("loss");
    }
    merged.extend(later);
    let loss_opts = take_loss_options(&mut merged);
    let mut config = overlay::overlay(&TrainConfig::default(), &[merged])?;
    if !loss_opts.is_empty() {
        let mut spec = config.loss_spec()?;
        apply_loss_options(&mut spec, &loss_opts)?;
        config.loss.spec = Some(spec);
    }
    config.validate()?;
    Ok(config)
}

/// `--help` shows the defaults of [`TrainConfig`].
pub(crate) fn with_defaults(cmd: clap::Command) -> clap::Command {
    overlay::show_defaults(cmd, &TrainConfig::default())
}

pub(crate) fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The CPU's model and the instruction sets that decide libtorch's speed.
pub(crate) fn cpu_model() -> String {
    let cpu = kinfonce_train::hardware::CpuFeatures::detect();
    format!("{} ({})", cpu.model, cpu.summary())
}

/// libtorch's OpenMP reads OMP_WAIT_POLICY when it loads, before `main`: re-run this process
/// with it set, so idle OpenMP threads sleep instead of spinning against the augmentation pool.
pub(crate) fn ensure_passive_openmp() {
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    use std::os::unix::process::CommandExt;
    if let Ok(exe) = std::env::current_exe() {
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .exec();
        eprintln!("warning: could not re-run with OMP_WAIT_POLICY=PASSIVE: {err}");
    }
}

/// The provenance lines of a run's config.toml (git revision, versions, machine, command).
pub(crate) fn provenance(
    device: kinfonce_train::tch::Device,
    threads: usize,
) -> Vec<(String, String)> {
    vec![
        ("git_revision".to_string(), git_revision()),
        (
            "libtorch".to_string(),
            format!(
                "{} (PyPI wheel torch=={0})",
                kinfonce_train::LIBTORCH_VERSION
            ),
        ),
        ("cpu".to_string(), cpu_model()),
        (
            "gpu".to_string(),
            if device == kinfonce_train::tch::Device::Cpu {
                "none".into()
            } else {
                format!("{device:?}")
            },
        ),
        ("threads".to_string(), threads.to_string()),
        (
            "command".to_string(),
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
    ]
}

/// The saved configuration of the run in `dir` with the flags that may change on `--resume`
/// (monitoring, checkpoints, `max_steps` of an epoch-scheduled run); any other change is refused.
fn resumed_config(dir: &Path, args: &PretrainArgs) -> anyhow::Result<TrainConfig> {
    if args.out.is_some() {
        bail!("--resume DIR writes into DIR; drop --out");
    }
    if args.run_preset.is_some() {
        bail!("--run-preset sets up a new run; drop it with --resume");
    }
    let saved =
        read_run_config(dir).with_context(|| format!("reading the run in {}", dir.display()))?;
    let mut flags = flag_table(args)?;
    let mut refused: Vec<String> = take_loss_options(&mut flags).keys().cloned().collect();
    let wanted = overlay::overlay(&saved, &[flags])?;
    refused.extend(
        saved
            .trajectory_changes(&wanted)?
            .into_iter()
            .map(|c| c.key),
    );
    let mut refused: Vec<String> = refused
        .iter()
        .map(|k| match k.as_str() {
            "loss" => "--loss-json".to_string(),
            k => format!("--{}", k.replace('_', "-")),
        })
        .collect();
    if args.config.is_some() {
        refused.push("--config".into());
    }
    if !refused.is_empty() {
        bail!(
            "--resume {} continues the saved configuration; {} would change its trajectory. \
             Start a new run with --out to train differently",
            dir.display(),
            refused.join(", ")
        );
    }
    if saved.optim.epochs.is_none() && wanted.max_steps != saved.max_steps {
        bail!(
            "--max-steps {} would change the schedule of this run (its horizon is --max-steps {}); \
             runs scheduled with --epochs may change --max-steps",
            wanted.max_steps.unwrap_or(0),
            saved.max_steps.unwrap_or(0)
        );
    }
    wanted.validate()?;
    Ok(wanted)
}

/// The command that started the run in `dir` (its config.toml's provenance).
fn original_command(dir: &Path) -> Option<String> {
    let provenance = kinfonce_train::config::read_provenance(dir).ok()?;
    Some(provenance.get("command")?.as_str()?.to_string())
}

/// A run folder that stopped before its first checkpoint holds nothing to resume: the commands
/// that set it aside and start it again (`command`: the one to start it with).
fn refuse_checkpointless(dir: &Path, command: &str) -> anyhow::Result<()> {
    let has_run = dir.join("config.toml").is_file();
    if has_run && checkpoint::latest(&dir.join("checkpoints"))?.is_none() {
        bail!(
            "{0} holds a run that stopped before its first checkpoint, so nothing of it can be \
             resumed; set it aside and start again:\n  mv {0} {0}.abandoned && {command}",
            dir.display()
        );
    }
    Ok(())
}

/// A damaged checkpoint met on resume: the newest intact one, and the command that resumes
/// from it.
fn with_checkpoint_help(err: TrainError, run_dir: &Path) -> anyhow::Error {
    let TrainError::Damaged { file, .. } = &err else {
        return err.into();
    };
    let checkpoints = run_dir.join("checkpoints");
    let Some(damaged) = file
        .ancestors()
        .find(|p| p.parent() == Some(checkpoints.as_path()))
    else {
        return err.into();
    };
    let help = match checkpoint::newest_intact(&checkpoints) {
        Ok(Some(intact)) => format!(
            "The newest intact checkpoint is {}; set the damaged one aside and resume from it:\n  \
             mv {1} {1}.damaged && kinfonce pretrain --resume {2}",
            intact.display(),
            damaged.display(),
            run_dir.display()
        ),
        _ => format!(
            "No intact checkpoint remains; set the run aside and start it again (its command is \
             in {}, [provenance] command)",
            run_dir.join("config.toml").display()
        ),
    };
    anyhow::anyhow!("{err}. {help}")
}

pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    ensure_passive_openmp();
    let launch = Launch::from_env()?;
    let workers = args.nproc_per_node.unwrap_or(1) * args.nnodes.unwrap_or(1);
    match (&launch, workers) {
        (None, 2..) => std::process::exit(launch_workers(&args)?),
        (Some(l), 2..) => bail!(
            "--nproc-per-node / --nnodes: this process is already rank {} of {} (RANK and \
             WORLD_SIZE are set, as torchrun sets them); leave those flags to the launcher",
            l.rank,
            l.world_size
        ),
        _ => {}
    }
    let dist = launch
        .map(|l| join_group(&l, &args))
        .transpose()?
        .map(Distributed::new);
    let rank = dist.as_ref().map_or(0, Distributed::rank);
    let world = dist.as_ref().map_or(1, Distributed::world);
    train(args, dist).map_err(|e| {
        // Every rank prints its own failure, named.
        if world > 1 && !format!("{e:#}").starts_with("rank ") {
            e.context(format!("rank {rank}"))
        } else {
            e
        }
    })
}

/// `--nproc-per-node` / `--nnodes` without a launcher around: start this node's workers and
/// supervise them; their exit code.
fn launch_workers(args: &PretrainArgs) -> anyhow::Result<i32> {
    let nnodes = args.nnodes.unwrap_or(1);
    // A device, backend or method this job cannot have fails here once, not in every worker.
    let (_, device) = job_backend(args, args.nproc_per_node.unwrap_or(1) * nnodes)?;
    let nproc = args.nproc_per_node.unwrap_or(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let on_cpu = trainer::parse_device(&device)? == kinfonce_train::tch::Device::Cpu;
    if on_cpu && nproc > cores && !args.oversubscribe {
        bail!(
            "--nproc-per-node {nproc}: this node has {cores} CPU cores; start at most {cores} \
             processes on the CPU, or add --oversubscribe"
        );
    }
    let env = |name: &str| std::env::var(name).ok();
    let master_port = match args
        .master_port
        .or_else(|| env("MASTER_PORT")?.parse().ok())
    {
        Some(port) => port,
        None if nnodes == 1 => launcher::free_port()?,
        None => 29500,
    };
    let plan = LaunchPlan {
        nproc_per_node: args.nproc_per_node.unwrap_or(1),
        nnodes,
        node_rank: args.node_rank.unwrap_or(0),
        // One node: this machine; several: node 0's address, which only the user knows.
        master_addr: args
            .master_addr
            .clone()
            .or_else(|| env("MASTER_ADDR"))
            .unwrap_or_else(|| {
                if nnodes == 1 {
                    "127.0.0.1".into()
                } else {
                    String::new()
                }
            }),
        master_port,
        threads: args.threads.unwrap_or(0),
    };
    plan.validate()?;
    trainer::install_signal_handler();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    launcher::run_workers(&plan, &argv)
}

/// The collective backend of a job of `processes` processes (`auto`: NCCL for CUDA, else Gloo),
/// after checking that this build and machine have it, the run's device and its method.
/// Also the run's device.
fn job_backend(args: &PretrainArgs, processes: usize) -> anyhow::Result<(Backend, String)> {
    let config = match &args.resume {
        Some(dir) => resumed_config(dir, args)?,
        None => resolve_config(args)?,
    };
    config.check_processes(processes)?;
    let device = config.compute.device;
    trainer::parse_device(&device)?;
    let backend = match args.backend.as_deref().unwrap_or("auto") {
        "auto" if device.starts_with("cuda") => Backend::Nccl,
        "auto" => Backend::Gloo,
        other => other.parse::<Backend>()?,
    };
    backend.check_built()?;
    Ok((backend, device))
}

/// This process's place in the job: the process group, after the rendezvous.
fn join_group(launch: &Launch, args: &PretrainArgs) -> anyhow::Result<ProcessGroup> {
    let (backend, _) = job_backend(args, launch.world_size)?;
    let timeout = std::time::Duration::from_secs(args.dist_timeout.unwrap_or(300).max(1));
    let group = ProcessGroup::init(launch, backend, timeout)?;
    // A rank that dies ends the others within seconds, whatever they wait for.
    let rank = launch.rank;
    group.watch_peers(move |why| {
        eprintln!("error: rank {rank}: {why}; stopping");
        std::process::exit(1);
    });
    Ok(group)
}

/// The world size's effect on a fresh run: `--batch` was per process, the run keeps the global
/// batch; `--lr-scaling` scales the learning rate with the world size.
fn scale_for_world(
    config: &mut TrainConfig,
    args: &PretrainArgs,
    world: usize,
) -> anyhow::Result<()> {
    config.optim.batch *= world;
    let factor = match args.lr_scaling.as_deref().unwrap_or("none") {
        "none" => 1.0,
        "linear" => world as f64,
        "sqrt" => (world as f64).sqrt(),
        other => bail!("--lr-scaling {other}: expected none, linear or sqrt"),
    };
    if factor != 1.0 {
        config.optim.lr = Some(config.base_lr() * factor);
    }
    if args.no_sync_bn {
        config.model.sync_bn = false;
    }
    Ok(())
}

/// A pretraining run in this process (alone, or one rank of `dist`).
fn train(args: PretrainArgs, dist: Option<Distributed>) -> anyhow::Result<()> {
    let main = dist.as_ref().is_none_or(Distributed::is_main);
    let world = dist.as_ref().map_or(1, Distributed::world);
    // Rank 0 writes the run folder, so it alone owns it, for the whole run.
    let mut lock = None;
    let (config, run_dir, resume) = match &args.resume {
        Some(dir) => {
            let config = resumed_config(dir, &args)?;
            if args.no_sync_bn && config.model.sync_bn {
                bail!(
                    "--no-sync-bn would change the trajectory of the run in {} (it synchronises \
                     batch norm); start a new run for per-process statistics",
                    dir.display()
                );
            }
            if main {
                lock = Some(RunLock::take(dir)?);
            }
            let again = original_command(dir).unwrap_or_else(|| "kinfonce pretrain ...".into());
            refuse_checkpointless(dir, &again)?;
            if let RunState::Finished { step, .. } = run_state_with(dir, &config)? {
                // Idempotent: a complete run is left exactly as it is.
                println!(
                    "the run in {} is complete (step {step}, the end of its schedule); nothing to do",
                    dir.display()
                );
                return Ok(());
            }
            (config, dir.clone(), true)
        }
        None => {
            let mut config = resolve_config(&args)?;
            let from_env = std::env::var_os("KINFONCE_DATA").map(PathBuf::from);
            if args.data.is_none()
                && (config.data.data.as_os_str().is_empty()
                    || Some(&config.data.data) == from_env.as_ref())
            {
                // No data named by a flag or the config file: CIFAR-10 from $KINFONCE_DATA or
                // the cache, a download, or offline the built-in synthetic set, so the demo
                // always completes.
                config.data.data = default_data::default_data()?;
            }
            scale_for_world(&mut config, &args, world)?;
            let out = args.out.clone().unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                PathBuf::from(format!(
                    "runs/{}-{}-w{}-{t}",
                    config.loss.preset, config.model.arch, config.model.width
                ))
            });
            (config, out, false)
        }
    };
    let threads = trainer::configure_threads(config.compute.threads);
    trainer::install_signal_handler();
    let device = trainer::parse_device(&config.compute.device)?;
    let provenance = provenance(device, threads);
    if main {
        eprintln!(
            "kinfonce pretrain: {} width {} on {}, preset {}, batch {} pairs{}, {}, {threads} threads{} -> {}",
            config.model.arch,
            config.model.width,
            config.data.data.display(),
            config.loss.preset,
            config.optim.batch,
            if world > 1 { format!(" ({} per process)", config.optim.batch / world) } else { String::new() },
            config.compute.device,
            if world > 1 { format!(" per process, {world} processes") } else { String::new() },
            run_dir.display()
        );
    }
    if !resume && main {
        lock = Some(RunLock::take(&run_dir)?);
        refuse_checkpointless(&run_dir, &std::env::args().collect::<Vec<_>>().join(" "))?;
    }
    let options = RunOptions {
        quiet: !main,
        provenance,
        dist: dist.clone(),
    };
    let mut trainer = Trainer::new(config, &run_dir, resume, options)
        .map_err(|e| with_checkpoint_help(e, &run_dir))?;
    let summary = trainer
        .run()
        .map_err(|e| with_checkpoint_help(e, &run_dir))?;
    if let Some(d) = &dist {
        // Rank 0 hosts the rendezvous store: nobody leaves while another still needs it, and
        // nobody takes the others' leaving for a failure.
        d.group.stop_watching();
        d.group.barrier().map_err(dist_err)?;
    }
    if main {
        print_summary(&summary, &run_dir, args.json);
    }
    drop(lock);
    Ok(())
}

fn print_summary(s: &kinfonce_train::Summary, run_dir: &Path, json: bool) {
    let pct = |v: Option<f64>| {
        v.map(|x| format!("{:.2}%", 100.0 * x))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "{} after {} steps ({} epochs): loss {:.4} (first {}), k-NN top-1 {} (at initialisation {}), online probe {} (val; {} on training views), {:.0} views/s, {:.1} s",
        if s.interrupted { "interrupted" } else { "done" },
        s.steps,
        s.epochs_completed,
        s.final_loss,
        s.first_loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "n/a".into()),
        pct(s.knn_top1),
        pct(s.knn_top1_init),
        pct(s.online_val_top1),
        pct(s.online_top1),
        s.views_per_s,
        s.wall_s
    );
    if s.communicating_share > 0.0 {
        println!(
            "rank 0 spent {:.0}% of its step time in collectives (waiting for the others included)",
            100.0 * s.communicating_share
        );
    }
    println!(
        "run folder: {} (report.md, metrics.jsonl, checkpoints/)",
        run_dir.display()
    );
    if json {
        println!(
            "{}",
            serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_preset_and_bad_presets_are_named() {
        let args = PretrainArgs {
            preset: Some("gaussian".into()),
            tau: Some(0.3),
            ..Default::default()
        };
        let config = resolve_config(&args).unwrap();
        let text = format!("{config:?}");
        assert!(text.contains("0.3"), "tau flag not applied: {text}");
        let bad = PretrainArgs {
            preset: Some("cosine".into()),
            ..Default::default()
        };
        let err = format!("{:#}", resolve_config(&bad).unwrap_err());
        assert!(err.contains("cosine"), "{err}");
    }

    #[test]
    fn run_presets_sit_below_the_flags() {
        use kinfonce_loss::{Kernel, LossSpec};
        use kinfonce_train::config::{Augment, Method, StemChoice};
        use kinfonce_train::resnet::InitScheme;
        use kinfonce_train::schedule::Schedule;
        let preset = |name: &str, more: PretrainArgs| {
            resolve_config(&PretrainArgs {
                run_preset: Some(name.into()),
                ..more
            })
        };
        let origin = preset("moco-origin", PretrainArgs::default()).unwrap();
        assert_eq!(origin.method.method, Method::Moco);
        assert_eq!(
            (
                origin.method.queue_size,
                origin.method.bn_splits,
                origin.optim.batch
            ),
            (4096, 8, 512)
        );
        assert_eq!(
            (origin.optim.lr, origin.optim.weight_decay),
            (Some(0.06), 5e-4)
        );
        assert_eq!(origin.data.augment, Augment::MocoV2);
        assert!(!origin.model.head_bn);
        // lightly's network and the official per-epoch cosine.
        assert_eq!(origin.optim.schedule, Schedule::CosinePerEpoch);
        assert_eq!(
            (origin.model.stem, origin.model.stem_relu, origin.model.init),
            (StemChoice::Cifar, false, InitScheme::TorchDefault)
        );
        assert_eq!(origin.model.hidden_dim, 512);
        let tau_of = |spec: &LossSpec| match spec {
            LossSpec::InfoNce {
                kernel: Kernel::Exp(e),
            } => (e.gamma, e.tau),
            other => panic!("{other:?}"),
        };
        assert_eq!(tau_of(&origin.loss_spec().unwrap()), (1.0, 0.1));
        let sum = preset("moco-sum", PretrainArgs::default()).unwrap();
        match sum.loss_spec().unwrap() {
            LossSpec::Sum { parts } => {
                assert_eq!((parts[0].0, parts[1].0), (0.2, 0.8));
            }
            other => panic!("{other:?}"),
        }
        // Flags win: the batch, a loss option on the recipe's loss, a loss preset by name.
        let flags = preset(
            "moco-origin",
            PretrainArgs {
                batch: Some(64),
                tau: Some(0.3),
                bn_splits: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(flags.optim.batch, 64);
        assert_eq!(tau_of(&flags.loss_spec().unwrap()), (1.0, 0.3));
        let named = preset(
            "moco-origin",
            PretrainArgs {
                preset: Some("gaussian".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(tau_of(&named.loss_spec().unwrap()), (2.0, 0.4));
        let err = format!(
            "{:#}",
            preset("moco-v3", PretrainArgs::default()).unwrap_err()
        );
        assert!(
            err.contains("moco-v3") && err.contains("moco-origin, moco-sum"),
            "{err}"
        );
    }
}
