//! The trainer, laid out as burn-train lays out its learner: `build` makes the parts of a run
//! from its configuration, `step` is one optimisation step, `epoch_loop` runs the epochs and
//! writes the metrics records, `checkpointing` keeps the run folder (checkpoints, resume).
//! SimCLR pairing with any Kernel-InfoNCE loss, online linear probe, k-NN monitor, collapse
//! diagnostics and exact resume.

mod build;
mod checkpointing;
mod epoch_loop;
mod moco;
mod step;

pub use crate::config::read_run_config;
pub use crate::device::{configure_threads, parse_device};
pub use crate::signal::{
    install_signal_handler, interrupted_exit_code, request_stop, stop_requested,
};
pub use build::{load_data, RunOptions};

use crate::checkpoint::TrainingState;
use crate::config::{LossEngine, TrainConfig};
use crate::distributed::Distributed;
use crate::error::{Result, TrainError};
use crate::input::InputSpec;
use crate::layers::Linear;
use crate::loss_tensor::{tensor_loss_of, TensorLoss};
use crate::monitor;
use crate::optim::Optimizer;
use crate::projection::Projection;
use crate::resnet::ResNet;
use crate::schedule::WarmupCosine;
use build::{
    announce_compute, check_memory, contrastive_loader, monitor_sets, networks, optimizers,
    MonitorSets, Networks,
};
use kinfonce_data::{ContrastiveLoader, EvalLoader, Layout};
use kinfonce_loss::LossSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{nn, Device, Kind, Tensor};

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
    monitors: Option<MonitorSets>,
    spec: LossSpec,
    /// MoCo's momentum networks and queue (`method = "moco"`).
    moco: Option<moco::Moco>,
    tensor_loss: Option<TensorLoss>,
    state: TrainingState,
    classes: i64,
    /// The other ranks of a data-parallel job (from `options`).
    dist: Option<Distributed>,
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
        let dist = options.dist.clone();
        let main = dist.as_ref().is_none_or(Distributed::is_main);
        if main && !resume && run_dir.join("config.toml").exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run; continue it with --resume {0} or choose another --out",
                run_dir.display()
            )));
        }
        let device = match (parse_device(&config.compute.device)?, &dist) {
            (Device::Cuda(_), Some(d)) => d.gpu()?,
            (device, _) => device,
        };
        if config.compute.deterministic && device != Device::Cpu {
            tch::Cuda::cudnn_set_benchmark(false);
        }
        announce_compute(&mut config, device, resume, &mut options)?;
        let shard = match &dist {
            Some(d) => d.join_run(&config)?,
            None => (0, 1),
        };
        let bf16 = config.bf16();
        let splits = load_data(&config)?;
        let train = Arc::new(splits.train);
        let size = train.height().max(train.width());
        let layout = if config.channels_last() {
            Layout::Nhwc
        } else {
            Layout::Nchw
        };
        let loader = contrastive_loader(&config, &train, splits.format, layout, shard)?;
        let steps_per_epoch = loader.batches_per_epoch() as u64;
        let (horizon, stop_step) = config.schedule_steps(steps_per_epoch);
        let schedule = WarmupCosine::of(
            config.optim.schedule,
            config.base_lr(),
            horizon,
            steps_per_epoch,
        );
        let classes = if train.is_labelled() {
            train.num_classes() as i64
        } else {
            0
        };
        check_memory(&config, device, size, splits.format)?;
        // The monitors run on rank 0 alone.
        let monitors = if main {
            monitor_sets(&config, &train, &splits.val, splits.format, layout, classes)?
        } else {
            None
        };
        let Networks {
            model_vs,
            encoder,
            head,
            probe_vs,
            probe,
            moco,
        } = networks(
            &config,
            device,
            config.stem_for(size, Some(splits.format)),
            train.channels(),
            classes,
        )?;
        let (opt, probe_opt) = optimizers(&config, &model_vs, &probe_vs)?;
        let spec = config.loss_spec()?;
        let tensor_engine = match config.compute.loss_engine {
            LossEngine::Auto => device != Device::Cpu,
            LossEngine::Fused => false,
            LossEngine::Tensor => true,
        };
        config.check_processes(dist.as_ref().map_or(1, Distributed::world))?;
        let tensor_loss = tensor_engine.then(|| tensor_loss_of(&spec)).transpose()?;

        let mut trainer = Trainer {
            state: TrainingState {
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                optimizer_step: 0,
                probe_optimizer_step: 0,
                seed: config.compute.seed,
                last_loss: f64::NAN,
                elapsed_s: 0.0,
                queue_ptr: 0,
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
            monitors,
            spec,
            moco,
            tensor_loss,
            classes,
            dist,
            options,
            last_checkpoint: None,
            last_checkpoint_step: None,
        };
        match (main, resume) {
            (true, true) => trainer.restore()?,
            (true, false) => trainer.create_run_dir(&train)?,
            (false, _) => {}
        }
        trainer.start_from_main()?;
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

    fn input_tensor(&self, data: &[f32], shape: [usize; 4], layout: Layout) -> Tensor {
        InputSpec {
            device: self.device,
            channels_last: self.config.channels_last(),
            bf16: self.bf16,
        }
        .tensor(data, shape, layout)
    }

    /// Encoder features of a whole eval set (eval mode, no gradient), f32 `[N, F]`.
    fn features(&self, loader: &EvalLoader) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let mut parts = Vec::new();
        for batch in loader.batches() {
            let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
            let x = self.input_tensor(
                batch.as_f32().expect("f32 eval batches"),
                batch.shape,
                batch.layout,
            );
            parts.push(self.encoder.forward(&x, false).to_kind(Kind::Float));
        }
        Ok(Tensor::cat(&parts, 0))
    }

    /// Weighted k-NN top-1 of val queries against the train bank.
    pub fn knn_top1(&self) -> Result<Option<f64>> {
        let Some(sets) = self.monitors.as_ref() else {
            return Ok(None);
        };
        let bank = self.features(&sets.bank)?;
        let queries = self.features(&sets.queries)?;
        Ok(Some(monitor::knn_top1(
            &bank,
            &sets.bank_labels,
            &queries,
            &sets.query_labels,
            self.config.monitor.knn_k,
            self.config.monitor.knn_t,
            sets.classes,
        )))
    }

    /// The online probe's top-1 on the val queries in the official evaluation view (pl_bolts'
    /// `online_val_acc`).
    pub fn online_val_top1(&self) -> Result<Option<f64>> {
        let Some(sets) = self.monitors.as_ref() else {
            return Ok(None);
        };
        let features = self.features(&sets.probe_queries)?;
        let _guard = tch::no_grad_guard();
        let predicted = self
            .probe
            .forward(&features)
            .argmax(1, false)
            .to_device(Device::Cpu);
        let correct = predicted.eq_tensor(&sets.query_labels).sum(Kind::Int64);
        Ok(Some(
            i64::try_from(correct).unwrap_or(0) as f64 / sets.query_labels.size()[0] as f64,
        ))
    }
}
