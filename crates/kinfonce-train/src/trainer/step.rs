//! One optimisation step: forward both views (batch norm per view or over the pair, across the
//! ranks when synchronised), the loss (the fused CPU kernel or its tensor form on GPUs; with
//! several processes on the candidates gathered from every rank), backward, gradients averaged
//! over the ranks, the optimiser, then the online probe.

use super::Trainer;
use crate::batch_norm;
use crate::distributed::{dist_err, timed, DistError};
use crate::error::{Result, TrainError};
use crate::signal::stop_requested;
use kinfonce_data::Batch;
use kinfonce_loss::{MatRef, Pairing};
use tch::{Kind, Tensor};

/// What a step gives the epoch loop.
pub(super) struct StepOutcome {
    /// The loss of the global batch (every rank reports the same value).
    pub loss: f64,
    /// The online probe's correct predictions and rows on this rank.
    pub correct: i64,
    pub total: i64,
    /// This rank's projections of the two views (detached).
    pub z1: Tensor,
    pub z2: Tensor,
    /// Some rank was asked to stop (SIGINT / SIGTERM): every rank stops after this step.
    pub stop: bool,
}

/// The loss computed, its backward pass still to run.
pub(super) enum PendingBackward {
    /// Autograd from the loss tensor.
    Loss(Tensor),
    /// The fused kernel's d loss / d z, pushed through the surrogate sum(z * grad).
    Surrogate { z: Tensor, grad: Tensor },
    /// The fused kernel's gradients of the gathered views `[B_total, d]` each: summed over the
    /// ranks, this rank's rows taken, then as `Surrogate`.
    Gathered { z: Tensor, grads: [Tensor; 2] },
    /// No gradient (a non-finite loss).
    Nothing,
}

impl Trainer {
    /// One optimisation step.
    pub(super) fn train_step(&mut self, batch: &Batch, lr: f64) -> Result<StepOutcome> {
        if self.moco.is_some() {
            return self.moco_step(batch, lr);
        }
        let x = self.input_tensor(
            batch.as_f32().expect("f32 batches"),
            batch.shape,
            batch.layout,
        );
        let b = batch.images() as i64;
        self.opt.zero_grad();
        self.probe_opt.zero_grad();
        let z = self.forward_pair(&x.narrow(0, 0, 2 * b))?;
        let (z1, z2) = (z.narrow(0, 0, b), z.narrow(0, b, b));
        let (local_loss, pending) = self.loss(&z, b)?;
        let (loss, stop) = self.agree(local_loss)?;
        let outcome = |correct, total| StepOutcome {
            loss,
            correct,
            total,
            z1: z1.detach(),
            z2: z2.detach(),
            stop,
        };
        if !loss.is_finite() {
            return Ok(outcome(0, 0));
        }
        self.backward(pending, b)?;
        if let Some(d) = &self.dist {
            d.average_gradients(&self.model_vs.trainable_variables())?;
        }
        self.opt.step(lr);
        let (correct, total) = self.online_probe_step(batch, &x)?;
        Ok(outcome(correct, total))
    }

    /// The global batch's loss from this rank's and whether some rank was asked to stop: every
    /// rank takes the same decisions.
    pub(super) fn agree(&self, local_loss: f64) -> Result<(f64, bool)> {
        Ok(match &self.dist {
            Some(d) => {
                let sums = d.sum(&[local_loss, f64::from(u8::from(stop_requested()))])?;
                (sums[0] / d.world() as f64, sums[1] > 0.0)
            }
            None => (local_loss, stop_requested()),
        })
    }

    /// Projections of the pair `[2B, ...]` in training mode, batch norm grouped as configured.
    fn forward_pair(&self, pair: &Tensor) -> Result<Tensor> {
        let forward = || {
            self.config.model.bn_views.forward_pair(pair, |views| {
                self.head.forward(&self.encoder.forward(views, true), true)
            })
        };
        match &self.dist {
            Some(d) if self.config.model.sync_bn && d.world() > 1 => {
                batch_norm::synchronised(&d.group, forward).map_err(dist_err)
            }
            _ => Ok(forward()),
        }
    }

    /// Candidates gathered from every rank (several processes, unless `local_negatives`).
    fn gathers(&self) -> bool {
        self.dist.as_ref().is_some_and(|d| d.world() > 1) && !self.config.loss.local_negatives
    }

    /// This rank's loss (the mean over its anchors; with gathered candidates on the tensor path,
    /// the global batch's loss) and its backward pass to run. Non-finite projections give a NaN
    /// loss.
    fn loss(&self, z: &Tensor, b: i64) -> Result<(f64, PendingBackward)> {
        let (z1, z2) = (z.narrow(0, 0, b), z.narrow(0, b, b));
        if let Some(tl) = &self.tensor_loss {
            let loss = match (&self.dist, self.gathers()) {
                (Some(d), true) => {
                    let all1 = timed(|| d.group.all_gather_autograd(&z1)).map_err(dist_err)?;
                    let all2 = timed(|| d.group.all_gather_autograd(&z2)).map_err(dist_err)?;
                    tl.forward(&all1, &all2)
                }
                _ => tl.forward(&z1, &z2),
            };
            let value = f64::try_from(&loss).unwrap_or(f64::NAN);
            return Ok((value, PendingBackward::Loss(loss)));
        }
        let d = z.size()[1] as usize;
        let host = host_f32;
        let (v1, v2, pairing) = match &self.dist {
            Some(dist) if self.gathers() => {
                let gather = |t: &Tensor| {
                    let t = t.detach().to_kind(Kind::Float).contiguous();
                    timed(|| dist.group.all_gather(&t)).map_err(dist_err)
                };
                let pairing = Pairing::Gathered {
                    offset: dist.rank() * b as usize,
                    local: b as usize,
                };
                (host(&gather(&z1)?)?, host(&gather(&z2)?)?, pairing)
            }
            _ => (host(&z1)?, host(&z2)?, Pairing::SimClr),
        };
        let rows = v1.len() / d;
        let out = MatRef::new(&v1, rows, d).and_then(|m1| {
            MatRef::new(&v2, rows, d)
                .and_then(|m2| kinfonce_loss::evaluate(&self.spec, pairing, &[m1, m2]))
        });
        match out {
            Ok(out) if out.loss.is_finite() => {
                let grad = |k: usize| {
                    Tensor::from_slice(&out.grads[k].data)
                        .view([rows as i64, d as i64])
                        .to_device(self.device)
                };
                let pending = if pairing == Pairing::SimClr {
                    PendingBackward::Surrogate {
                        z: z.shallow_clone(),
                        grad: Tensor::cat(&[grad(0), grad(1)], 0),
                    }
                } else {
                    PendingBackward::Gathered {
                        z: z.shallow_clone(),
                        grads: [grad(0), grad(1)],
                    }
                };
                Ok((out.loss, pending))
            }
            Ok(out) => Ok((out.loss, PendingBackward::Nothing)),
            Err(e) => {
                // Non-finite projections are reported as a NaN loss of this step.
                if v1.iter().chain(&v2).all(|v| v.is_finite()) {
                    return Err(TrainError::Config(format!("loss: {e}")));
                }
                Ok((f64::NAN, PendingBackward::Nothing))
            }
        }
    }

    /// Runs the backward pass of the loss; collectives inside it (gathered views, synchronised
    /// batch norm) name a rank that is gone.
    pub(super) fn backward(&self, pending: PendingBackward, b: i64) -> Result<()> {
        let surrogate = match pending {
            PendingBackward::Nothing => return Ok(()),
            PendingBackward::Loss(loss) => loss,
            PendingBackward::Surrogate { z, grad } => (&z * grad).sum(Kind::Float),
            PendingBackward::Gathered { z, mut grads } => {
                let dist = self
                    .dist
                    .as_ref()
                    .expect("gathered losses have a process group");
                timed(|| dist.group.all_reduce_sum(&mut grads)).map_err(dist_err)?;
                let offset = dist.rank() as i64 * b;
                let mine = Tensor::cat(
                    &[grads[0].narrow(0, offset, b), grads[1].narrow(0, offset, b)],
                    0,
                );
                (&z * mine).sum(Kind::Float)
            }
        };
        match surrogate.f_backward() {
            Ok(()) => Ok(()),
            Err(e) => Err(match &self.dist {
                Some(d) => match d.group.check_peers() {
                    Err(DistError::PeerLost { rank, who, .. }) => TrainError::Distributed(format!(
                        "rank {rank}: the backward pass failed: {who}"
                    )),
                    Err(other) => dist_err(other),
                    Ok(()) => TrainError::Distributed(format!(
                        "rank {}: the backward pass failed: {e}",
                        d.rank()
                    )),
                },
                None => TrainError::Torch {
                    context: "backward pass".into(),
                    cause: e,
                },
            }),
        }
    }

    /// The online probe as pl_bolts' SSLOnlineEvaluator, after the update (its
    /// on_train_batch_end): its own crop + flip view (the batch's third rows), the encoder in
    /// eval mode without gradient, a linear layer trained by Adam on the mean over every rank.
    /// Returns (correct, rows) on this rank.
    pub(super) fn online_probe_step(&mut self, batch: &Batch, x: &Tensor) -> Result<(i64, i64)> {
        if self.classes <= 1 || batch.rows() != 3 * batch.images() {
            return Ok((0, 0));
        }
        let b = batch.images() as i64;
        let features = tch::no_grad(|| self.encoder.forward(&x.narrow(0, 2 * b, b), false));
        let labels = Tensor::from_slice(&batch.labels).to_device(self.device);
        let logits = self.probe.forward(&features.to_kind(Kind::Float));
        logits.cross_entropy_for_logits(&labels).backward();
        if let Some(d) = &self.dist {
            d.average_gradients(&self.probe_vs.trainable_variables())?;
        }
        let correct =
            i64::try_from(logits.argmax(1, false).eq_tensor(&labels).sum(Kind::Int64)).unwrap_or(0);
        self.probe_opt.step(self.config.optim.probe_lr);
        Ok((correct, b))
    }
}

/// `t`'s values as f32 on the host, row-major (the fused CPU kernel's input).
pub(super) fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    let t = t
        .detach()
        .to_kind(Kind::Float)
        .to_device(tch::Device::Cpu)
        .contiguous();
    Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| TrainError::Torch {
        context: "copying projections to the host".into(),
        cause: e,
    })
}
