//! MoCo as the official Kernel-InfoNCE code runs it (`moco/moco.py`, on lightly): queries from
//! the trained encoder and head on the first view; keys from a momentum copy of them on the
//! second view, the batch shuffled before that forward and unshuffled after (shuffle BN); both
//! encoders with split batch norm ([`batch_norm::split`]); the loss of each query against its
//! key with the queue of past keys as negatives (the positive is not in the denominator:
//! kinfonce-loss's MoCo pairing, every kernel and loss option); the keys enter the queue after
//! the loss. The momentum networks move to m * momentum + (1 - m) * trained before each step.

use super::step::{host_f32, PendingBackward, StepOutcome};
use super::Trainer;
use crate::batch_norm;
use crate::distributed::{dist_err, timed, Distributed};
use crate::error::{Result, TrainError};
use crate::projection::{normalize_p, Projection};
use crate::resnet::ResNet;
use kinfonce_data::rng::CounterRng;
use kinfonce_data::Batch;
use kinfonce_loss::{MatRef, Pairing};
use tch::{nn, Kind, Tensor};

/// The momentum networks and the queue of keys.
pub(super) struct Moco {
    /// The momentum encoder and head, named as the trained ones (the checkpoint prefixes
    /// `momentum.`); no gradient.
    pub vs: nn::VarStore,
    pub encoder: ResNet,
    pub head: Projection,
    /// `[queue_size, d]` f32 keys; row `ptr` (the training state's `queue_ptr`) is the oldest.
    pub queue: Tensor,
    pub momentum: f64,
    pub splits: usize,
}

impl Moco {
    /// `vs`, `encoder`, `head`: the momentum networks freshly built; they become a copy of the
    /// trained `model_vs`. The queue starts as random keys (normalised like the head's output,
    /// from the run's seeded generator), as lightly's memory bank does.
    pub fn new(
        mut vs: nn::VarStore,
        encoder: ResNet,
        head: Projection,
        model_vs: &nn::VarStore,
        queue_size: usize,
        momentum: f64,
        splits: usize,
    ) -> Result<Moco> {
        vs.copy(model_vs).map_err(|e| TrainError::Torch {
            context: "copying the encoder into the momentum encoder".into(),
            cause: e,
        })?;
        vs.freeze();
        let d = head.config.out;
        let queue = normalize_p(
            &Tensor::randn([queue_size as i64, d], (Kind::Float, vs.device())),
            head.config.norm_p,
        ) * head.config.mu.sqrt();
        Ok(Moco {
            vs,
            encoder,
            head,
            queue,
            momentum,
            splits,
        })
    }

    /// momentum <- m * momentum + (1 - m) * trained ([`momentum_update`]).
    pub fn update(&self, model_vs: &nn::VarStore) {
        momentum_update(&self.vs, model_vs, self.momentum);
    }

    /// The keys of `x` (`[N, ...]`, the second views of the global batch) in training mode
    /// without gradient, in the order of `x`: the batch permuted by a permutation drawn from
    /// (seed, step), this process's rows of it ([`Placement`]) through the momentum networks
    /// with split batch norm, every process's keys gathered by `gather` and put back in order.
    pub fn keys(
        &self,
        x: &Tensor,
        seed: u64,
        step: u64,
        place: &Placement,
        gather: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let n = x.size()[0];
        let mut perm: Vec<i64> = (0..n).collect();
        // A stream of its own ("MoCo" in ASCII), apart from the augmentations' words.
        CounterRng::new(&[seed, 0x4D6F_436F, step]).shuffle(&mut perm);
        let of_rank = |rank| -> Vec<i64> {
            let rows = Placement { rank, ..*place }.rows(n);
            rows.iter().map(|&r| perm[r as usize]).collect()
        };
        let mine = tch::no_grad(|| {
            let shuffled = select_rows(x, &of_rank(place.rank));
            place.normalise(|| {
                self.head
                    .forward(&self.encoder.forward(&shuffled, true), true)
            })
        })?;
        let all = gather(&mine)?;
        // Row j of `all` is the key of sample order[j].
        let order: Vec<i64> = (0..place.world).flat_map(of_rank).collect();
        let mut at = vec![0i64; n as usize];
        for (j, &sample) in order.iter().enumerate() {
            at[sample as usize] = j as i64;
        }
        Ok(all.index_select(0, &Tensor::from_slice(&at).to_device(x.device())))
    }

    /// The keys into the queue ([`enqueue`]); returns the new `ptr`.
    pub fn enqueue(&mut self, keys: &Tensor, ptr: u64) -> u64 {
        enqueue(&mut self.queue, keys, ptr)
    }

    /// The momentum networks (`momentum.<name>`) and the queue (`moco.queue`) for a checkpoint.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("momentum.{n}"), t))
            .collect();
        v.push(("moco.queue".into(), self.queue.shallow_clone()));
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// The batch-norm running statistics of `stores`, in a fixed order.
fn running_statistics(stores: &[&nn::VarStore]) -> Vec<Tensor> {
    stores
        .iter()
        .flat_map(|vs| {
            let mut named: Vec<(String, Tensor)> = vs
                .variables()
                .into_iter()
                .filter(|(name, _)| name.contains("running_"))
                .collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            named.into_iter().map(|(_, t)| t)
        })
        .collect()
}

/// target <- m * target + (1 - m) * source for every parameter `source` trains (same names);
/// the batch-norm running statistics of `target` follow its own forwards, as lightly's
/// `update_momentum` leaves buffers alone.
fn momentum_update(target: &nn::VarStore, source: &nn::VarStore, m: f64) {
    let trained = source.variables();
    tch::no_grad(|| {
        for (name, mut t) in target.variables() {
            match trained.get(&name) {
                Some(p) if p.requires_grad() => {
                    let _ = t.g_mul_scalar_(m).g_add_(&(p * (1.0 - m)));
                }
                _ => {}
            }
        }
    });
}

/// This process's share of a MoCo step. The encoders' split batch norm puts sample i of the
/// global batch in split i mod s; each process forwards whole splits (s / P of them), so the
/// statistics, and the trajectory, do not depend on the number of processes P. The projection
/// head's batch norm (1-D, not split) takes its statistics over every process, as one process
/// would over the whole batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct Placement<'a> {
    pub rank: usize,
    pub world: usize,
    /// The splits of the global batch.
    pub splits: usize,
    pub dist: Option<&'a Distributed>,
}

impl Placement<'_> {
    /// The rows of a global batch of `n` samples this process forwards: the splits
    /// rank * s / P .. (rank + 1) * s / P, ordered so that its own s / P interleaved splits are
    /// exactly those. One process: 0..n.
    fn rows(&self, n: i64) -> Vec<i64> {
        let (s, per) = (self.splits as i64, (self.splits / self.world) as i64);
        let first = self.rank as i64 * per;
        (0..n / s)
            .flat_map(|m| (0..per).map(move |t| m * s + first + t))
            .collect()
    }

    /// Runs the training forward `f` with this process's split batch norm, and the head's
    /// statistics over every process.
    fn normalise<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let local = || batch_norm::split(self.splits / self.world, f);
        match self.dist {
            Some(d) if self.world > 1 => {
                batch_norm::synchronised(&d.group, local).map_err(dist_err)
            }
            _ => Ok(local()),
        }
    }

    /// Every process's `t` (`[b, ...]`) concatenated in rank order, in `t`'s kind and layout.
    fn gather(&self, t: &Tensor) -> Result<Tensor> {
        let Some(d) = self.dist.filter(|_| self.world > 1) else {
            return Ok(t.shallow_clone());
        };
        let sent = t.to_kind(Kind::Float).contiguous();
        let all = timed(|| d.group.all_gather(&sent))
            .map_err(dist_err)?
            .to_kind(t.kind());
        Ok(if t.is_contiguous() {
            all
        } else {
            crate::layers::to_channels_last(&all)
        })
    }
}

/// Rows `rows` of `x`, in `x`'s memory layout (channels-last stays channels-last).
fn select_rows(x: &Tensor, rows: &[i64]) -> Tensor {
    let picked = x.index_select(0, &Tensor::from_slice(rows).to_device(x.device()));
    if x.is_contiguous() {
        picked
    } else {
        crate::layers::to_channels_last(&picked)
    }
}

/// Writes `keys` (`[B, d]`) into `queue` (`[K, d]`) from row `ptr` on, wrapping around (with
/// more keys than rows, the last K win); returns the new `ptr`, the row of the oldest key.
fn enqueue(queue: &mut Tensor, keys: &Tensor, ptr: u64) -> u64 {
    let size = queue.size()[0];
    let b = keys.size()[0];
    let kept = b.min(size);
    let keys = keys.narrow(0, b - kept, kept).to_kind(Kind::Float);
    let start = (ptr as i64 + b - kept) % size;
    let rows: Vec<i64> = (0..kept).map(|i| (start + i) % size).collect();
    let rows = Tensor::from_slice(&rows).to_device(queue.device());
    tch::no_grad(|| {
        let _ = queue.index_copy_(0, &rows, &keys);
    });
    ((ptr as i64 + b) % size) as u64
}

impl Trainer {
    /// One MoCo step: the momentum update, queries and keys (each process forwarding its
    /// [`Placement`] of the global batch), the loss against the queue, the update (gradients
    /// averaged over the processes), every process's keys into the queue, then the online probe.
    pub(super) fn moco_step(&mut self, batch: &Batch, lr: f64) -> Result<StepOutcome> {
        let x = self.input_tensor(
            batch.as_f32().expect("f32 batches"),
            batch.shape,
            batch.layout,
        );
        let b = batch.images() as i64;
        let moco = self
            .moco
            .as_ref()
            .expect("a MoCo run has its momentum networks");
        let place = Placement {
            rank: self.dist.as_ref().map_or(0, Distributed::rank),
            world: self.dist.as_ref().map_or(1, Distributed::world),
            splits: moco.splits,
            dist: self.dist.as_ref(),
        };
        moco.update(&self.model_vs);
        self.opt.zero_grad();
        self.probe_opt.zero_grad();
        let (x1, x2) = (
            place.gather(&x.narrow(0, 0, b))?,
            place.gather(&x.narrow(0, b, b))?,
        );
        let rows = place.rows(x1.size()[0]);
        let x1 = if place.world > 1 {
            select_rows(&x1, &rows)
        } else {
            x1
        };
        let q = place.normalise(|| self.head.forward(&self.encoder.forward(&x1, true), true))?;
        let all_keys = moco.keys(&x2, self.state.seed, self.state.step, &place, |k| {
            place.gather(k)
        })?;
        let k = if place.world > 1 {
            select_rows(&all_keys, &rows)
        } else {
            all_keys.shallow_clone()
        };
        let (local_loss, pending) = self.moco_loss(&q, &k)?;
        let (loss, stop) = self.agree(local_loss)?;
        let outcome = |correct, total| StepOutcome {
            loss,
            correct,
            total,
            z1: q.detach(),
            z2: k.shallow_clone(),
            stop,
        };
        if !loss.is_finite() {
            return Ok(outcome(0, 0));
        }
        self.backward(pending, q.size()[0])?;
        if let Some(d) = &self.dist {
            d.average_gradients(&self.model_vs.trainable_variables())?;
            // Each process moved its running statistics towards the mean of its own splits;
            // their mean over the processes is what one process would hold.
            d.average(&running_statistics(&[&self.model_vs, &moco.vs]))?;
        }
        self.opt.step(lr);
        let moco = self
            .moco
            .as_mut()
            .expect("a MoCo run has its momentum networks");
        self.state.queue_ptr = moco.enqueue(&all_keys, self.state.queue_ptr);
        let (correct, total) = self.online_probe_step(batch, &x)?;
        Ok(outcome(correct, total))
    }

    /// The MoCo loss of queries `q` against keys `k` and the queue (the fused kernel, or its
    /// tensor form on GPUs), and the backward pass through `q` (the keys and the queue carry no
    /// gradient).
    fn moco_loss(&self, q: &Tensor, k: &Tensor) -> Result<(f64, PendingBackward)> {
        let moco = self
            .moco
            .as_ref()
            .expect("a MoCo run has its momentum networks");
        if let Some(tl) = &self.tensor_loss {
            let loss = tl.forward_moco(q, k, &moco.queue)?;
            let value = f64::try_from(&loss).unwrap_or(f64::NAN);
            return Ok((value, PendingBackward::Loss(loss)));
        }
        let (vq, vk, vqueue) = (host_f32(q)?, host_f32(k)?, host_f32(&moco.queue)?);
        let (rows, d) = (q.size()[0] as usize, q.size()[1] as usize);
        let out = MatRef::new(&vq, rows, d).and_then(|mq| {
            let mk = MatRef::new(&vk, rows, d)?;
            let mqueue = MatRef::new(&vqueue, vqueue.len() / d, d)?;
            kinfonce_loss::evaluate(&self.spec, Pairing::Moco, &[mq, mk, mqueue])
        });
        match out {
            Ok(out) if out.loss.is_finite() => {
                let grad = Tensor::from_slice(&out.grads[0].data)
                    .view([rows as i64, d as i64])
                    .to_device(self.device);
                Ok((
                    out.loss,
                    PendingBackward::Surrogate {
                        z: q.shallow_clone(),
                        grad,
                    },
                ))
            }
            Ok(out) => Ok((out.loss, PendingBackward::Nothing)),
            Err(e) => {
                if vq.iter().chain(&vk).all(|v| v.is_finite()) {
                    return Err(TrainError::Config(format!("loss: {e}")));
                }
                Ok((f64::NAN, PendingBackward::Nothing))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Key j of a stream: the row [j, -j].
    fn keys(from: i64, n: i64) -> Tensor {
        let v: Vec<f32> = (from..from + n)
            .flat_map(|j| [j as f32, -j as f32])
            .collect();
        Tensor::from_slice(&v).view([n, 2])
    }

    /// The queue read from its oldest row on: the keys in the order they came.
    fn in_order(queue: &Tensor, ptr: u64) -> Vec<f32> {
        let k = queue.size()[0];
        let rows: Vec<i64> = (0..k).map(|i| (ptr as i64 + i) % k).collect();
        let first = queue
            .index_select(0, &Tensor::from_slice(&rows))
            .select(1, 0);
        Vec::<f32>::try_from(first).unwrap()
    }

    #[test]
    fn the_queue_holds_the_last_keys_in_order_across_the_wrap() {
        let mut queue = Tensor::zeros([5, 2], (Kind::Float, Device::Cpu));
        let mut ptr = 0;
        for step in 0..4 {
            ptr = enqueue(&mut queue, &keys(2 * step, 2), ptr);
        }
        // 8 keys through 5 rows: keys 3..=7, oldest at row 8 mod 5.
        assert_eq!(ptr, 3);
        assert_eq!(in_order(&queue, ptr), vec![3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(
            Vec::<f32>::try_from(queue.select(1, 1)).unwrap(),
            vec![-5.0, -6.0, -7.0, -3.0, -4.0]
        );
        // A batch larger than the queue: its last 5 keys, in order.
        ptr = enqueue(&mut queue, &keys(100, 7), ptr);
        assert_eq!(ptr, 0);
        assert_eq!(
            in_order(&queue, ptr),
            vec![102.0, 103.0, 104.0, 105.0, 106.0]
        );
    }

    #[test]
    fn the_momentum_update_is_the_convex_combination_on_every_parameter() {
        let build = |fill: f64| {
            let vs = nn::VarStore::new(Device::Cpu);
            let root = vs.root();
            let _ = root.var("w", &[3, 2], nn::Init::Const(fill));
            let _ = root.var("b", &[2], nn::Init::Const(fill + 1.0));
            let _ = root.zeros_no_train("running_mean", &[2]);
            vs
        };
        let (target, source) = (build(1.0), build(5.0));
        let mut buffer = source.variables()["running_mean"].shallow_clone();
        tch::no_grad(|| {
            let _ = buffer.fill_(9.0);
        });
        momentum_update(&target, &source, 0.9);
        let t = target.variables();
        let value = |name: &str| Vec::<f32>::try_from(t[name].flatten(0, -1)).unwrap();
        assert!(value("w").iter().all(|&v| (v - (0.9 + 0.5)).abs() < 1e-6));
        assert!(value("b")
            .iter()
            .all(|&v| (v - (0.9 * 2.0 + 0.1 * 6.0)).abs() < 1e-6));
        // Buffers follow the momentum encoder's own forwards, not the trained one's.
        assert!(value("running_mean").iter().all(|&v| v == 0.0));
    }
}
