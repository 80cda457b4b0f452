//! The parts a run is built from, each from the configuration: the precision and layout, the
//! data and its loaders, the networks and the optimisers.

use super::moco::Moco;
use crate::config::{Method, TrainConfig};
use crate::distributed::Distributed;
use crate::error::{Result, TrainError};
use crate::hardware::{self, Target};
use crate::layers::Linear;
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::projection::{Projection, ProjectionConfig};
use crate::resnet::{Arch, ResNet, ResNetConfig, Stem};
use kinfonce_data::{
    AugmentConfig, ContrastiveLoader, DataConfig, DataFormat, Dataset, Dtype, EvalConfig,
    EvalLoader, Layout, LoaderConfig, Splits,
};
use std::sync::Arc;
use tch::{nn, Device, Tensor};

/// Options of one invocation that do not change the trajectory.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Hide the progress bar (tests, and ranks other than 0).
    pub quiet: bool,
    /// Provenance lines for config.toml (git revision, versions, machine).
    pub provenance: Vec<(String, String)>,
    /// This process's place in a data-parallel job; `None`: one process.
    pub dist: Option<Distributed>,
}

/// Resolves `auto` precision and layout for `device`, says what was chosen (and warns when a
/// resumed bf16 run lands on a CPU that emulates bf16), and records it in the provenance.
/// A layout that cannot run on `device` is refused, or switched for a resumed run.
pub(super) fn announce_compute(
    config: &mut TrainConfig,
    device: Device,
    resume: bool,
    options: &mut RunOptions,
) -> Result<()> {
    let target = hardware::target_of(device);
    let choice = config.resolve_compute(&target, resume)?;
    if !options.quiet {
        eprintln!("compute: {} ({})", config.compute_label(), choice.reason);
    }
    options.provenance.push((
        "compute".into(),
        format!("{}: {}", config.compute_label(), choice.reason),
    ));
    if let (true, true, Target::Cpu(cpu)) = (resume, config.bf16(), &target) {
        if !cpu.native_bf16() {
            eprintln!(
                "warning: this run computes in bf16, which this CPU ({}: {}) emulates about 12x \
                 slower than f32; resuming keeps the run's precision (start a new run for f32)",
                cpu.model,
                cpu.summary()
            );
        }
    }
    Ok(())
}

/// Reads the data sets of `config`.
pub fn load_data(config: &TrainConfig) -> Result<Splits> {
    if config.data.data.as_os_str().is_empty() {
        return Err(TrainError::Config(
            "`data` is not set: name a data set (a file or folder) with --data".into(),
        ));
    }
    let mut dc = DataConfig::new(&config.data.data);
    dc.format = config.data.format;
    dc.val_fraction = config.data.val_fraction;
    dc.seed = config.compute.seed;
    dc.subset = config.data.subset;
    dc.folder = config.folder_options();
    dc.load_splits(false)
        .map_err(|e| TrainError::Data(e.to_string()))
}

/// The training loader: the pair of the data set's augmentation preset and, for labelled data,
/// the online probe's view (pl_bolts' `online_transform`: random resized crop and flip only);
/// shuffled, last batch dropped (a batch of one breaks BatchNorm).
pub(super) fn contrastive_loader(
    config: &TrainConfig,
    train: &Arc<Dataset>,
    format: DataFormat,
    layout: Layout,
    shard: (usize, usize),
) -> Result<ContrastiveLoader> {
    let size = train.height().max(train.width());
    let pair = config.augmentation(format, size);
    let mut probe_view = AugmentConfig::simclr(size, 0.0, false, pair.normalization.clone());
    probe_view.jitter_p = 0.0;
    probe_view.grayscale_p = 0.0;
    let loader = ContrastiveLoader::new(
        Arc::clone(train),
        pair,
        LoaderConfig {
            batch_size: config.optim.batch,
            views: 2,
            threads: config.compute.threads.max(1),
            prefetch: 2,
            shuffle: true,
            drop_last: true,
            seed: config.compute.seed,
            layout,
            dtype: Dtype::F32,
            shard,
        },
    );
    let loader = if train.is_labelled() && train.num_classes() > 1 {
        loader.and_then(|l| l.with_extra_view(probe_view))
    } else {
        loader
    };
    loader.map_err(|e| TrainError::Data(e.to_string()))
}

/// The monitors' image sets: the k-NN bank (from train) and queries (from val), with their
/// labels, and the queries again in the official evaluation view for the online probe's
/// validation accuracy.
pub(super) struct MonitorSets {
    pub bank: EvalLoader,
    pub bank_labels: Tensor,
    pub queries: EvalLoader,
    pub query_labels: Tensor,
    /// `queries` resized to 1.1 x their side and centre-cropped (pl_bolts' online val view).
    pub probe_queries: EvalLoader,
    pub classes: i64,
}

/// The monitors' sets, or `None` when the monitor is off or the data has no labels or no val
/// split.
pub(super) fn monitor_sets(
    config: &TrainConfig,
    train: &Dataset,
    val: &Dataset,
    format: DataFormat,
    layout: Layout,
    classes: i64,
) -> Result<Option<MonitorSets>> {
    if classes <= 1 || config.monitor.knn_every == 0 || val.is_empty() {
        return Ok(None);
    }
    let eval_cfg = EvalConfig {
        batch_size: 256,
        threads: config.compute.threads.max(1),
        prefetch: 2,
        size: Some(train.height().max(train.width())),
        center_crop: false,
        normalization: config.normalization(format),
        layout,
        dtype: Dtype::F32,
    };
    let bank = first_n(train, config.monitor.knn_bank)?;
    let queries = first_n(val, config.monitor.knn_queries)?;
    if config.monitor.knn_k as usize >= bank.len() {
        eprintln!(
            "warning: `knn_k` = {} is not below the k-NN bank ({} images): every bank image \
             votes, so the monitor is a class-weighted mean, not a nearest-neighbour vote; lower \
             --knn-k or raise --knn-bank",
            config.monitor.knn_k,
            bank.len()
        );
    }
    let labels =
        |d: &Dataset| Tensor::from_slice(&d.labels().iter().map(|&l| l as i64).collect::<Vec<_>>());
    let loader = |d: Dataset, cfg: EvalConfig| {
        EvalLoader::new(Arc::new(d), cfg).map_err(|e| TrainError::Data(e.to_string()))
    };
    let center_crop = EvalConfig {
        center_crop: true,
        ..eval_cfg.clone()
    };
    Ok(Some(MonitorSets {
        bank_labels: labels(&bank),
        query_labels: labels(&queries),
        bank: loader(bank, eval_cfg.clone())?,
        probe_queries: loader(queries.clone(), center_crop)?,
        queries: loader(queries, eval_cfg)?,
        classes,
    }))
}

fn first_n(d: &Dataset, n: usize) -> Result<Dataset> {
    if d.len() <= n {
        return Ok(d.clone());
    }
    // An evenly spaced selection keeps the class balance of a shuffled split.
    let idx: Vec<usize> = (0..n).map(|i| i * d.len() / n).collect();
    d.select(&idx).map_err(|e| TrainError::Data(e.to_string()))
}

/// The trained networks: encoder and projection head in one store (the checkpoint's
/// `encoder` and `head` files), the online probe in its own.
pub(super) struct Networks {
    pub model_vs: nn::VarStore,
    pub encoder: ResNet,
    pub head: Projection,
    pub probe_vs: nn::VarStore,
    pub probe: Linear,
    /// MoCo's momentum copy of encoder and head, and its queue.
    pub moco: Option<Moco>,
}

/// The networks at initialisation: `manual_seed(seed)`, then the encoder first (evaluation at
/// initialisation draws the same weights in the same order).
/// Refuses, before libtorch tries to allocate it, a run whose parameters (with gradients and
/// two optimiser moments) or whose first-stage activations alone exceed this machine's memory,
/// naming the setting that makes it so. A lower-bound estimate: runs it lets through may still
/// need more.
pub(super) fn check_memory(
    config: &TrainConfig,
    device: Device,
    image_side: usize,
    format: DataFormat,
) -> Result<()> {
    let Some(total) = memory_bytes() else {
        return Ok(());
    };
    if device != Device::Cpu {
        return Ok(());
    }
    let m = &config.model;
    let w = m.width as f64;
    // torchvision's parameter counts at width 64 without `fc`; convolutions scale as width^2.
    let base = match m.arch {
        Arch::Resnet18 => 11_176_512.0,
        Arch::Resnet34 => 21_284_672.0,
        Arch::Resnet50 => 23_508_032.0,
    };
    let encoder = base * (w / 64.0).powi(2);
    let features = 8.0 * w * m.arch.expansion() as f64;
    let head =
        features * m.hidden_dim as f64 + m.hidden_dim as f64 * config.projection_dim() as f64;
    let gb = |bytes: f64| bytes / 1e9;
    let state_bytes = (encoder + head) * 4.0 * 4.0;
    if state_bytes > total {
        let (name, value) = if encoder >= head {
            ("width", m.width)
        } else {
            ("hidden_dim", m.hidden_dim)
        };
        return Err(TrainError::Config(format!(
            "`{name}` = {value}: the encoder and head would hold {:.3} G parameters, {:.0} GB with \
             gradients and optimiser moments, more than this machine's {:.0} GB of memory",
            (encoder + head) / 1e9,
            gb(state_bytes),
            gb(total)
        )));
    }
    let side = image_side as f64 / config.stem_for(image_side, Some(format)).downsampling() as f64;
    // Both views of the batch through the first stage: about six stored maps per image.
    let activations = 2.0 * config.optim.batch as f64 * w * side * side * 4.0 * 6.0;
    if activations > total {
        return Err(TrainError::Config(format!(
            "`batch` = {} with `width` = {}: the first stage's activations alone would take {:.0} GB, \
             more than this machine's {:.0} GB of memory",
            config.optim.batch,
            m.width,
            gb(activations),
            gb(total)
        )));
    }
    Ok(())
}

/// This machine's memory (`MemTotal` of /proc/meminfo), when known.
fn memory_bytes() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

pub(super) fn networks(
    config: &TrainConfig,
    device: Device,
    stem: Stem,
    in_channels: usize,
    classes: i64,
) -> Result<Networks> {
    tch::manual_seed(config.compute.seed as i64);
    let model_vs = nn::VarStore::new(device);
    let resnet_config = ResNetConfig {
        arch: config.model.arch,
        width: config.model.width,
        stem,
        in_channels: in_channels as i64,
        stem_relu: config.model.stem_relu,
        init: config.model.init,
    };
    let encoder = resnet_config.init(model_vs.root());
    let projection_config = ProjectionConfig {
        hidden: config.model.hidden_dim,
        out: config.projection_dim(),
        norm_p: config.model.norm_p,
        mu: config.model.mu,
        batch_norm: config.model.head_bn,
    };
    let head = projection_config.init(model_vs.root() / "projection", resnet_config.feature_dim());
    let probe_vs = nn::VarStore::new(device);
    let probe = Linear::new(
        probe_vs.root() / "probe",
        resnet_config.feature_dim(),
        classes.max(1),
        true,
    );
    if config.channels_last() {
        encoder.convert_to_channels_last();
    }
    // Built after the probe, so a SimCLR run draws the same initial weights as before MoCo.
    let moco = match config.method.method {
        Method::Simclr => None,
        Method::Moco => {
            let vs = nn::VarStore::new(device);
            let momentum_encoder = resnet_config.init(vs.root());
            let momentum_head =
                projection_config.init(vs.root() / "projection", resnet_config.feature_dim());
            if config.channels_last() {
                momentum_encoder.convert_to_channels_last();
            }
            let m = &config.method;
            Some(Moco::new(
                vs,
                momentum_encoder,
                momentum_head,
                &model_vs,
                m.queue_size,
                m.moco_momentum,
                m.bn_splits,
            )?)
        }
    };
    Ok(Networks {
        model_vs,
        encoder,
        head,
        probe_vs,
        probe,
        moco,
    })
}

/// The model's optimiser (the configured kind) and the online probe's (Adam at `probe_lr`, no
/// weight decay, as pl_bolts' `SSLOnlineEvaluator`).
pub(super) fn optimizers(
    config: &TrainConfig,
    model_vs: &nn::VarStore,
    probe_vs: &nn::VarStore,
) -> Result<(Optimizer, Optimizer)> {
    let trainable = |vs: &nn::VarStore| -> Vec<(String, Tensor)> {
        vs.variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    };
    let opt = Optimizer::new(
        OptimizerConfig {
            kind: config.optim.optimizer,
            weight_decay: config.optim.weight_decay,
            momentum: config.optim.momentum,
            trust_coefficient: config.optim.trust_coefficient,
            exclude_bn_bias: config.optim.exclude_bn_bias,
            ..Default::default()
        },
        trainable(model_vs),
    );
    let probe_opt = Optimizer::new(
        OptimizerConfig {
            kind: OptimizerKind::Adam,
            weight_decay: 0.0,
            ..Default::default()
        },
        trainable(probe_vs),
    );
    Ok((opt, probe_opt))
}
