//! The resolved configuration of a pretraining run (written to `config.toml` of the run folder;
//! TOML keys are the CLI flags in snake_case).

use crate::batch_norm::BnViews;
use crate::error::{io_err, Result, TrainError};
use crate::hardware::{self, ComputeChoice, LayoutAsk, Precision, Target};
use crate::optim::OptimizerKind;
use crate::resnet::{Arch, InitScheme, Stem};
use crate::schedule::Schedule;
use kinfonce_data::{AugmentConfig, DataFormat, Normalization};
use kinfonce_loss::LossSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every setting of a run, in sections. In TOML (`config.toml`, `--config` files) the sections
/// are flat: each key is a CLI flag in snake_case, as the sections' fields are named. Read
/// through a flat mirror of itself that refuses unknown keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "FlatConfig")]
pub struct TrainConfig {
    #[serde(flatten)]
    pub data: DataSection,
    #[serde(flatten)]
    pub method: MethodSection,
    #[serde(flatten)]
    pub model: ModelSection,
    #[serde(flatten)]
    pub loss: LossSection,
    #[serde(flatten)]
    pub optim: OptimSection,
    #[serde(flatten)]
    pub compute: ComputeSection,
    /// Stop after this many steps. Unset: no limit. For runs scheduled by `epochs` it only stops
    /// early (and may change on `--resume`); alone it is the schedule's horizon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    #[serde(flatten)]
    pub monitor: MonitorSection,
    #[serde(flatten)]
    pub checkpoint: CheckpointSection,
}

/// What the run learns from. (Each section's defaults are its `Default`; `--help` shows them.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataSection {
    /// Data set path (file or folder); empty: the CLI picks its default data set
    /// (CIFAR-10 from `$KINFONCE_DATA` or the cache folder, downloaded when missing).
    pub data: PathBuf,
    /// Data layout; unset: detected from the path.
    #[serde(with = "format_name", skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// Fraction of the training images held out as the k-NN query split.
    pub val_fraction: f64,
    /// The views' augmentation: `auto`, the data set's SimCLR preset (the official SimCLR
    /// code's); `moco-v2`, lightly's MoCo v2 transform as the official MoCo runs use it (crop
    /// 0.2-1, jitter 0.4/0.4/0.4/0.1, no blur, ImageNet normalisation; lightly 1.4.24 on);
    /// `moco-v2-simclr-views`, the same transform before lightly 1.4.24 (SimCLR's views at
    /// jitter strength 1.0).
    pub augment: Augment,
    /// Class-balanced seeded subset of the train split; unset: all.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub subset: Option<usize>,
    /// Image folders: `auto` streams a folder whose images differ in size or would take more
    /// than 2 GiB decoded (the views are then decoded from the files, the crop taken at decode);
    /// `always` or `never` force it.
    pub stream: Stream,
    /// The side of a streamed folder's views (its evaluation views: resize to 8/7 of it, then
    /// centre-crop).
    pub view_size: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            data: PathBuf::new(),
            format: None,
            val_fraction: 0.1,
            augment: Augment::Auto,
            subset: None,
            stream: Stream::Auto,
            view_size: 224,
        }
    }
}

/// See [`DataSection::stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stream {
    #[default]
    Auto,
    Always,
    Never,
}

impl Stream {
    /// The data crate's mode.
    pub fn mode(self) -> kinfonce_data::StreamMode {
        match self {
            Stream::Auto => kinfonce_data::StreamMode::Auto,
            Stream::Always => kinfonce_data::StreamMode::Always,
            Stream::Never => kinfonce_data::StreamMode::Never,
        }
    }
}

/// Run presets: the official code's whole recipes, applied below config files and flags
/// ([`run_preset`]).
pub const RUN_PRESETS: [&str; 2] = ["moco-origin", "moco-sum"];

/// The settings of a run preset as config.toml keys. Both are the official MoCo runs
/// (`moco/moco.py`, CIFAR-10/100 and TinyImageNet): momentum 0.99, a queue of 4,096 keys,
/// batch-norm splits 8, batch 512, SGD lr 0.06 momentum 0.9 weight decay 5e-4 with a cosine over
/// 200 epochs stepped per epoch without warmup, lightly's ResNet-18 (the CIFAR stem without its
/// ReLU, PyTorch's default initialisation), the head 512 -> 512 -> 128 without batch norm,
/// lightly's MoCo v2 augmentation;
/// `moco-origin` trains one kernel (gamma 1, tau 0.1), `moco-sum` 0.2 of it plus 0.8 of the
/// gamma-2 kernel at tau 0.3.
pub fn run_preset(name: &str) -> Result<toml::Table> {
    let exp = |gamma: f64, tau: f64| {
        kinfonce_loss::Kernel::Exp(kinfonce_loss::ExpKernel {
            gamma,
            tau,
            p: kinfonce_loss::Norm::L2,
        })
    };
    let (preset, loss) = match name {
        "moco-origin" => ("laplacian", LossSpec::kernel(exp(1.0, 0.1))),
        "moco-sum" => (
            "sum-of-losses",
            LossSpec::sum_of_losses(0.2, exp(1.0, 0.1), exp(2.0, 0.3))
                .map_err(|e| TrainError::Config(e.to_string()))?,
        ),
        other => {
            return Err(TrainError::Config(format!(
                "unknown run preset `{other}`: expected one of {}",
                RUN_PRESETS.join(", ")
            )))
        }
    };
    let mut config = TrainConfig {
        method: MethodSection {
            method: Method::Moco,
            moco_momentum: 0.99,
            queue_size: 4096,
            bn_splits: 8,
        },
        ..Default::default()
    };
    config.data.augment = Augment::MocoV2;
    config.model.hidden_dim = 512;
    config.model.out_dim = 128;
    config.model.head_bn = false;
    config.model.stem = StemChoice::Cifar;
    config.model.stem_relu = false;
    config.model.init = InitScheme::TorchDefault;
    config.optim.schedule = Schedule::CosinePerEpoch;
    config.loss.preset = preset.into();
    config.loss.spec = Some(loss);
    config.optim.batch = 512;
    config.optim.epochs = Some(200);
    config.optim.optimizer = OptimizerKind::Sgd;
    config.optim.lr = Some(0.06);
    config.optim.momentum = 0.9;
    config.optim.weight_decay = 5e-4;
    // Only the keys the recipe sets: the rest stays with the defaults, the file and the flags.
    let all = section_table(&config)?;
    let keys = [
        "method",
        "moco_momentum",
        "queue_size",
        "bn_splits",
        "augment",
        "hidden_dim",
        "out_dim",
        "head_bn",
        "stem",
        "stem_relu",
        "init",
        "schedule",
        "preset",
        "loss",
        "batch",
        "epochs",
        "optimizer",
        "lr",
        "momentum",
        "weight_decay",
    ];
    Ok(keys
        .iter()
        .filter_map(|k| Some((k.to_string(), all.get(*k)?.clone())))
        .collect())
}

/// See [`DataSection::augment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    #[default]
    Auto,
    MocoV2,
    MocoV2SimclrViews,
}

/// The contrastive method: where each query's positive and negatives come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MethodSection {
    /// `simclr`: the two views of the batch are each other's positives and candidates. `moco`:
    /// queries from the trained encoder, keys from a momentum copy of it, negatives from a queue
    /// of past keys (the positive is not in the denominator).
    pub method: Method,
    /// MoCo: before each step the momentum networks move to m * momentum + (1 - m) * trained.
    pub moco_momentum: f64,
    /// MoCo: keys kept in the queue (the official 4,096 = 8 batches of 512).
    pub queue_size: usize,
    /// MoCo: batch-norm splits of the encoders in training (the official 8, as if on 8 GPUs:
    /// the samples i, i + 8, i + 16, ... share statistics); 1: plain batch norm.
    pub bn_splits: usize,
}

impl Default for MethodSection {
    fn default() -> Self {
        MethodSection {
            method: Method::Simclr,
            moco_momentum: 0.99,
            queue_size: 4096,
            bn_splits: 8,
        }
    }
}

/// See [`MethodSection::method`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Simclr,
    Moco,
}

/// The encoder and its projection head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSection {
    /// The encoder.
    pub arch: Arch,
    /// Base channel count.
    pub width: i64,
    /// The first layers; `auto`: the STL-10 stem for STL-10, else the CIFAR stem below 64
    /// pixels and the ImageNet stem from 64 up.
    pub stem: StemChoice,
    /// Batch-norm statistics per view (`separate`, the official code) or over the pair
    /// (`joint`) in training forwards.
    pub bn_views: BnViews,
    /// With several processes, batch-norm statistics over every rank's rows (synchronised, as
    /// pl_bolts does on several GPUs) rather than each rank's own.
    pub sync_bn: bool,
    /// Projection head hidden width.
    pub hidden_dim: i64,
    /// Projection output dimension (concat-sum doubles it).
    pub out_dim: i64,
    /// p of the output normalisation.
    pub norm_p: f64,
    /// Squared norm mu of the projections.
    pub mu: f64,
    /// Batch norm in the projection head (SimCLR's); false: Linear - ReLU - Linear (lightly's
    /// MoCo head).
    pub head_bn: bool,
    /// A ReLU after the stem's batch norm (torchvision's and pl_bolts' ResNet); false: none, as
    /// the official MoCo backbone (`children()[:-1]` of lightly's ResNet drops the ReLU that
    /// lightly applies in `forward`).
    pub stem_relu: bool,
    /// The convolutions' initialisation.
    pub init: InitScheme,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            arch: Arch::Resnet18,
            width: 64,
            stem: StemChoice::Auto,
            bn_views: BnViews::Separate,
            sync_bn: true,
            hidden_dim: 2048,
            out_dim: 128,
            norm_p: 2.0,
            mu: 1.0,
            head_bn: true,
            stem_relu: true,
            init: InitScheme::KaimingFanOut,
        }
    }
}

/// The stem of the encoder ([`Stem`]), or `auto`: the official choice for the data
/// ([`TrainConfig::stem_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemChoice {
    #[default]
    Auto,
    Cifar,
    Imagenet,
    Stl10,
}

impl std::fmt::Display for StemChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StemChoice::Auto => "auto",
            StemChoice::Cifar => "cifar",
            StemChoice::Imagenet => "imagenet",
            StemChoice::Stl10 => "stl10",
        })
    }
}

/// The Kernel-InfoNCE loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossSection {
    /// Loss preset name (`kinfonce_loss::LossSpec::preset`).
    pub preset: String,
    /// The loss itself (the preset with any option flags applied); unset: the preset.
    #[serde(rename = "loss", skip_serializing_if = "Option::is_none")]
    pub spec: Option<LossSpec>,
    /// With several processes, each rank's anchors compete with its own rows only, instead of
    /// the candidates gathered from every rank.
    pub local_negatives: bool,
}

impl Default for LossSection {
    fn default() -> Self {
        LossSection {
            preset: "laplacian".into(),
            spec: None,
            local_negatives: false,
        }
    }
}

/// Batches, schedule and update rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimSection {
    /// Pairs (images) per step; 2 x batch views.
    pub batch: usize,
    /// Schedule length in epochs. Unset: set by `max_steps`, or 10 epochs when that is unset
    /// too.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub epochs: Option<u64>,
    /// The update rule.
    pub optimizer: OptimizerKind,
    /// Base learning rate; unset: the optimiser's default (adam 1e-3, lars 0.3, sgd 0.05).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "zero_as_none"
    )]
    pub lr: Option<f64>,
    /// Weight decay (coupled, on every parameter unless `exclude_bn_bias`).
    pub weight_decay: f64,
    /// Leave biases and batch-norm parameters (every 1-D parameter) out of weight decay and
    /// LARS adaptation. Default false (the official `exclude_bn_bias`).
    pub exclude_bn_bias: bool,
    /// SGD / LARS momentum.
    pub momentum: f64,
    /// LARS trust coefficient.
    pub trust_coefficient: f64,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Learning rate of the online linear probe (Adam, constant; pl_bolts'
    /// `SSLOnlineEvaluator` uses 1e-4).
    pub probe_lr: f64,
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            batch: 256,
            epochs: None,
            optimizer: OptimizerKind::Adam,
            lr: None,
            weight_decay: 1e-6,
            exclude_bn_bias: false,
            momentum: 0.9,
            trust_coefficient: 1e-3,
            schedule: Schedule::WarmupCosinePerStep,
            probe_lr: 1e-4,
        }
    }
}

/// Where and how the run computes, and its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComputeSection {
    /// Seed of initialisation, split, subset, shuffles and augmentations.
    pub seed: u64,
    /// `auto`, `f32` or `bf16` (bf16 compute, f32 master weights and loss). `auto`: bf16 where
    /// the hardware computes it natively (see [`hardware`]). A run's config.toml holds
    /// the resolved value.
    pub precision: Precision,
    /// Channels-last memory layout for images and conv weights; unset: chosen with the
    /// precision ([`hardware`]). A run's config.toml holds the resolved value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels_last: Option<bool>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Threads for libtorch and the augmentation pool; 0 = all cores.
    pub threads: usize,
    /// Same seed, same machine, same threads: bitwise the same run (forces cuDNN
    /// deterministic algorithms on CUDA).
    pub deterministic: bool,
    /// What computes the loss: `auto` (the fused kernel on CPUs, the tensor form on GPUs),
    /// `fused` or `tensor`.
    pub loss_engine: LossEngine,
}

/// The loss's implementation: the fused CPU kernel (value and analytic gradient, memory
/// linear in the batch) or libtorch tensor ops with autograd (any device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossEngine {
    #[default]
    Auto,
    Fused,
    Tensor,
}

impl Default for ComputeSection {
    fn default() -> Self {
        ComputeSection {
            seed: 0,
            precision: Precision::Auto,
            channels_last: None,
            device: "cpu".into(),
            threads: 0,
            deterministic: false,
            loss_engine: LossEngine::Auto,
        }
    }
}

/// What the run reports while it trains (may change on `--resume`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorSection {
    /// A step line in metrics.jsonl every N steps.
    pub log_every: u64,
    /// k-NN monitor: neighbours k.
    pub knn_k: i64,
    /// k-NN monitor: temperature.
    pub knn_t: f64,
    /// k-NN monitor every N epochs; 0 = off.
    pub knn_every: u64,
    /// k-NN monitor: at most this many bank images from train.
    pub knn_bank: usize,
    /// k-NN monitor: at most this many query images from val.
    pub knn_queries: usize,
}

impl Default for MonitorSection {
    fn default() -> Self {
        MonitorSection {
            log_every: 10,
            knn_k: 200,
            knn_t: 0.1,
            knn_every: 1,
            knn_bank: 10_000,
            knn_queries: 2_000,
        }
    }
}

/// When checkpoints are written and how many are kept (may change on `--resume`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointSection {
    /// Checkpoint every N steps; 0 = off.
    pub checkpoint_every: u64,
    /// Checkpoint every M minutes; 0 = off.
    pub checkpoint_minutes: f64,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            checkpoint_every: 0,
            checkpoint_minutes: 10.0,
            keep_checkpoints: 3,
        }
    }
}

/// [`TrainConfig`] as read, with the keys no section knows (flattened sections cannot deny
/// unknown fields themselves).
#[derive(Deserialize)]
struct FlatConfig {
    #[serde(flatten)]
    data: DataSection,
    #[serde(flatten)]
    method: MethodSection,
    #[serde(flatten)]
    model: ModelSection,
    #[serde(flatten)]
    loss: LossSection,
    #[serde(flatten)]
    optim: OptimSection,
    #[serde(flatten)]
    compute: ComputeSection,
    #[serde(default, deserialize_with = "zero_as_none")]
    max_steps: Option<u64>,
    #[serde(flatten)]
    monitor: MonitorSection,
    #[serde(flatten)]
    checkpoint: CheckpointSection,
    #[serde(flatten)]
    unknown: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

impl TryFrom<FlatConfig> for TrainConfig {
    type Error = String;
    fn try_from(flat: FlatConfig) -> std::result::Result<Self, String> {
        if let Some(key) = flat.unknown.keys().next() {
            return Err(format!("unknown setting `{key}`"));
        }
        Ok(TrainConfig {
            data: flat.data,
            method: flat.method,
            model: flat.model,
            loss: flat.loss,
            optim: flat.optim,
            compute: flat.compute,
            max_steps: flat.max_steps,
            monitor: flat.monitor,
            checkpoint: flat.checkpoint,
        })
    }
}

/// Reads `0` (how earlier versions wrote "unset") as unset.
fn zero_as_none<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default + PartialEq,
{
    Ok(Option::<T>::deserialize(d)?.filter(|v| *v != T::default()))
}

/// A data format by its `--format` name; the empty name (earlier versions' "unset") is unset.
mod format_name {
    use kinfonce_data::DataFormat;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &Option<DataFormat>, s: S) -> Result<S::Ok, S::Error> {
        match f {
            Some(f) => s.serialize_str(f.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataFormat>, D::Error> {
        let name = String::deserialize(d)?;
        if name.is_empty() {
            return Ok(None);
        }
        name.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

impl TrainConfig {
    /// The learning rate, the optimiser's default when unset.
    pub fn base_lr(&self) -> f64 {
        self.optim
            .lr
            .unwrap_or_else(|| self.optim.optimizer.default_lr())
    }

    /// bf16 compute; `auto` must be resolved first ([`TrainConfig::resolve_compute`]).
    pub fn bf16(&self) -> bool {
        self.compute.precision == Precision::Bf16
    }

    /// Channels-last layout; unset (before [`TrainConfig::resolve_compute`]) counts as off.
    pub fn channels_last(&self) -> bool {
        self.compute.channels_last.unwrap_or(false)
    }

    /// Replaces `auto` precision and an unset layout by the choice for `target`, and says why.
    /// A channels-last layout that cannot run on `target` ([`hardware::channels_last_defect`])
    /// is an error when asked for, and switched to contiguous when `resumed` from a stored run.
    pub fn resolve_compute(&mut self, target: &Target, resumed: bool) -> Result<ComputeChoice> {
        let c = &mut self.compute;
        let choice = hardware::resolve(
            c.precision,
            LayoutAsk::of(c.channels_last, resumed),
            target,
            self.model.arch.strided_shortcut_channels(self.model.width),
        )
        .map_err(TrainError::Config)?;
        c.precision = choice.precision;
        c.channels_last = Some(choice.channels_last);
        Ok(choice)
    }

    /// `bf16 + channels-last`, `f32`, ... for messages and reports.
    pub fn compute_label(&self) -> String {
        format!(
            "{}{}",
            self.compute.precision,
            if self.channels_last() {
                " + channels-last"
            } else {
                ""
            }
        )
    }

    /// The format of the run's data: as set, else detected from its path.
    pub fn run_format(&self) -> Option<DataFormat> {
        self.data
            .format
            .or_else(|| DataFormat::detect(&self.data.data).ok())
    }

    /// The stem for images of `image_side` pixels in `format`: as set, or with `auto` the
    /// official choices: the STL-10 stem (7x7 conv, no max-pool) for STL-10, the CIFAR stem
    /// (3x3 conv, no max-pool) below 64 pixels, the ImageNet stem from 64 up.
    pub fn stem_for(&self, image_side: usize, format: Option<DataFormat>) -> Stem {
        match self.model.stem {
            StemChoice::Cifar => Stem::Cifar,
            StemChoice::Imagenet => Stem::Imagenet,
            StemChoice::Stl10 => Stem::Stl10,
            StemChoice::Auto if format == Some(DataFormat::Stl10) => Stem::Stl10,
            StemChoice::Auto if image_side < 64 => Stem::Cifar,
            StemChoice::Auto => Stem::Imagenet,
        }
    }

    /// (schedule horizon, stop step) for `steps_per_epoch`: `epochs` set the horizon and
    /// `max_steps` only stops early; `max_steps` alone is the horizon; neither: 10 epochs.
    pub fn schedule_steps(&self, steps_per_epoch: u64) -> (u64, u64) {
        match (self.optim.epochs, self.max_steps) {
            (None, None) => (10 * steps_per_epoch, 10 * steps_per_epoch),
            (None, Some(m)) => (m, m),
            (Some(e), None) => (e * steps_per_epoch, e * steps_per_epoch),
            (Some(e), Some(m)) => (e * steps_per_epoch, m.min(e * steps_per_epoch)),
        }
    }

    /// The projection output width the loss sees (concat-sum doubles `out_dim`).
    pub fn projection_dim(&self) -> i64 {
        let out = self.model.out_dim;
        if self.loss.preset == "concat-sum"
            && matches!(self.loss.spec, None | Some(LossSpec::Concat { .. }))
        {
            2 * out
        } else {
            out
        }
    }

    /// The loss: `loss` when set, else the preset.
    pub fn loss_spec(&self) -> Result<LossSpec> {
        let spec = match &self.loss.spec {
            Some(spec) => spec.clone(),
            None => LossSpec::preset(&self.loss.preset, self.projection_dim() as usize)
                .map_err(|e| TrainError::Config(e.to_string()))?,
        };
        spec.validate(self.projection_dim() as usize)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(spec)
    }

    /// The settings that shape the run's trajectory, as flat TOML keys: every section but the
    /// monitor and checkpoint ones, and not `max_steps` (which only stops epoch-scheduled runs)
    /// nor `threads` (how many threads compute a step does not change it).
    pub fn trajectory(&self) -> Result<toml::Table> {
        let mut table = section_table(&self.data)?;
        table.extend(section_table(&self.model)?);
        table.extend(section_table(&self.loss)?);
        table.extend(section_table(&self.optim)?);
        table.extend(section_table(&self.compute)?);
        table.remove("threads");
        Ok(table)
    }

    /// The trajectory settings of `self` that `other` changes, by key.
    pub fn trajectory_changes(&self, other: &TrainConfig) -> Result<Vec<SettingChange>> {
        let (a, b) = (self.trajectory()?, other.trajectory()?);
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        Ok(keys
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| SettingChange {
                key: k.clone(),
                from: a.get(k).cloned(),
                to: b.get(k).cloned(),
            })
            .collect())
    }

    /// Checks every value a user can get wrong, naming the parameter.
    /// The normalisation of every image the encoder sees (training views, monitors,
    /// evaluation) for data of `format`.
    pub fn normalization(&self, format: DataFormat) -> Normalization {
        match self.data.augment {
            Augment::Auto => Normalization::for_format(format),
            Augment::MocoV2 | Augment::MocoV2SimclrViews => Normalization::imagenet(),
        }
    }

    /// How image folders are read for this run: streamed per [`DataSection::stream`], at
    /// [`DataSection::view_size`].
    pub fn folder_options(&self) -> kinfonce_data::FolderOptions {
        kinfonce_data::FolderOptions {
            stream: self.data.stream.mode(),
            view_size: self.data.view_size,
            ..Default::default()
        }
    }

    /// The training views' augmentation for images of `side` pixels ([`DataSection::augment`]).
    pub fn augmentation(&self, format: DataFormat, side: usize) -> AugmentConfig {
        match self.data.augment {
            Augment::Auto => AugmentConfig::preset(format, side),
            Augment::MocoV2 => AugmentConfig::moco_v2(side),
            Augment::MocoV2SimclrViews => AugmentConfig::moco_v2_simclr_views(side),
        }
    }

    /// Whether a job of `processes` processes can train this configuration.
    pub fn check_processes(&self, processes: usize) -> Result<()> {
        let splits = self.method.bn_splits;
        if self.method.method == Method::Moco && processes > 1 && !splits.is_multiple_of(processes)
        {
            // Each process normalises whole split groups, so the statistics (and the trajectory)
            // are those of one process; an encoder's statistics across processes would undo
            // the shuffle of the keys.
            return Err(TrainError::Config(format!(
                "MoCo on {processes} processes needs `bn_splits` ({splits}) to be a multiple of \
                 the processes: each normalises whole split groups of the global batch"
            )));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        self.loss_spec()?;
        let bad = |name: &str, value: String, expected: &str| {
            Err(TrainError::Config(format!(
                "`{name}` = {value}: expected {expected}"
            )))
        };
        let (m, o, mon) = (&self.model, &self.optim, &self.monitor);
        if m.width < 1 {
            return bad("width", m.width.to_string(), "at least 1");
        }
        if o.batch < 2 {
            return bad("batch", o.batch.to_string(), "at least 2 pairs");
        }
        if m.hidden_dim < 1 || m.out_dim < 1 {
            return bad(
                "hidden_dim/out_dim",
                format!("{}/{}", m.hidden_dim, m.out_dim),
                "at least 1",
            );
        }
        if !(m.norm_p == 1.0 || m.norm_p == 2.0 || m.norm_p == f64::INFINITY) {
            return bad("norm_p", m.norm_p.to_string(), "1, 2 or inf");
        }
        if m.mu.is_nan() || m.mu <= 0.0 {
            return bad("mu", m.mu.to_string(), "a value > 0");
        }
        let minutes = self.checkpoint.checkpoint_minutes;
        if let Err(expected) = check_checkpoint_minutes(minutes) {
            return bad("checkpoint_minutes", minutes.to_string(), &expected);
        }
        let lr = o.lr.unwrap_or(0.0);
        if !(lr >= 0.0 && o.weight_decay >= 0.0 && o.probe_lr > 0.0) {
            return bad(
                "lr/weight_decay/probe_lr",
                format!("{lr}/{}/{}", o.weight_decay, o.probe_lr),
                "lr >= 0, weight_decay >= 0, probe_lr > 0",
            );
        }
        let mo = &self.method;
        if mo.method == Method::Moco {
            if !(0.0..1.0).contains(&mo.moco_momentum) {
                return bad("moco_momentum", mo.moco_momentum.to_string(), "0 <= m < 1");
            }
            if mo.queue_size == 0 || !mo.queue_size.is_multiple_of(o.batch) {
                // Whole batches of keys: each step overwrites the oldest batch, as the official
                // queue (its enqueue asserts it).
                return bad(
                    "queue_size",
                    mo.queue_size.to_string(),
                    &format!("a multiple of the global batch ({})", o.batch),
                );
            }
            if mo.bn_splits == 0 || o.batch % mo.bn_splits != 0 || o.batch / mo.bn_splits < 2 {
                return bad(
                    "bn_splits",
                    mo.bn_splits.to_string(),
                    &format!(
                        "a divisor of `batch` ({}) leaving at least 2 samples per split",
                        o.batch
                    ),
                );
            }
            if matches!(self.loss_spec()?, LossSpec::Spectral) {
                return bad(
                    "loss",
                    "spectral".into(),
                    "a kernel loss (the spectral loss has no MoCo form)",
                );
            }
        }
        if mon.log_every == 0 {
            return bad("log_every", "0".into(), "at least 1");
        }
        if mon.knn_every > 0 && (mon.knn_bank == 0 || mon.knn_queries == 0) {
            return bad(
                "knn_bank/knn_queries",
                format!("{}/{}", mon.knn_bank, mon.knn_queries),
                "at least 1 each (or --knn-every 0 to turn the monitor off)",
            );
        }
        if mon.knn_k < 1 || mon.knn_t <= 0.0 {
            return bad(
                "knn_k/knn_t",
                format!("{}/{}", mon.knn_k, mon.knn_t),
                "k >= 1 and t > 0",
            );
        }
        Ok(())
    }
}

/// One setting that differs between two configurations (`None`: unset).
#[derive(Debug, Clone, PartialEq)]
pub struct SettingChange {
    pub key: String,
    pub from: Option<toml::Value>,
    pub to: Option<toml::Value>,
}

impl std::fmt::Display for SettingChange {
    /// `key: from -> to`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<toml::Value>| match v {
            Some(v) => v.to_string(),
            None => "(unset)".into(),
        };
        write!(
            f,
            "{}: {} -> {}",
            self.key,
            show(&self.from),
            show(&self.to)
        )
    }
}

/// A section as a TOML table (its flat keys).
fn section_table(section: &impl Serialize) -> Result<toml::Table> {
    match toml::Value::try_from(section).map_err(|e| TrainError::Config(e.to_string()))? {
        toml::Value::Table(t) => Ok(t),
        _ => Err(TrainError::Config("a section is not a table".into())),
    }
}

/// The table `name` (`config` or `provenance`) of a run folder's config.toml.
fn run_table(run_dir: &Path, name: &str) -> Result<toml::Table> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let mut doc: toml::Table = toml::from_str(&text)
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    match doc.remove(name) {
        Some(toml::Value::Table(table)) => Ok(table),
        _ => Err(TrainError::Config(format!(
            "{}: no [{name}] table",
            path.display()
        ))),
    }
}

/// The `[config]` table of a run folder's config.toml. Runs written before the protocol
/// revision (no `bn_views` key) keep their batch-norm and weight-decay rules: both views in one
/// forward, biases and batch-norm weights out of weight decay. Runs written before the MoCo
/// fidelity revision (no `schedule` key) keep their views: `moco-v2` then meant what is now
/// `moco-v2-simclr-views` (the missing schedule, stem and init keys default to what they ran).
pub fn read_run_config(run_dir: &Path) -> Result<TrainConfig> {
    let mut table = run_table(run_dir, "config")?;
    if !table.contains_key("bn_views") {
        table.insert("bn_views".into(), BnViews::Joint.name().into());
        table.entry("exclude_bn_bias").or_insert(true.into());
    }
    if !table.contains_key("schedule")
        && table.get("augment").and_then(|v| v.as_str()) == Some("moco-v2")
    {
        table.insert("augment".into(), "moco-v2-simclr-views".into());
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e| TrainError::Config(format!("{}: {e}", run_dir.join("config.toml").display())))
}

/// The `[provenance]` table of a run folder's config.toml (where and how the run was made).
pub fn read_provenance(run_dir: &Path) -> Result<toml::Table> {
    run_table(run_dir, "provenance")
}

/// The rule for `checkpoint_minutes` (the flag's parser and [`TrainConfig::validate`]): a
/// finite number of minutes, 0 = off; `Err` holds what was expected.
pub fn check_checkpoint_minutes(minutes: f64) -> std::result::Result<f64, String> {
    if minutes.is_finite() && minutes >= 0.0 {
        Ok(minutes)
    } else {
        Err("a finite number of minutes >= 0 (0 = off)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[config]` table as version 0.1 wrote it: every key flat, "unset" written as `""` or 0.
    const EARLIER_CONFIG: &str = r#"
arch = "resnet18"
batch = 64
channels_last = true
checkpoint_every = 0
checkpoint_minutes = 0.0
data = "cifar-10-binary.tar.gz"
deterministic = false
device = "cpu"
epochs = 1
format = ""
hidden_dim = 32
keep_checkpoints = 3
knn_bank = 500
knn_every = 1
knn_k = 200
knn_queries = 200
knn_t = 0.1
log_every = 5
lr = 0.0
max_steps = 0
momentum = 0.9
mu = 1.0
norm_p = 2.0
optimizer = "adam"
out_dim = 16
precision = "bf16"
preset = "laplacian"
probe_lr = 0.001
seed = 0
stem = "auto"
subset = 640
threads = 2
trust_coefficient = 0.001
val_fraction = 0.1
weight_decay = 0.000001
width = 4
"#;

    #[test]
    fn earlier_config_files_read_into_the_sections() {
        let c: TrainConfig = toml::from_str(EARLIER_CONFIG).unwrap();
        assert_eq!(c.data.data, PathBuf::from("cifar-10-binary.tar.gz"));
        assert_eq!(c.data.format, None, "\"\" was unset");
        assert_eq!(c.data.subset, Some(640));
        assert_eq!(c.optim.lr, None, "0 was the optimiser's default");
        assert_eq!(c.base_lr(), 1e-3);
        assert_eq!((c.optim.epochs, c.max_steps), (Some(1), None));
        assert_eq!((c.model.width, c.model.stem), (4, StemChoice::Auto));
        assert_eq!(c.compute.precision, Precision::Bf16);
        assert_eq!(c.compute.channels_last, Some(true));
        assert_eq!((c.monitor.log_every, c.monitor.knn_bank), (5, 500));
        assert_eq!(c.checkpoint.checkpoint_minutes, 0.0);
    }

    #[test]
    fn runs_from_before_the_protocol_revision_keep_their_rules() {
        let dir = std::env::temp_dir().join(format!("kinfonce-earlier-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |body: &str| {
            std::fs::write(dir.join("config.toml"), format!("[config]\n{body}")).unwrap();
            read_run_config(&dir).unwrap()
        };
        let earlier = write(EARLIER_CONFIG);
        assert_eq!(earlier.model.bn_views, BnViews::Joint);
        assert!(earlier.optim.exclude_bn_bias);
        // A run of this revision writes `bn_views`, and its file reads back as written.
        let now = TrainConfig::default();
        let read = write(&toml::to_string(&now).unwrap());
        assert_eq!(read, now);
        assert_eq!(
            (read.model.bn_views, read.optim.exclude_bn_bias),
            (BnViews::Separate, false)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn moco_runs_from_before_the_fidelity_revision_keep_their_views_and_network() {
        let dir = std::env::temp_dir().join(format!("kinfonce-moco-views-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let earlier =
            EARLIER_CONFIG.to_string() + "bn_views = \"separate\"\naugment = \"moco-v2\"\n";
        std::fs::write(dir.join("config.toml"), format!("[config]\n{earlier}")).unwrap();
        let c = read_run_config(&dir).unwrap();
        assert_eq!(c.data.augment, Augment::MocoV2SimclrViews);
        assert_eq!(c.optim.schedule, Schedule::WarmupCosinePerStep);
        assert_eq!(
            (c.model.stem_relu, c.model.init),
            (true, InitScheme::KaimingFanOut)
        );
        // A run of this revision keeps `moco-v2` as written.
        let mut now = c.clone();
        now.data.augment = Augment::MocoV2;
        std::fs::write(
            dir.join("config.toml"),
            format!("[config]\n{}", toml::to_string(&now).unwrap()),
        )
        .unwrap();
        assert_eq!(read_run_config(&dir).unwrap(), now);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_schedule_stem_relu_and_init_are_trajectory_settings() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.optim.schedule = Schedule::CosinePerEpoch;
        b.model.stem_relu = false;
        b.model.init = InitScheme::TorchDefault;
        let keys: Vec<String> = a
            .trajectory_changes(&b)
            .unwrap()
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(keys, ["init", "schedule", "stem_relu"]);
    }

    #[test]
    fn config_files_are_flat_and_round_trip() {
        let mut c: TrainConfig = toml::from_str(EARLIER_CONFIG).unwrap();
        c.data.format = Some(DataFormat::Cifar10);
        c.optim.lr = Some(0.5);
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("format = \"cifar10\"\n"), "{text}");
        assert!(
            text.contains("width = 4\n") && !text.contains('['),
            "{text}"
        );
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), c);
        let default_text = toml::to_string(&TrainConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<TrainConfig>(&default_text).unwrap(),
            TrainConfig::default()
        );
    }

    #[test]
    fn unknown_settings_and_values_are_named() {
        let err = toml::from_str::<TrainConfig>("widht = 3").unwrap_err();
        assert!(err.to_string().contains("`widht`"), "{err}");
        let err = toml::from_str::<TrainConfig>("arch = \"resnet19\"").unwrap_err();
        assert!(err.to_string().contains("resnet19"), "{err}");
        let err = toml::from_str::<TrainConfig>("format = \"cifar11\"").unwrap_err();
        assert!(err.to_string().contains("cifar11"), "{err}");
    }

    #[test]
    fn an_empty_knn_bank_or_query_set_is_refused_while_the_monitor_is_on() {
        let mut c = TrainConfig::default();
        c.monitor.knn_bank = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("knn_bank") && err.contains("--knn-every 0"),
            "{err}"
        );
        c.monitor.knn_every = 0;
        c.validate().unwrap();
    }

    #[test]
    fn the_trajectory_is_every_section_but_monitor_and_checkpoints() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.monitor.knn_k = 5;
        b.checkpoint.keep_checkpoints = 1;
        b.max_steps = Some(3);
        assert!(a.trajectory_changes(&b).unwrap().is_empty());
        b.compute.seed = 7;
        b.optim.lr = Some(0.1);
        let changes: Vec<String> = a
            .trajectory_changes(&b)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(changes, ["lr: (unset) -> 0.1", "seed: 0 -> 7"]);
    }
}
