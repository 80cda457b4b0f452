//! The resolved configuration of a pretraining run (written to `config.toml` of the run folder;
//! TOML keys are the CLI flags in snake_case).

use crate::error::{io_err, Result, TrainError};
use crate::hardware::{self, ComputeChoice, Precision, Target};
use crate::optim::OptimizerKind;
use crate::resnet::{Arch, Stem};
use kinfonce_loss::LossSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every setting of a run. Defaults are documented per field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data set path (file or folder). Default empty: the CLI picks its default data set
    /// (CIFAR-10 from `$KINFONCE_DATA` or the cache folder, downloaded when missing).
    pub data: PathBuf,
    /// Data layout (`cifar10`, `cifar100`, `mnist`, `stl10`, `imagefolder`, `tiny-imagenet`);
    /// empty: detected. Default empty.
    pub format: String,
    /// Fraction of the training images held out as the k-NN query split. Default 0.1.
    pub val_fraction: f64,
    /// Class-balanced seeded subset of the train split; 0 = all. Default 0.
    pub subset: usize,
    /// Loss preset name (`kinfonce_loss::LossSpec::preset`). Default `laplacian`.
    pub preset: String,
    /// The loss itself (the preset with any option flags applied).
    pub loss: Option<LossSpec>,
    /// `resnet18`, `resnet34`, `resnet50`. Default resnet18.
    pub arch: String,
    /// Base channel count. Default 64.
    pub width: i64,
    /// `cifar`, `imagenet` or `auto` (CIFAR stem below 64 pixels). Default auto.
    pub stem: String,
    /// Projection head hidden width and output dimension (concat-sum doubles the output).
    /// Defaults 2048 and 128.
    pub hidden_dim: i64,
    pub out_dim: i64,
    /// p of the output normalisation and the squared norm mu. Defaults 2 and 1.
    pub norm_p: f64,
    pub mu: f64,
    /// Pairs (images) per step; 2 x batch views. Default 256.
    pub batch: usize,
    /// Schedule length in epochs; 0 = set by max_steps alone. Default 0 (then 10 epochs when
    /// max_steps is 0 too).
    pub epochs: u64,
    /// Stop after this many steps; 0 = no limit. Default 0.
    pub max_steps: u64,
    /// Seed of initialisation, split, subset, shuffles and augmentations. Default 0.
    pub seed: u64,
    /// `adam`, `lars` or `sgd`. Default adam.
    pub optimizer: String,
    /// Base learning rate; 0 = the optimiser's default (adam 1e-3, lars 0.3, sgd 0.05).
    pub lr: f64,
    /// Default 1e-6.
    pub weight_decay: f64,
    /// SGD / LARS momentum. Default 0.9.
    pub momentum: f64,
    /// LARS trust coefficient. Default 1e-3.
    pub trust_coefficient: f64,
    /// Learning rate of the online linear probe (Adam, constant). Default 1e-3.
    pub probe_lr: f64,
    /// `auto`, `f32` or `bf16` (bf16 compute, f32 master weights and loss). Default auto: bf16
    /// where the hardware computes it natively (see [`hardware`]). A run's config.toml holds
    /// the resolved value.
    pub precision: Precision,
    /// Channels-last memory layout for images and conv weights; unset: chosen with the
    /// precision ([`hardware`]). A run's config.toml holds the resolved value. Default unset.
    pub channels_last: Option<bool>,
    /// `cpu`, `cuda` or `cuda:N`. Default cpu.
    pub device: String,
    /// Threads for libtorch and the augmentation pool; 0 = all cores. Default 0.
    pub threads: usize,
    /// Same seed, same machine, same threads: bitwise the same run (forces cuDNN
    /// deterministic algorithms on CUDA). Default false.
    pub deterministic: bool,
    /// A step line in metrics.jsonl every N steps. Default 10.
    pub log_every: u64,
    /// Checkpoint every N steps (0 = off) and every M minutes (0 = off). Defaults 0 and 10.
    pub checkpoint_every: u64,
    pub checkpoint_minutes: f64,
    /// Checkpoints kept. Default 3.
    pub keep_checkpoints: usize,
    /// k-NN monitor: k, temperature, every N epochs (0 = off), at most this many bank images
    /// and val queries. Defaults 200, 0.1, 1, 10000, 2000.
    pub knn_k: i64,
    pub knn_t: f64,
    pub knn_every: u64,
    pub knn_bank: usize,
    pub knn_queries: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::new(),
            format: String::new(),
            val_fraction: 0.1,
            subset: 0,
            preset: "laplacian".into(),
            loss: None,
            arch: "resnet18".into(),
            width: 64,
            stem: "auto".into(),
            hidden_dim: 2048,
            out_dim: 128,
            norm_p: 2.0,
            mu: 1.0,
            batch: 256,
            epochs: 0,
            max_steps: 0,
            seed: 0,
            optimizer: "adam".into(),
            lr: 0.0,
            weight_decay: 1e-6,
            momentum: 0.9,
            trust_coefficient: 1e-3,
            probe_lr: 1e-3,
            precision: Precision::Auto,
            channels_last: None,
            device: "cpu".into(),
            threads: 0,
            deterministic: false,
            log_every: 10,
            checkpoint_every: 0,
            checkpoint_minutes: 10.0,
            keep_checkpoints: 3,
            knn_k: 200,
            knn_t: 0.1,
            knn_every: 1,
            knn_bank: 10_000,
            knn_queries: 2_000,
        }
    }
}

/// Settings that change the trajectory of a run (refused on `--resume`).
pub const TRAJECTORY_KEYS: [&str; 27] = [
    "data",
    "format",
    "val_fraction",
    "subset",
    "preset",
    "loss",
    "arch",
    "width",
    "stem",
    "hidden_dim",
    "out_dim",
    "norm_p",
    "mu",
    "batch",
    "epochs",
    "seed",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "trust_coefficient",
    "probe_lr",
    "precision",
    "channels_last",
    "device",
    "threads",
    "deterministic",
];

impl TrainConfig {
    pub fn arch(&self) -> Result<Arch> {
        Arch::parse(&self.arch).ok_or_else(|| {
            TrainError::Config(format!(
                "unknown arch `{}`: expected one of {}",
                self.arch,
                Arch::NAMES.join(", ")
            ))
        })
    }

    pub fn optimizer_kind(&self) -> Result<OptimizerKind> {
        OptimizerKind::parse(&self.optimizer).ok_or_else(|| {
            TrainError::Config(format!(
                "unknown optimizer `{}`: expected one of {}",
                self.optimizer,
                OptimizerKind::NAMES.join(", ")
            ))
        })
    }

    /// The learning rate, the optimiser's default when 0.
    pub fn base_lr(&self) -> Result<f64> {
        Ok(if self.lr > 0.0 {
            self.lr
        } else {
            self.optimizer_kind()?.default_lr()
        })
    }

    /// bf16 compute; `auto` must be resolved first ([`TrainConfig::resolve_compute`]).
    pub fn bf16(&self) -> bool {
        self.precision == Precision::Bf16
    }

    /// Channels-last layout; unset (before [`TrainConfig::resolve_compute`]) counts as off.
    pub fn channels_last(&self) -> bool {
        self.channels_last.unwrap_or(false)
    }

    /// Replaces `auto` precision and an unset layout by the choice for `target`, and says why.
    pub fn resolve_compute(&mut self, target: &Target) -> ComputeChoice {
        let choice = hardware::resolve(self.precision, self.channels_last, target);
        self.precision = choice.precision;
        self.channels_last = Some(choice.channels_last);
        choice
    }

    /// `bf16 + channels-last`, `f32`, ... for messages and reports.
    pub fn compute_label(&self) -> String {
        format!(
            "{}{}",
            self.precision,
            if self.channels_last() {
                " + channels-last"
            } else {
                ""
            }
        )
    }

    /// The stem for images of `image_side` pixels: as set, or with `auto` the CIFAR stem (3x3
    /// conv, no max-pool) below 64 pixels and the ImageNet stem from 64 up.
    pub fn stem_for(&self, image_side: usize) -> Stem {
        match self.stem.as_str() {
            "cifar" => Stem::Cifar,
            "imagenet" => Stem::Imagenet,
            _ if image_side < 64 => Stem::Cifar,
            _ => Stem::Imagenet,
        }
    }

    /// (schedule horizon, stop step) for `steps_per_epoch`: `epochs` set the horizon and
    /// `max_steps` only stops early; `max_steps` alone is the horizon; neither: 10 epochs.
    pub fn schedule_steps(&self, steps_per_epoch: u64) -> (u64, u64) {
        match (self.epochs, self.max_steps) {
            (0, 0) => (10 * steps_per_epoch, 10 * steps_per_epoch),
            (0, m) => (m, m),
            (e, 0) => (e * steps_per_epoch, e * steps_per_epoch),
            (e, m) => (e * steps_per_epoch, m.min(e * steps_per_epoch)),
        }
    }

    /// The projection output width the loss sees (concat-sum doubles `out_dim`).
    pub fn projection_dim(&self) -> i64 {
        if self.preset == "concat-sum" && matches!(self.loss, None | Some(LossSpec::Concat { .. }))
        {
            2 * self.out_dim
        } else {
            self.out_dim
        }
    }

    /// The loss: `loss` when set, else the preset.
    pub fn loss_spec(&self) -> Result<LossSpec> {
        let spec = match &self.loss {
            Some(spec) => spec.clone(),
            None => LossSpec::preset(&self.preset, self.projection_dim() as usize)
                .map_err(|e| TrainError::Config(e.to_string()))?,
        };
        spec.validate(self.projection_dim() as usize)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(spec)
    }

    /// Checks every value a user can get wrong, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        self.arch()?;
        self.optimizer_kind()?;
        self.loss_spec()?;
        let bad = |name: &str, value: String, expected: &str| {
            Err(TrainError::Config(format!(
                "`{name}` = {value}: expected {expected}"
            )))
        };
        if self.width < 1 {
            return bad("width", self.width.to_string(), "at least 1");
        }
        if self.batch < 2 {
            return bad("batch", self.batch.to_string(), "at least 2 pairs");
        }
        if self.hidden_dim < 1 || self.out_dim < 1 {
            return bad(
                "hidden_dim/out_dim",
                format!("{}/{}", self.hidden_dim, self.out_dim),
                "at least 1",
            );
        }
        if !(self.norm_p == 1.0 || self.norm_p == 2.0 || self.norm_p == f64::INFINITY) {
            return bad("norm_p", self.norm_p.to_string(), "1, 2 or inf");
        }
        if self.mu.is_nan() || self.mu <= 0.0 {
            return bad("mu", self.mu.to_string(), "a value > 0");
        }
        if !(self.lr >= 0.0 && self.weight_decay >= 0.0 && self.probe_lr > 0.0) {
            return bad(
                "lr/weight_decay/probe_lr",
                format!("{}/{}/{}", self.lr, self.weight_decay, self.probe_lr),
                "lr >= 0, weight_decay >= 0, probe_lr > 0",
            );
        }
        if !matches!(self.stem.as_str(), "auto" | "cifar" | "imagenet") {
            return bad(
                "stem",
                format!("`{}`", self.stem),
                "auto, cifar or imagenet",
            );
        }
        if self.log_every == 0 {
            return bad("log_every", "0".into(), "at least 1");
        }
        if self.knn_k < 1 || self.knn_t <= 0.0 {
            return bad(
                "knn_k/knn_t",
                format!("{}/{}", self.knn_k, self.knn_t),
                "k >= 1 and t > 0",
            );
        }
        Ok(())
    }
}

/// The `[config]` table of a run folder's config.toml.
pub fn read_run_config(run_dir: &Path) -> Result<TrainConfig> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    let table = doc
        .get("config")
        .cloned()
        .ok_or_else(|| TrainError::Config(format!("{}: no [config] table", path.display())))?;
    table
        .try_into()
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}
