//! The pretraining loop: SimCLR pairing with any Kernel-InfoNCE loss, online linear probe,
//! k-NN monitor, collapse diagnostics, metrics, checkpoints and exact resume.

use crate::checkpoint::{self, TrainingState};
use crate::config::TrainConfig;
use crate::error::{io_err, Result, TrainError};
use crate::hardware::{self, Target};
use crate::input::InputSpec;
use crate::layers::Linear;
use crate::loss_tensor::TensorLoss;
use crate::metrics::{EpochRecord, Record};
use crate::monitor::{self, Diagnostics};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::projection::{Projection, ProjectionConfig};
use crate::resnet::{ResNet, ResNetConfig};
use crate::schedule::WarmupCosine;
use crate::summary::Summary;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kinfonce_data::{
    AugmentConfig, Batch, ContrastiveLoader, DataConfig, DataFormat, Dataset, Dtype, EvalConfig,
    EvalLoader, Layout, LoaderConfig, Normalization, Splits,
};
use kinfonce_loss::{Kernel, LossSpec, MatRef};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<bool> = OnceLock::new();

/// Installs the SIGINT/SIGTERM handler (once per process): it only raises a flag that the loop
/// checks after each step, so the run saves a checkpoint and exits cleanly.
pub fn install_signal_handler() {
    HANDLER
        .get_or_init(|| ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)).is_ok());
}

/// Requests a clean stop (as SIGINT does).
pub fn request_stop() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// True once SIGINT/SIGTERM (or [`request_stop`]) asked the process to stop.
pub fn stop_requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The libtorch device named `cpu`, `cuda` or `cuda:N`, checked to exist.
pub fn parse_device(name: &str) -> Result<Device> {
    let missing = |why: String| TrainError::Device(name.to_string(), why);
    let index = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => i,
            None => return Err(missing("expected cpu, cuda or cuda:N".into())),
        },
    };
    if !tch::Cuda::is_available() {
        return Err(missing(
            "no CUDA device is visible to libtorch (is this binary built with --features cuda, and is there a GPU?)"
                .into(),
        ));
    }
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        return Err(missing(format!("only {count} CUDA device(s)")));
    }
    Ok(Device::Cuda(index))
}

/// Threads for libtorch and rayon; 0 means every core.
pub fn configure_threads(threads: usize) -> usize {
    let n = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    tch::set_num_threads(n as i32);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    n
}

/// Options of one invocation that do not change the trajectory.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Hide the progress bar (tests).
    pub quiet: bool,
    /// Provenance lines for config.toml (git revision, versions, machine).
    pub provenance: Vec<(String, String)>,
}

struct KnnSets {
    bank: EvalLoader,
    bank_labels: Tensor,
    queries: EvalLoader,
    query_labels: Tensor,
    classes: i64,
}

/// Reads the data sets of `config`.
pub fn load_data(config: &TrainConfig) -> Result<Splits> {
    if config.data.as_os_str().is_empty() {
        return Err(TrainError::Config(
            "`data` is not set: name a data set (a file or folder) with --data".into(),
        ));
    }
    let mut dc = DataConfig::new(&config.data);
    if !config.format.is_empty() {
        dc.format = Some(
            config
                .format
                .parse::<DataFormat>()
                .map_err(|e| TrainError::Data(e.to_string()))?,
        );
    }
    dc.val_fraction = config.val_fraction;
    dc.seed = config.seed;
    dc.subset = (config.subset > 0).then_some(config.subset);
    dc.load_splits(false)
        .map_err(|e| TrainError::Data(e.to_string()))
}

fn first_n(d: &Dataset, n: usize) -> Result<Dataset> {
    if d.len() <= n {
        return Ok(d.clone());
    }
    // An evenly spaced selection keeps the class balance of a shuffled split.
    let idx: Vec<usize> = (0..n).map(|i| i * d.len() / n).collect();
    d.select(&idx).map_err(|e| TrainError::Data(e.to_string()))
}

/// A pretraining run bound to its folder.
pub struct Trainer {
    config: TrainConfig,
    run_dir: PathBuf,
    device: Device,
    bf16: bool,
    model_vs: nn::VarStore,
    encoder: ResNet,
    head: Projection,
    probe_vs: nn::VarStore,
    probe: Linear,
    opt: Optimizer,
    probe_opt: Optimizer,
    schedule: WarmupCosine,
    stop_step: u64,
    loader: ContrastiveLoader,
    knn: Option<KnnSets>,
    spec: LossSpec,
    tensor_loss: Option<TensorLoss>,
    state: TrainingState,
    classes: i64,
    options: RunOptions,
    last_checkpoint: Option<PathBuf>,
    last_checkpoint_step: Option<u64>,
}

impl Trainer {
    /// Builds a fresh run in `run_dir` (which must not hold a run yet), or continues the run
    /// in `run_dir` from its newest checkpoint when `resume` (pass the configuration saved in
    /// the run folder, [`read_run_config`]).
    pub fn new(
        mut config: TrainConfig,
        run_dir: &Path,
        resume: bool,
        mut options: RunOptions,
    ) -> Result<Trainer> {
        config.validate()?;
        if !resume && run_dir.join("config.toml").exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run; continue it with --resume {0} or choose another --out",
                run_dir.display()
            )));
        }
        let device = parse_device(&config.device)?;
        if config.deterministic && device != Device::Cpu {
            tch::Cuda::cudnn_set_benchmark(false);
        }
        let target = hardware::target_of(device);
        let choice = config.resolve_compute(&target);
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
        let bf16 = config.bf16();
        let splits = load_data(&config)?;
        let format = splits.format;
        let train = Arc::new(splits.train);
        let size = train.height().max(train.width());
        let stem = config.stem_for(size);
        let augment = AugmentConfig::preset(format, size);
        let layout = if config.channels_last() {
            Layout::Nhwc
        } else {
            Layout::Nchw
        };
        let loader = ContrastiveLoader::new(
            Arc::clone(&train),
            augment,
            LoaderConfig {
                batch_size: config.batch,
                views: 2,
                threads: config.threads.max(1),
                prefetch: 2,
                shuffle: true,
                drop_last: true,
                seed: config.seed,
                layout,
                dtype: Dtype::F32,
            },
        )
        .map_err(|e| TrainError::Data(e.to_string()))?;
        let steps_per_epoch = loader.batches_per_epoch() as u64;
        let (horizon, stop_step) = config.schedule_steps(steps_per_epoch);
        let base_lr = config.base_lr()?;
        let schedule = WarmupCosine::new(base_lr, horizon, steps_per_epoch);

        let classes = if train.is_labelled() {
            train.num_classes() as i64
        } else {
            0
        };
        let knn = if classes > 1 && config.knn_every > 0 && !splits.val.is_empty() {
            let eval_cfg = EvalConfig {
                batch_size: 256,
                threads: config.threads.max(1),
                prefetch: 2,
                size: Some(size),
                normalization: Normalization::for_format(format),
                layout,
                dtype: Dtype::F32,
            };
            let bank = first_n(&train, config.knn_bank)?;
            let queries = first_n(&splits.val, config.knn_queries)?;
            let labels = |d: &Dataset| {
                Tensor::from_slice(&d.labels().iter().map(|&l| l as i64).collect::<Vec<_>>())
            };
            Some(KnnSets {
                bank_labels: labels(&bank),
                query_labels: labels(&queries),
                bank: EvalLoader::new(Arc::new(bank), eval_cfg.clone())
                    .map_err(|e| TrainError::Data(e.to_string()))?,
                queries: EvalLoader::new(Arc::new(queries), eval_cfg)
                    .map_err(|e| TrainError::Data(e.to_string()))?,
                classes,
            })
        } else {
            None
        };

        tch::manual_seed(config.seed as i64);
        let model_vs = nn::VarStore::new(device);
        let resnet_config = ResNetConfig {
            arch: config.arch()?,
            width: config.width,
            stem,
            in_channels: train.channels() as i64,
        };
        let encoder = resnet_config.init(model_vs.root());
        let head = ProjectionConfig {
            hidden: config.hidden_dim,
            out: config.projection_dim(),
            norm_p: config.norm_p,
            mu: config.mu,
        }
        .init(model_vs.root() / "projection", resnet_config.feature_dim());
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
        let trainable = |vs: &nn::VarStore| -> Vec<(String, Tensor)> {
            vs.variables()
                .into_iter()
                .filter(|(_, t)| t.requires_grad())
                .collect()
        };
        let kind = config.optimizer_kind()?;
        let opt = Optimizer::new(
            OptimizerConfig {
                kind,
                weight_decay: config.weight_decay,
                momentum: config.momentum,
                trust_coefficient: config.trust_coefficient,
                ..Default::default()
            },
            trainable(&model_vs),
        );
        let probe_opt = Optimizer::new(
            OptimizerConfig {
                kind: OptimizerKind::Adam,
                weight_decay: 0.0,
                ..Default::default()
            },
            trainable(&probe_vs),
        );
        let spec = config.loss_spec()?;
        let tensor_loss = (device != Device::Cpu)
            .then(|| tensor_loss_of(&spec))
            .transpose()?;

        let mut trainer = Trainer {
            state: TrainingState {
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                optimizer_step: 0,
                probe_optimizer_step: 0,
                seed: config.seed,
                last_loss: f64::NAN,
                elapsed_s: 0.0,
            },
            config,
            run_dir: run_dir.to_path_buf(),
            device,
            bf16,
            model_vs,
            encoder,
            head,
            probe_vs,
            probe,
            opt,
            probe_opt,
            schedule,
            stop_step,
            loader,
            knn,
            spec,
            tensor_loss,
            classes,
            options,
            last_checkpoint: None,
            last_checkpoint_step: None,
        };
        if resume {
            trainer.restore()?;
        } else {
            trainer.create_run_dir(&train)?;
        }
        Ok(trainer)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.loader.batches_per_epoch() as u64
    }

    pub fn stop_step(&self) -> u64 {
        self.stop_step
    }

    fn create_run_dir(&self, train: &Dataset) -> Result<()> {
        let dir = &self.run_dir;
        if dir.join("config.toml").exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run; continue it with --resume {0} or choose another --out",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut provenance = toml::Table::new();
        for (k, v) in &self.options.provenance {
            provenance.insert(k.clone(), toml::Value::String(v.clone()));
        }
        provenance.insert(
            "train_fingerprint".into(),
            toml::Value::String(train.fingerprint()),
        );
        provenance.insert(
            "train_images".into(),
            toml::Value::Integer(train.len() as i64),
        );
        provenance.insert(
            "steps_per_epoch".into(),
            toml::Value::Integer(self.steps_per_epoch() as i64),
        );
        provenance.insert("tch".into(), toml::Value::String(crate::TCH_VERSION.into()));
        provenance.insert(
            "threads".into(),
            toml::Value::Integer(tch::get_num_threads() as i64),
        );
        provenance.insert(
            "device".into(),
            toml::Value::String(format!("{:?}", self.device)),
        );
        let mut doc = toml::Table::new();
        doc.insert(
            "config".into(),
            toml::Value::try_from(&self.config).map_err(|e| TrainError::Config(e.to_string()))?,
        );
        doc.insert("provenance".into(), toml::Value::Table(provenance));
        let text = format!(
            "# kinfonce pretrain: the resolved configuration ([config]) and where it ran.\n{}",
            toml::to_string(&doc).map_err(|e| TrainError::Config(e.to_string()))?
        );
        let path = dir.join("config.toml");
        fs::write(&path, text).map_err(io_err(&path))?;
        let p = dir.join("metrics.jsonl");
        fs::write(&p, "").map_err(io_err(&p))?;
        Ok(())
    }

    fn named(vs: &nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("{prefix}{n}"), t))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn encoder_tensors(&self) -> Vec<(String, Tensor)> {
        Self::named(&self.model_vs, "")
            .into_iter()
            .filter(|(n, _)| !n.starts_with("projection."))
            .collect()
    }

    fn head_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = Self::named(&self.model_vs, "")
            .into_iter()
            .filter(|(n, _)| n.starts_with("projection."))
            .collect();
        v.extend(Self::named(&self.probe_vs, ""));
        v
    }

    fn optimizer_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .opt
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t))
            .collect();
        v.extend(
            self.probe_opt
                .state_tensors()
                .into_iter()
                .map(|(n, t)| (format!("probe.{n}"), t)),
        );
        v
    }

    /// Writes a checkpoint of the current state.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.state.optimizer_step = self.opt.step;
        self.state.probe_optimizer_step = self.probe_opt.step;
        let path = checkpoint::save(
            &self.run_dir.join("checkpoints"),
            &self.encoder_tensors(),
            &self.head_tensors(),
            &self.optimizer_tensors(),
            &self.state,
            self.config.keep_checkpoints,
        )?;
        self.last_checkpoint = Some(path.clone());
        self.last_checkpoint_step = Some(self.state.step);
        Ok(path)
    }

    fn restore(&mut self) -> Result<()> {
        let dir = self.run_dir.join("checkpoints");
        let Some(path) = checkpoint::latest(&dir)? else {
            return Err(TrainError::Checkpoint {
                path: dir,
                message: "no complete checkpoint to resume from".into(),
            });
        };
        let ck = checkpoint::load(&path)?;
        checkpoint::copy_into(
            &self.encoder_tensors(),
            &ck.encoder,
            &path.join("encoder.safetensors"),
        )?;
        checkpoint::copy_into(
            &self.head_tensors(),
            &ck.head,
            &path.join("head.safetensors"),
        )?;
        let split = |prefix: &str| -> HashMap<String, Tensor> {
            ck.optimizer
                .iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(prefix)
                        .map(|s| (s.to_string(), t.shallow_clone()))
                })
                .collect()
        };
        let bad = |message: String| TrainError::Checkpoint {
            path: path.join("optimizer.safetensors"),
            message,
        };
        self.opt
            .load_state(&split("model."), ck.state.optimizer_step)
            .map_err(bad)?;
        self.probe_opt
            .load_state(&split("probe."), ck.state.probe_optimizer_step)
            .map_err(|m| TrainError::Checkpoint {
                path: path.join("optimizer.safetensors"),
                message: m,
            })?;
        self.state = ck.state;
        self.last_checkpoint = Some(path);
        self.last_checkpoint_step = Some(self.state.step);
        // Lines written after the checkpoint belong to steps that will run again.
        let metrics = self.run_dir.join("metrics.jsonl");
        if let Ok(text) = fs::read_to_string(&metrics) {
            let step = self.state.step;
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| Record::from_line(l).is_ok_and(|r| r.step() <= step))
                .collect();
            let mut out = kept.join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            fs::write(&metrics, out).map_err(io_err(&metrics))?;
        }
        Ok(())
    }

    fn input_tensor(&self, data: &[f32], shape: [usize; 4], layout: Layout) -> Tensor {
        InputSpec {
            device: self.device,
            channels_last: self.config.channels_last(),
            bf16: self.bf16,
        }
        .tensor(data, shape, layout)
    }

    /// Encoder features of a whole eval set (eval mode, no gradient), f32 `[N, F]`.
    fn features(&self, loader: &EvalLoader) -> Tensor {
        let _guard = tch::no_grad_guard();
        let mut parts = Vec::new();
        for batch in loader.batches() {
            let x = self.input_tensor(
                batch.as_f32().expect("f32 eval batches"),
                batch.shape,
                batch.layout,
            );
            parts.push(self.encoder.forward(&x, false).to_kind(Kind::Float));
        }
        Tensor::cat(&parts, 0)
    }

    /// Weighted k-NN top-1 of val queries against the train bank.
    pub fn knn_top1(&self) -> Option<f64> {
        let knn = self.knn.as_ref()?;
        let bank = self.features(&knn.bank);
        let queries = self.features(&knn.queries);
        Some(monitor::knn_top1(
            &bank,
            &knn.bank_labels,
            &queries,
            &knn.query_labels,
            self.config.knn_k,
            self.config.knn_t,
            knn.classes,
        ))
    }

    /// One optimisation step. Returns (loss, probe correct, probe total, z1, z2).
    fn train_step(&mut self, batch: &Batch, lr: f64) -> Result<(f64, i64, i64, Tensor, Tensor)> {
        let x = self.input_tensor(
            batch.as_f32().expect("f32 batches"),
            batch.shape,
            batch.layout,
        );
        let b = batch.images() as i64;
        self.opt.zero_grad();
        self.probe_opt.zero_grad();
        let features = self.encoder.forward(&x, true);
        let z = self.head.forward(&features, true);
        let z1 = z.narrow(0, 0, b);
        let z2 = z.narrow(0, b, b);
        let loss = match &self.tensor_loss {
            Some(tl) => {
                let loss = tl.forward(&z1, &z2);
                let value = f64::try_from(&loss).unwrap_or(f64::NAN);
                if value.is_finite() {
                    loss.backward();
                }
                value
            }
            None => {
                // The fused CPU kernel gives the loss and d loss / d z; autograd takes it from
                // there through the surrogate sum(z * g).
                let d = z.size()[1] as usize;
                let zc = z.detach().to_kind(Kind::Float).contiguous();
                let host =
                    Vec::<f32>::try_from(zc.flatten(0, -1)).map_err(|e| TrainError::Torch {
                        context: "copying projections".into(),
                        source: e,
                    })?;
                let half = b as usize * d;
                let rows = b as usize;
                let out = MatRef::new(&host[..half], rows, d).and_then(|m1| {
                    MatRef::new(&host[half..], rows, d)
                        .and_then(|m2| kinfonce_loss::simclr(&self.spec, m1, m2))
                });
                match out {
                    Ok(out) if out.loss.is_finite() => {
                        let mut g = Vec::with_capacity(2 * half);
                        g.extend_from_slice(&out.grads[0].data);
                        g.extend_from_slice(&out.grads[1].data);
                        let g = Tensor::from_slice(&g)
                            .view([2 * b, d as i64])
                            .to_device(self.device);
                        (&z * g).sum(Kind::Float).backward();
                        out.loss
                    }
                    Ok(out) => out.loss,
                    Err(e) => {
                        // Non-finite projections are reported as a NaN loss of this step.
                        if host.iter().all(|v| v.is_finite()) {
                            return Err(TrainError::Config(format!("loss: {e}")));
                        }
                        f64::NAN
                    }
                }
            }
        };
        if !loss.is_finite() {
            return Ok((loss, 0, 0, z1.detach(), z2.detach()));
        }
        // Online probe on detached features (no gradient reaches the encoder).
        let (mut correct, mut total) = (0, 0);
        if self.classes > 1 {
            let labels = Tensor::from_slice(&batch.row_labels()).to_device(self.device);
            let logits = self.probe.forward(&features.detach().to_kind(Kind::Float));
            logits.cross_entropy_for_logits(&labels).backward();
            correct = i64::try_from(logits.argmax(1, false).eq_tensor(&labels).sum(Kind::Int64))
                .unwrap_or(0);
            total = 2 * b;
            self.probe_opt.step(self.config.probe_lr);
        }
        self.opt.step(lr);
        Ok((loss, correct, total, z1.detach(), z2.detach()))
    }

    /// An epoch record with its monitors: the k-NN monitor when `knn_due`, the online probe's
    /// accuracy over the epoch's (correct, total) rows, and the geometry of the last projections.
    fn epoch_record(
        &self,
        mut record: EpochRecord,
        knn_due: bool,
        (correct, total): (i64, i64),
        last_z: Option<&(Tensor, Tensor)>,
        summary: &mut Summary,
    ) -> EpochRecord {
        if knn_due {
            if let Some(acc) = self.knn_top1() {
                record.knn_top1 = Some(acc);
                summary.knn_top1 = Some(acc);
            }
        }
        if total > 0 {
            let online = correct as f64 / total as f64;
            record.online_top1 = Some(online);
            summary.online_top1 = Some(online);
        }
        if let Some((z1, z2)) = last_z {
            let d: Diagnostics = monitor::diagnostics(z1, z2);
            record.alignment = Some(d.alignment);
            record.uniformity = Some(d.uniformity);
            record.effective_rank = Some(d.effective_rank);
        }
        record
    }

    /// Trains until the stop step, an interrupt or an error. Writes metrics, checkpoints, the
    /// report and the loss plot.
    pub fn run(&mut self) -> Result<Summary> {
        let start = Instant::now();
        let elapsed_before = self.state.elapsed_s;
        let metrics_path = self.run_dir.join("metrics.jsonl");
        let mut metrics = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&metrics_path)
            .map_err(io_err(&metrics_path))?;
        let mut write_line = |record: Record| -> Result<()> {
            writeln!(metrics, "{}", record.to_line()).map_err(io_err(&metrics_path))?;
            metrics.flush().map_err(io_err(&metrics_path))
        };
        let spe = self.steps_per_epoch();
        let bar = if self.options.quiet {
            ProgressBar::with_draw_target(Some(self.stop_step), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::with_draw_target(Some(self.stop_step), ProgressDrawTarget::stderr())
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps, ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        bar.set_position(self.state.step);

        let mut summary = Summary {
            run_dir: self.run_dir.clone(),
            steps: self.state.step,
            epochs_completed: self.state.epoch,
            final_loss: self.state.last_loss,
            first_loss: None,
            knn_top1_init: None,
            knn_top1: None,
            online_top1: None,
            views_per_s: 0.0,
            views_per_s_end_to_end: 0.0,
            wall_s: 0.0,
            interrupted: false,
            checkpoint: self.last_checkpoint.clone(),
            losses: Vec::new(),
        };
        if self.state.step == 0 && self.knn.is_some() {
            bar.set_message("k-NN monitor at initialisation");
            let acc = self.knn_top1();
            summary.knn_top1_init = acc;
            summary.knn_top1 = acc;
            write_line(Record::Init {
                step: 0,
                epoch: 0,
                lr: self.schedule.lr(0),
                knn_top1: acc,
            })?;
        }
        let mut last_ckpt_time = Instant::now();
        let mut window_start = Instant::now();
        let mut window_views = 0usize;
        let mut epoch_correct = 0i64;
        let mut epoch_total = 0i64;
        let mut epoch_loss_sum = 0.0;
        let mut epoch_loss_n = 0u64;
        let mut total_views = 0usize;
        let mut train_time = 0.0f64;
        let mut last_z: Option<(Tensor, Tensor)> = None;
        let (mut timed_views, mut timed_step_s, mut timed_e2e_s) = (0usize, 0.0f64, 0.0f64);
        let mut mark = Instant::now();
        'outer: while self.state.step < self.stop_step {
            let epoch = self.state.epoch;
            let batches = self
                .loader
                .epoch_from(epoch, self.state.batch_in_epoch as usize);
            for batch in batches {
                if self.state.step >= self.stop_step {
                    break 'outer;
                }
                let t0 = Instant::now();
                let lr = self.schedule.lr(self.state.step);
                let (loss, correct, total, z1, z2) = self.train_step(&batch, lr)?;
                if !loss.is_finite() {
                    bar.abandon();
                    return Err(TrainError::NonFiniteLoss {
                        step: self.state.step + 1,
                        epoch,
                        value: loss,
                        checkpoint: self.last_checkpoint.clone(),
                    });
                }
                let step_s = t0.elapsed().as_secs_f64();
                train_time += step_s;
                if !summary.losses.is_empty() {
                    timed_views += batch.rows();
                    timed_step_s += step_s;
                    timed_e2e_s += mark.elapsed().as_secs_f64();
                }
                self.state.step += 1;
                self.state.batch_in_epoch += 1;
                self.state.last_loss = loss;
                summary.losses.push(loss);
                summary.first_loss.get_or_insert(loss);
                epoch_correct += correct;
                epoch_total += total;
                epoch_loss_sum += loss;
                epoch_loss_n += 1;
                window_views += batch.rows();
                total_views += batch.rows();
                last_z = Some((z1, z2));
                bar.set_position(self.state.step);
                mark = Instant::now();
                if self.state.step.is_multiple_of(self.config.log_every)
                    || self.state.step == self.stop_step
                {
                    let vps = window_views as f64 / window_start.elapsed().as_secs_f64().max(1e-9);
                    bar.set_message(format!("loss {loss:.4}, {vps:.0} views/s"));
                    write_line(Record::Step {
                        step: self.state.step,
                        epoch,
                        loss,
                        lr,
                        views_per_s: vps,
                    })?;
                    window_views = 0;
                    window_start = Instant::now();
                }
                if self.state.batch_in_epoch >= spe {
                    // The epoch's last step: its checkpoint comes after the epoch line, so that
                    // a resume starts the next epoch instead of closing this one twice.
                    break;
                }
                if checkpoint_due(&self.config, self.state.step, last_ckpt_time) {
                    self.state.elapsed_s = elapsed_before + start.elapsed().as_secs_f64();
                    self.save_checkpoint()?;
                    last_ckpt_time = Instant::now();
                }
                if INTERRUPTED.load(Ordering::SeqCst) {
                    summary.interrupted = true;
                    break 'outer;
                }
            }
            if self.state.batch_in_epoch >= spe {
                // End of an epoch: monitors, then the epoch line.
                let due_knn = (self.config.knn_every > 0
                    && (epoch + 1).is_multiple_of(self.config.knn_every))
                    || self.state.step >= self.stop_step;
                let record = self.epoch_record(
                    EpochRecord {
                        step: self.state.step,
                        epoch: epoch + 1,
                        loss: epoch_loss_sum / epoch_loss_n.max(1) as f64,
                        lr: self.schedule.lr(self.state.step),
                        views_per_s: total_views as f64 / train_time.max(1e-9),
                        ..Default::default()
                    },
                    due_knn,
                    (epoch_correct, epoch_total),
                    last_z.as_ref(),
                    &mut summary,
                );
                write_line(Record::Epoch(record))?;
                mark = Instant::now();
                epoch_correct = 0;
                epoch_total = 0;
                epoch_loss_sum = 0.0;
                epoch_loss_n = 0;
                self.state.epoch += 1;
                self.state.batch_in_epoch = 0;
                if checkpoint_due(&self.config, self.state.step, last_ckpt_time) {
                    self.state.elapsed_s = elapsed_before + start.elapsed().as_secs_f64();
                    self.save_checkpoint()?;
                    last_ckpt_time = Instant::now();
                }
                if INTERRUPTED.load(Ordering::SeqCst) {
                    summary.interrupted = true;
                    break 'outer;
                }
            }
        }
        // The run ended inside an epoch: one last monitor line for it.
        if !summary.interrupted
            && self.state.batch_in_epoch > 0
            && self.state.step >= self.stop_step
        {
            let record = self.epoch_record(
                EpochRecord {
                    step: self.state.step,
                    epoch: self.state.epoch + 1,
                    partial_epoch: true,
                    loss: epoch_loss_sum / epoch_loss_n.max(1) as f64,
                    lr: self.schedule.lr(self.state.step),
                    views_per_s: total_views as f64 / train_time.max(1e-9),
                    ..Default::default()
                },
                true,
                (epoch_correct, epoch_total),
                last_z.as_ref(),
                &mut summary,
            );
            write_line(Record::Epoch(record))?;
        }
        self.state.elapsed_s = elapsed_before + start.elapsed().as_secs_f64();
        if self.last_checkpoint_step != Some(self.state.step) {
            self.save_checkpoint()?;
        }
        bar.finish_and_clear();
        summary.steps = self.state.step;
        summary.epochs_completed = self.state.epoch;
        summary.final_loss = self.state.last_loss;
        summary.views_per_s = timed_views as f64 / timed_step_s.max(1e-9);
        summary.views_per_s_end_to_end = timed_views as f64 / timed_e2e_s.max(1e-9);
        summary.wall_s = start.elapsed().as_secs_f64();
        summary.checkpoint = self.last_checkpoint.clone();
        crate::report::write_outputs(&self.run_dir, &self.config, &summary)?;
        Ok(summary)
    }
}

/// Whether a checkpoint is due after `step`: every `checkpoint_every` steps, every
/// `checkpoint_minutes`, or now because SIGINT/SIGTERM asked to stop.
fn checkpoint_due(config: &TrainConfig, step: u64, last: Instant) -> bool {
    let due_steps = config.checkpoint_every > 0 && step.is_multiple_of(config.checkpoint_every);
    let due_time = config.checkpoint_minutes > 0.0
        && last.elapsed().as_secs_f64() >= 60.0 * config.checkpoint_minutes;
    due_steps || due_time || INTERRUPTED.load(Ordering::SeqCst)
}

/// The `[config]` table of a run folder's config.toml.
pub fn read_run_config(run_dir: &Path) -> Result<TrainConfig> {
    let path = run_dir.join("config.toml");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
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

/// The tensor form of a loss (CUDA path). Arc-cosine kernels have no tensor form yet.
pub fn tensor_loss_of(spec: &LossSpec) -> Result<TensorLoss> {
    fn p_of(p: kinfonce_loss::Norm) -> f64 {
        match p {
            kinfonce_loss::Norm::L1 => 1.0,
            kinfonce_loss::Norm::L2 => 2.0,
            kinfonce_loss::Norm::Inf => f64::INFINITY,
        }
    }
    fn of_kernel(k: &Kernel) -> Result<TensorLoss> {
        match k {
            Kernel::Exp(e) => Ok(TensorLoss::Exp {
                gamma: e.gamma,
                tau: e.tau,
                p: p_of(e.p),
            }),
            Kernel::Mixture { components: parts } => Ok(TensorLoss::Mixture {
                components: parts
                    .iter()
                    .map(|c| (c.weight, c.kernel.gamma, c.kernel.tau))
                    .collect(),
                p: parts.first().map(|c| p_of(c.kernel.p)).unwrap_or(2.0),
            }),
            Kernel::ArcCos { .. } => Err(TrainError::Config(
                "arc-cosine kernels run on the CPU only (no tensor form on CUDA yet)".into(),
            )),
        }
    }
    Ok(match spec {
        LossSpec::InfoNce { kernel } => of_kernel(kernel)?,
        LossSpec::Sum { parts } => TensorLoss::Weighted {
            terms: parts
                .iter()
                .map(|(w, k)| Ok((*w, of_kernel(k)?)))
                .collect::<Result<Vec<_>>>()?,
        },
        LossSpec::Concat {
            split,
            lambda,
            first,
            second,
        } => TensorLoss::Concat {
            split: *split as i64,
            lambda: *lambda,
            first: Box::new(of_kernel(first)?),
            second: Box::new(of_kernel(second)?),
        },
        LossSpec::Spectral => TensorLoss::Spectral,
    })
}
