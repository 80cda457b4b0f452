//! Data parallelism over a `kinfonce-dist` process group (PyTorch's c10d on Gloo): what the
//! trainer asks of the other ranks.
//!
//! The rules (README, "Several processes"): every rank computes its slice of the global batch;
//! the loss of a rank is the mean over its own anchors, each competing with the candidates of
//! every rank; gradients are averaged over the ranks, which makes them the gradient of the
//! global batch's loss; rank 0 alone writes the run folder and the others start from its state.

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
pub use kinfonce_dist::{Backend, DistError, Launch, ProcessGroup};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tch::{Kind, Tensor};

/// Nanoseconds this process has spent inside collectives (waiting for the others included).
static COMMUNICATING_NS: AtomicU64 = AtomicU64::new(0);

/// Runs the collective `f`, counting its time as communication.
pub fn timed<R>(f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let out = f();
    COMMUNICATING_NS.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Seconds spent inside collectives so far.
pub fn communicating_s() -> f64 {
    COMMUNICATING_NS.load(Ordering::Relaxed) as f64 * 1e-9
}

/// This process's place in a data-parallel job.
#[derive(Clone)]
pub struct Distributed {
    pub group: Rc<ProcessGroup>,
}

impl std::fmt::Debug for Distributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rank {} of {}", self.rank(), self.world())
    }
}

/// A process-group error as a training error (its message already names the rank).
pub fn dist_err(e: DistError) -> TrainError {
    TrainError::Distributed(e.to_string())
}

impl Distributed {
    pub fn new(group: ProcessGroup) -> Distributed {
        Distributed {
            group: Rc::new(group),
        }
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world_size()
    }

    /// This rank's GPU: `cuda:LOCAL_RANK`, or `cuda:0` when the launcher shows each process
    /// only its own ([`kinfonce_dist::cuda_index`]).
    pub fn gpu(&self) -> Result<tch::Device> {
        let visible = tch::Cuda::device_count().max(0) as usize;
        kinfonce_dist::cuda_index(self.rank(), self.group.local_rank(), visible)
            .map(tch::Device::Cuda)
            .map_err(dist_err)
    }

    /// Rank 0: the rank that writes the run folder, the metrics and the report.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Replaces every gradient by the mean of that gradient over the ranks (one coalesced
    /// all-reduce). Every rank runs the same graph, so the same parameters have a gradient on
    /// every rank; those without one are left out everywhere.
    pub fn average_gradients(&self, params: &[Tensor]) -> Result<()> {
        let grads: Vec<Tensor> = params
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        self.average(&grads)
    }

    /// Replaces every tensor by its mean over the ranks, in place (one coalesced all-reduce).
    pub fn average(&self, tensors: &[Tensor]) -> Result<()> {
        let mut tensors: Vec<Tensor> = tensors.iter().map(Tensor::shallow_clone).collect();
        timed(|| self.group.all_reduce_sum(&mut tensors)).map_err(dist_err)?;
        let scale = 1.0 / self.world() as f64;
        tch::no_grad(|| {
            for t in &mut tensors {
                let _ = t.g_mul_scalar_(scale);
            }
        });
        Ok(())
    }

    /// Sums `values` over the ranks.
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        let mut t = [Tensor::from_slice(values)];
        timed(|| self.group.all_reduce_sum(&mut t)).map_err(dist_err)?;
        Vec::<f64>::try_from(t[0].to_kind(Kind::Double))
            .map_err(|e| TrainError::Distributed(format!("reading a sum over ranks: {e}")))
    }

    /// Gives every rank rank 0's values of `tensors` (parameters, buffers, optimiser state), in
    /// place, whatever their memory layout (channels-last weights travel as contiguous copies).
    pub fn broadcast_from_main(&self, tensors: &[Tensor]) -> Result<()> {
        let mut buffers: Vec<Tensor> = tensors.iter().map(|t| t.detach().contiguous()).collect();
        self.group.broadcast(&mut buffers, 0).map_err(dist_err)?;
        tch::no_grad(|| {
            for (t, b) in tensors.iter().zip(&buffers) {
                let mut target = t.detach();
                target.copy_(b);
            }
        });
        Ok(())
    }

    /// Checks `config` against rank 0's and that its global batch splits over the ranks;
    /// this rank's slice of every batch, `(rank, world)`.
    pub fn join_run(&self, config: &TrainConfig) -> Result<(usize, usize)> {
        self.agree_on_config(Some(config))?;
        let (batch, world) = (config.optim.batch, self.world());
        if !batch.is_multiple_of(world) {
            return Err(TrainError::Config(format!(
                "the run's global batch of {batch} pairs does not split over {world} processes; \
                 use a number of processes that divides {batch}"
            )));
        }
        Ok((self.rank(), world))
    }

    /// Rank 0's configuration, checked against this rank's: an error naming this rank and the
    /// settings that differ when their trajectories disagree. `own` is `None` on ranks that
    /// take the configuration from rank 0 (a resumed run).
    pub fn agree_on_config(&self, own: Option<&TrainConfig>) -> Result<TrainConfig> {
        let text = match (self.is_main(), own) {
            (true, Some(config)) => toml::to_string(config)
                .map_err(|e| TrainError::Config(format!("writing the configuration: {e}")))?,
            _ => String::new(),
        };
        let bytes = self
            .group
            .broadcast_bytes(text.as_bytes(), 0)
            .map_err(dist_err)?;
        let main: TrainConfig = toml::from_str(&String::from_utf8_lossy(&bytes))
            .map_err(|e| TrainError::Distributed(format!("rank 0's configuration: {e}")))?;
        if let Some(own) = own {
            let changes = main.trajectory_changes(own)?;
            if !changes.is_empty() {
                let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                return Err(TrainError::Distributed(format!(
                    "rank {} was started with other settings than rank 0 (rank 0 -> rank {0}): {}; \
                     start every rank with the same command",
                    self.rank(),
                    list.join(", ")
                )));
            }
        }
        Ok(main)
    }
}
