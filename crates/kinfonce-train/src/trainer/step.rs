//! One optimisation step: forward both views (batch norm per view or over the pair), the loss
//! (the fused CPU kernel or its tensor form on GPUs), backward, the online probe, the optimiser.

use super::Trainer;
use crate::error::{Result, TrainError};
use kinfonce_data::Batch;
use kinfonce_loss::MatRef;
use tch::{Kind, Tensor};

impl Trainer {
    /// One optimisation step. Returns (loss, probe correct, probe total, z1, z2).
    pub(super) fn train_step(
        &mut self,
        batch: &Batch,
        lr: f64,
    ) -> Result<(f64, i64, i64, Tensor, Tensor)> {
        let x = self.input_tensor(
            batch.as_f32().expect("f32 batches"),
            batch.shape,
            batch.layout,
        );
        let b = batch.images() as i64;
        self.opt.zero_grad();
        self.probe_opt.zero_grad();
        let pair = x.narrow(0, 0, 2 * b);
        let z = self.config.model.bn_views.forward_pair(&pair, |views| {
            self.head.forward(&self.encoder.forward(views, true), true)
        });
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
                        cause: e,
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
        self.opt.step(lr);
        // The online probe as pl_bolts' SSLOnlineEvaluator, after the update (its
        // on_train_batch_end): its own crop + flip view (the batch's third rows), the encoder
        // in eval mode without gradient, a linear layer trained by Adam.
        let (mut correct, mut total) = (0, 0);
        if self.classes > 1 && batch.rows() == 3 * batch.images() {
            let features = tch::no_grad(|| self.encoder.forward(&x.narrow(0, 2 * b, b), false));
            let labels = Tensor::from_slice(&batch.labels).to_device(self.device);
            let logits = self.probe.forward(&features.to_kind(Kind::Float));
            logits.cross_entropy_for_logits(&labels).backward();
            correct = i64::try_from(logits.argmax(1, false).eq_tensor(&labels).sum(Kind::Int64))
                .unwrap_or(0);
            total = b;
            self.probe_opt.step(self.config.optim.probe_lr);
        }
        Ok((loss, correct, total, z1.detach(), z2.detach()))
    }
}
