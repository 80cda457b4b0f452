//! Frozen encoders for evaluation: the encoder of a run folder (its newest checkpoint, a given
//! checkpoint, or the same network at initialisation), the evaluation splits, and features.
//!
//! Features are the encoder's pooled output, *before* the projection head (as in the paper's
//! and the official code's linear evaluation).

use crate::checkpoint;
use crate::config::read_run_config;
use crate::config::TrainConfig;
use crate::device::parse_device;
use crate::error::{Result, TrainError};
use crate::hardware::{self, Precision};
use crate::input::InputSpec;
use crate::resnet::{ResNet, ResNetConfig, Stem};
use kinfonce_data::{
    AugmentConfig, ContrastiveLoader, DataConfig, DataFormat, Dataset, Dtype, EvalConfig,
    EvalLoader, Layout, LoaderConfig, Normalization, Split,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{nn, Device, Kind, Tensor};

/// Which encoder to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EncoderSource {
    /// A run folder (its `config.toml` gives the architecture; its newest checkpoint the
    /// weights unless `checkpoint` is given).
    pub run_dir: Option<PathBuf>,
    /// A checkpoint folder `RUN/checkpoints/step-NNNNNNNN` (alone: its run is two folders up).
    pub checkpoint: Option<PathBuf>,
    /// The network at initialisation with the run's seed (the random-init baseline).
    pub init: bool,
    /// A MoCo run's momentum (key) encoder rather than the trained (query) one.
    pub momentum: bool,
}

impl EncoderSource {
    /// The run folder whose `config.toml` describes the network.
    pub fn run_folder(&self) -> Result<PathBuf> {
        match (&self.run_dir, &self.checkpoint) {
            (Some(run), _) => Ok(run.clone()),
            (None, Some(ck)) => ck
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .ok_or_else(|| {
                    TrainError::Config(format!(
                        "{}: cannot find its run folder (expected RUN/checkpoints/step-N); pass --run RUN too",
                        ck.display()
                    ))
                }),
            (None, None) => Err(TrainError::Config(
                "no encoder given: pass --run DIR or --checkpoint STEP_DIR".into(),
            )),
        }
    }

    /// The run's configuration (`config.toml`), with a clear error when the folder is no run.
    pub fn config(&self) -> Result<TrainConfig> {
        let run = self.run_folder()?;
        if !run.join("config.toml").is_file() {
            return Err(TrainError::Config(format!(
                "{} is not a run folder (no config.toml); pass the folder `kinfonce pretrain --out` wrote",
                run.display()
            )));
        }
        read_run_config(&run)
    }

    /// The checkpoint folder to load (`None` for `init`).
    pub fn checkpoint_dir(&self) -> Result<Option<PathBuf>> {
        if self.init {
            return Ok(None);
        }
        if let Some(ck) = &self.checkpoint {
            if !ck.join("encoder.safetensors").is_file() {
                return Err(TrainError::Checkpoint {
                    path: ck.clone(),
                    message: "not a checkpoint folder (no encoder.safetensors)".into(),
                });
            }
            return Ok(Some(ck.clone()));
        }
        let dir = self.run_folder()?.join("checkpoints");
        match checkpoint::latest(&dir)? {
            Some(p) => Ok(Some(p)),
            None => Err(TrainError::Checkpoint {
                path: dir,
                message: "the run folder has no complete checkpoint (pretrain or resume it first, \
                          or pass --init for the network at initialisation)"
                    .into(),
            }),
        }
    }
}

/// How features are computed.
#[derive(Debug, Clone)]
pub struct FeatureOptions {
    /// `cpu`, `cuda`, `cuda:N`; empty: the run's device. Default empty.
    pub device: String,
    /// `auto`, `f32` or `bf16`. Default auto (chosen from the hardware, see
    /// [`crate::hardware`]), as for pretraining.
    pub precision: Precision,
    /// Channels-last layout; unset: chosen with the precision. Default unset.
    pub channels_last: Option<bool>,
    /// Images per forward pass. Default 256.
    pub batch: usize,
    /// Threads of the image pipeline. Default 1.
    pub threads: usize,
    /// Images resized to 1.1 x the side and centre-cropped (the official evaluation view)
    /// rather than taken whole. Default false.
    pub center_crop: bool,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions {
            device: String::new(),
            precision: Precision::Auto,
            channels_last: None,
            batch: 256,
            threads: 1,
            center_crop: false,
        }
    }
}

/// An encoder in eval mode (BatchNorm uses its running statistics), no gradients.
pub struct FrozenEncoder {
    /// The run's configuration.
    pub config: TrainConfig,
    /// The checkpoint loaded (`None`: initialisation).
    pub checkpoint: Option<PathBuf>,
    /// Training step of that checkpoint (0 at initialisation).
    pub step: u64,
    /// Width of the features.
    pub feature_dim: i64,
    /// Input channels the encoder expects.
    pub in_channels: i64,
    /// The device it runs on.
    pub device: Device,
    /// Precision and layout of the forward pass (resolved from [`FeatureOptions`]).
    pub precision: Precision,
    pub channels_last: bool,
    encoder: ResNet,
    _vs: nn::VarStore,
}

impl FrozenEncoder {
    /// Loads the encoder of `source`.
    ///
    /// The stem and input channels come from the checkpoint's `conv1.weight` (3x3 kernel: CIFAR
    /// stem, 7x7: the ImageNet or STL-10 stem, as the configuration says); at initialisation from the configuration and `image_side` /
    /// `channels` of the data (as the trainer chooses them). At initialisation the weights are
    /// drawn exactly as the trainer draws them: `manual_seed(seed)`, then the encoder first.
    pub fn load(
        source: &EncoderSource,
        options: &FeatureOptions,
        image_side: usize,
        channels: usize,
    ) -> Result<FrozenEncoder> {
        let config = source.config()?;
        Self::load_with_config(source, config, options, image_side, channels)
    }

    /// As [`FrozenEncoder::load`] with the configuration given.
    pub fn load_with_config(
        source: &EncoderSource,
        config: TrainConfig,
        options: &FeatureOptions,
        image_side: usize,
        channels: usize,
    ) -> Result<FrozenEncoder> {
        let device = parse_device(if options.device.is_empty() {
            &config.compute.device
        } else {
            &options.device
        })?;
        let compute = hardware::resolve(
            options.precision,
            hardware::LayoutAsk::of(options.channels_last, false),
            &hardware::target_of(device),
            config
                .model
                .arch
                .strided_shortcut_channels(config.model.width),
        )
        .map_err(TrainError::Config)?;
        let ck_dir = source.checkpoint_dir()?;
        let ck = ck_dir.as_deref().map(checkpoint::load).transpose()?;
        let configured = config.stem_for(image_side, config.run_format());
        let (stem, in_channels) = match ck.as_ref().and_then(|c| c.encoder.get("conv1.weight")) {
            // The kernel tells the CIFAR stem from the 7x7 ones; the configuration tells
            // which 7x7 stem (with or without max-pool).
            Some(w) if w.dim() == 4 => {
                let s = w.size();
                let stem = match (s[3], configured) {
                    (7, Stem::Stl10) => Stem::Stl10,
                    (7, _) => Stem::Imagenet,
                    _ => Stem::Cifar,
                };
                (stem, s[1])
            }
            _ => (configured, channels as i64),
        };
        tch::manual_seed(config.compute.seed as i64);
        let vs = nn::VarStore::new(device);
        let rc = ResNetConfig {
            arch: config.model.arch,
            width: config.model.width,
            stem,
            in_channels,
            stem_relu: config.model.stem_relu,
            init: config.model.init,
        };
        let encoder = rc.init(vs.root());
        if source.momentum && ck.is_none() {
            return Err(TrainError::Config(
                "the momentum encoder is a MoCo run's trained key encoder; drop --init".into(),
            ));
        }
        if let Some(ck) = &ck {
            let mut targets: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            targets.sort_by(|a, b| a.0.cmp(&b.0));
            // The momentum encoder sits in the head file, under `momentum.` with the encoder's
            // names (its head under `momentum.projection.`).
            let (tensors, file) = if source.momentum {
                let momentum: HashMap<String, Tensor> = ck
                    .head
                    .iter()
                    .filter_map(|(n, t)| {
                        let name = n.strip_prefix("momentum.")?;
                        (!name.starts_with("projection."))
                            .then(|| (name.to_string(), t.shallow_clone()))
                    })
                    .collect();
                if momentum.is_empty() {
                    return Err(TrainError::Checkpoint {
                        path: ck.path.join("head.safetensors"),
                        message: "holds no momentum encoder: the run is not a MoCo run".into(),
                    });
                }
                (momentum, "head.safetensors")
            } else {
                (
                    ck.encoder
                        .iter()
                        .map(|(n, t)| (n.clone(), t.shallow_clone()))
                        .collect(),
                    "encoder.safetensors",
                )
            };
            checkpoint::copy_into(&targets, &tensors, &ck.path.join(file)).map_err(
                |e| match e {
                    TrainError::Checkpoint { path, message } => TrainError::Checkpoint {
                        path,
                        message: format!(
                            "{message}; the run's config.toml describes {} width {}",
                            config.model.arch, config.model.width
                        ),
                    },
                    other => other,
                },
            )?;
            // A checkpoint with more tensors than the network is another architecture too.
            if let Some(extra) = tensors
                .keys()
                .find(|k| !targets.iter().any(|(n, _)| n == *k))
            {
                return Err(TrainError::Checkpoint {
                    path: ck.path.join(file),
                    message: format!(
                        "holds `{extra}`, which {} width {} (the run's config.toml) does not have: another architecture?",
                        config.model.arch, config.model.width
                    ),
                });
            }
        }
        if compute.channels_last {
            encoder.convert_to_channels_last();
        }
        Ok(FrozenEncoder {
            checkpoint: ck.as_ref().map(|c| c.path.clone()),
            step: ck.as_ref().map(|c| c.state.step).unwrap_or(0),
            feature_dim: rc.feature_dim(),
            in_channels,
            device,
            precision: compute.precision,
            channels_last: compute.channels_last,
            config,
            encoder,
            _vs: vs,
        })
    }

    /// Checks that `data` has the channels the encoder expects.
    pub fn check_channels(&self, data: &Dataset, what: &str) -> Result<()> {
        if data.channels() as i64 != self.in_channels {
            return Err(TrainError::Data(format!(
                "{what} has {}-channel images; the encoder expects {} channels",
                data.channels(),
                self.in_channels
            )));
        }
        Ok(())
    }

    fn layout(&self) -> Layout {
        if self.channels_last {
            Layout::Nhwc
        } else {
            Layout::Nchw
        }
    }

    /// The images of a batch buffer as an input tensor (device, layout and precision of the
    /// run), like the trainer builds them.
    pub fn input(&self, data: &[f32], shape: [usize; 4], layout: Layout) -> Tensor {
        InputSpec {
            device: self.device,
            channels_last: self.channels_last,
            bf16: self.precision == Precision::Bf16,
        }
        .tensor(data, shape, layout)
    }

    /// f32 features `[n, feature_dim]` of a batch (on the encoder's device).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.encoder.forward(x, false).to_kind(Kind::Float)
    }

    /// f32 features of a batch with the encoder's batch norm in training mode, without gradient:
    /// batch statistics by `splits` interleaved groups, the running statistics updated (a frozen
    /// backbone under a trainer that puts the whole model in train mode).
    pub fn forward_train(&self, x: &Tensor, splits: usize) -> Tensor {
        let _guard = tch::no_grad_guard();
        crate::batch_norm::split(splits, || self.encoder.forward(x, true)).to_kind(Kind::Float)
    }

    /// The run's MoCo batch-norm splits (1 for SimCLR runs).
    pub fn bn_splits(&self) -> usize {
        match self.config.method.method {
            crate::config::Method::Moco => self.config.method.bn_splits.max(1),
            crate::config::Method::Simclr => 1,
        }
    }

    /// Features of every image of `data`, in order, without augmentation (centre-cropped when
    /// `options.center_crop`): f32 `[len, feature_dim]` on the CPU. `progress` is called with
    /// the images done so far.
    pub fn features(
        &self,
        data: &Arc<Dataset>,
        normalization: &Normalization,
        options: &FeatureOptions,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Tensor> {
        self.check_channels(data, "the data set")?;
        if data.is_empty() {
            return Ok(Tensor::zeros(
                [0, self.feature_dim],
                (Kind::Float, Device::Cpu),
            ));
        }
        let loader = EvalLoader::new(
            Arc::clone(data),
            EvalConfig {
                batch_size: options.batch.max(1),
                threads: options.threads.max(1),
                prefetch: 2,
                size: Some(data.height().max(data.width())),
                center_crop: options.center_crop,
                normalization: normalization.clone(),
                layout: self.layout(),
                dtype: Dtype::F32,
            },
        )
        .map_err(|e| TrainError::Data(e.to_string()))?;
        let mut parts = Vec::with_capacity(loader.num_batches());
        let mut done = 0;
        for batch in loader.batches() {
            let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
            let x = self.input(
                batch.as_f32().expect("f32 eval batches"),
                batch.shape,
                batch.layout,
            );
            parts.push(self.forward(&x).to_device(Device::Cpu));
            done += batch.images();
            progress(done);
        }
        Ok(Tensor::cat(&parts, 0))
    }

    /// A loader of single views of `data` augmented by `augment`, shuffled per epoch with
    /// `seed`, the last partial batch dropped or kept (a linear probe's training images).
    pub fn augmented_loader(
        &self,
        data: &Arc<Dataset>,
        augment: AugmentConfig,
        options: &FeatureOptions,
        seed: u64,
        drop_last: bool,
    ) -> Result<ContrastiveLoader> {
        self.check_channels(data, "the data set")?;
        ContrastiveLoader::new(
            Arc::clone(data),
            augment,
            LoaderConfig {
                batch_size: options.batch.max(1),
                views: 1,
                threads: options.threads.max(1),
                prefetch: 2,
                shuffle: true,
                drop_last,
                seed,
                layout: self.layout(),
                dtype: Dtype::F32,
                shard: (0, 1),
            },
        )
        .map_err(|e| TrainError::Data(e.to_string()))
    }
}

/// The splits an evaluation reads: `train` (fit: the training images minus the run's seeded
/// validation split) and `test` (report: the official test set).
pub struct EvalData {
    pub format: DataFormat,
    /// The data set's path.
    pub path: PathBuf,
    pub train: Arc<Dataset>,
    /// The held-out training images (the complement of `train` before `subset_train`).
    pub val: Arc<Dataset>,
    pub test: Arc<Dataset>,
    /// Name of the reported split (`test`, or `val` when asked).
    pub test_split: Split,
    /// The normalisation the encoder was trained with.
    pub normalization: Normalization,
    /// Fraction of the training images held out of `train` as `val`.
    pub val_fraction: f64,
}

impl EvalData {
    pub fn classes(&self) -> usize {
        self.train.num_classes()
    }
}

/// Where the evaluation data comes from.
#[derive(Debug, Clone)]
pub struct EvalDataOptions {
    /// Data set path; `None`: the run's own data set.
    pub data: Option<PathBuf>,
    /// Its format; `None`: the run's format when the path is the run's, else detected.
    pub format: Option<String>,
    /// The split reported on: `Test` (default) or `Val`.
    pub report_split: Split,
    /// Keep at most this many `train` images (an evenly spaced selection of the seeded split).
    pub subset_train: Option<usize>,
    /// The fraction of the training images held out as `val`; `None`: the run's.
    pub val_fraction: Option<f64>,
}

impl Default for EvalDataOptions {
    fn default() -> Self {
        EvalDataOptions {
            data: None,
            format: None,
            report_split: Split::Test,
            subset_train: None,
            val_fraction: None,
        }
    }
}

fn parse_format(name: &str) -> Result<DataFormat> {
    name.parse::<DataFormat>()
        .map_err(|e| TrainError::Data(e.to_string()))
}

/// The normalisation the run's encoder saw: that of the run's data format (`fallback` when the
/// run's data cannot be identified any more).
pub fn run_normalization(config: &TrainConfig, fallback: DataFormat) -> Normalization {
    config.normalization(config.run_format().unwrap_or(fallback))
}

/// The data set and format an evaluation of the run `config` reads: `data` and `format` when
/// given, else the run's own (the run's format only with the run's data).
pub fn eval_source(
    config: &TrainConfig,
    data: Option<&Path>,
    format: Option<&str>,
) -> Result<(PathBuf, Option<DataFormat>)> {
    let format = match format {
        Some(name) => Some(parse_format(name)?),
        None if data.is_none() => config.data.format,
        None => None,
    };
    let path = data.map_or_else(|| config.data.data.clone(), Path::to_path_buf);
    Ok((path, format))
}

/// Reads the splits for the run `config`: `train` (the training images minus a seeded
/// validation split, the run's unless `options.val_fraction`, *without* the pretraining
/// `--subset`), that validation split, and the report split (the official test set).
pub fn load_eval_data(config: &TrainConfig, options: &EvalDataOptions) -> Result<EvalData> {
    let (path, format) = eval_source(config, options.data.as_deref(), options.format.as_deref())?;
    let mut dc = DataConfig::new(&path);
    dc.format = format;
    dc.val_fraction = options.val_fraction.unwrap_or(config.data.val_fraction);
    dc.seed = config.compute.seed;
    dc.folder = config.folder_options();
    let data_err = |e: kinfonce_data::DataError| TrainError::Data(e.to_string());
    let format = dc.resolved_format().map_err(data_err)?;
    let official = dc
        .read_official(true, options.report_split == Split::Test)
        .map_err(data_err)?;
    let full = official
        .train
        .ok_or_else(|| TrainError::Data(format!("{}: no training images", path.display())))?;
    EvalData::from_official(
        &dc,
        format,
        &full,
        official.test,
        run_normalization(config, format),
        options,
    )
}

impl EvalData {
    /// Cuts the splits from the official sets already read (`dc` carries the seed and the
    /// validation fraction).
    pub fn from_official(
        dc: &DataConfig,
        format: DataFormat,
        full_train: &Dataset,
        official_test: Option<Dataset>,
        normalization: Normalization,
        options: &EvalDataOptions,
    ) -> Result<EvalData> {
        let data_err = |e: kinfonce_data::DataError| TrainError::Data(e.to_string());
        let (train, val) = dc.split_train(full_train).map_err(data_err)?;
        let train = match options.subset_train {
            Some(n) if n < train.len() => {
                let idx: Vec<usize> = (0..n).map(|i| i * train.len() / n).collect();
                train.select(&idx).map_err(data_err)?
            }
            _ => train,
        };
        let val = Arc::new(val);
        let test = match options.report_split {
            Split::Val => Arc::clone(&val),
            _ => Arc::new(official_test.ok_or_else(|| {
                TrainError::Data(format!(
                    "{}: the data set has no test split (for an ImageFolder: test/ or val/ beside train/); \
                     report on the held-out training images with --test-split val",
                    dc.path.display()
                ))
            })?),
        };
        if !train.is_labelled() {
            return Err(TrainError::Data(format!(
                "{}: the images have no classes (no class folders); evaluation needs labels",
                dc.path.display()
            )));
        }
        if test.is_empty() {
            return Err(TrainError::Data(format!(
                "{}: the {} split is empty",
                dc.path.display(),
                options.report_split
            )));
        }
        if test.num_classes() != train.num_classes() || test.class_names() != train.class_names() {
            return Err(TrainError::Data(format!(
                "{}: the train split has {} classes and the {} split {}; they must be the same classes",
                dc.path.display(),
                train.num_classes(),
                options.report_split,
                test.num_classes()
            )));
        }
        Ok(EvalData {
            format,
            path: dc.path.clone(),
            train: Arc::new(train),
            val,
            test,
            test_split: options.report_split,
            normalization,
            val_fraction: dc.val_fraction,
        })
    }
}

/// Labels of a data set as an int64 tensor `[len]`.
pub fn labels_tensor(d: &Dataset) -> Tensor {
    Tensor::from_slice(&d.labels().iter().map(|&l| l as i64).collect::<Vec<_>>())
}
