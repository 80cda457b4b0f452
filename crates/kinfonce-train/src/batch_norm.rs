//! The batch-norm model of a training forward pass: which rows share batch statistics.
//!
//! A training step normalises each batch-norm layer's input with statistics of a group of rows.
//! The groups are the product of three choices (docs/batch-norm.md):
//! - the views ([`BnViews`]): each view of the pair alone (`separate`, the official code, whose
//!   `shared_step` forwards `img1` and `img2` one after the other) or both together (`joint`, as
//!   google-research/simclr);
//! - splits inside a view (MoCo's split batch norm, [`split`]: the samples i, i + s, i + 2s, ...
//!   of the encoders' 4-D layers share statistics, as if the batch ran on s devices);
//! - the processes: one rank's rows, or every rank's rows of the same group (synchronised batch
//!   norm, [`synchronised`]).
//!
//! Evaluation-mode forwards (monitors, the online probe, `eval`) use the running statistics and
//! are the same under every choice.

use crate::distributed::{DistError, ProcessGroup};
use crate::layers::BatchNorm;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use tch::{Kind, Tensor};

thread_local! {
    /// The group whose ranks share batch statistics while [`synchronised`] runs, and the first
    /// collective error met meanwhile (a layer's forward has no way to return it).
    static SYNC: RefCell<Option<(Rc<ProcessGroup>, Option<DistError>)>> = const { RefCell::new(None) };
}

/// Runs `f` (training forwards) with every batch-norm layer's statistics taken over the rows of
/// all ranks of `group`: per channel, the sums of x and x^2 and the row count are all-reduced
/// (autograd-aware, so the backward pass sums the statistics' gradients over the ranks too).
/// The result, or the first collective error.
pub fn synchronised<R>(group: &Rc<ProcessGroup>, f: impl FnOnce() -> R) -> Result<R, DistError> {
    SYNC.with(|s| *s.borrow_mut() = Some((Rc::clone(group), None)));
    let out = f();
    let error = SYNC.with(|s| s.borrow_mut().take().and_then(|(_, e)| e));
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The training forward of `bn` with statistics over every rank, when inside [`synchronised`].
///
/// y = (x - mean) / sqrt(var + eps) w + b with the global mean and biased variance
/// (E[x^2] - mean^2, in f32); the running statistics move by momentum 0.1 towards the mean and
/// the unbiased variance, as libtorch's batch norm.
pub(crate) fn synchronised_forward(bn: &BatchNorm, x: &Tensor) -> Option<Tensor> {
    let (group, failed) = SYNC.with(|s| {
        s.borrow()
            .as_ref()
            .map(|(g, e)| (Rc::clone(g), e.is_some()))
    })?;
    if failed {
        // A collective already failed in this forward: the step is lost, wait for nothing more.
        return Some(x.shallow_clone());
    }
    let c = x.size()[1];
    let dims: Vec<i64> = (0..x.dim() as i64).filter(|&d| d != 1).collect();
    let xf = x.to_kind(Kind::Float);
    let sum = xf.sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let sum_sq = xf
        .square()
        .sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let count = Tensor::from_slice(&[(x.numel() as i64 / c) as f32]);
    let packed = Tensor::cat(&[sum, sum_sq, count], 0);
    let global = match crate::distributed::timed(|| group.all_reduce_sum_autograd(&packed)) {
        Ok(g) => g,
        Err(e) => {
            SYNC.with(|s| {
                if let Some((_, slot @ None)) = s.borrow_mut().as_mut() {
                    *slot = Some(e);
                }
            });
            return Some(x.shallow_clone());
        }
    };
    let n = global.double_value(&[2 * c]);
    let mean = global.narrow(0, 0, c) / n;
    let var = global.narrow(0, c, c) / n - mean.square();
    tch::no_grad(|| {
        let (mut rm, mut rv) = (
            bn.running_mean.shallow_clone(),
            bn.running_var.shallow_clone(),
        );
        let _ = rm.g_mul_scalar_(0.9).g_add_(&(mean.detach() * 0.1));
        let unbiased = var.detach() * (n / (n - 1.0).max(1.0));
        let _ = rv.g_mul_scalar_(0.9).g_add_(&(unbiased * 0.1));
    });
    let mut shape = vec![1i64; x.dim()];
    shape[1] = c;
    let scale = (var + 1e-5).rsqrt() * &bn.weight;
    let y = (xf - mean.view(shape.as_slice())) * scale.view(shape.as_slice())
        + bn.bias.view(shape.as_slice());
    Some(y.to_kind(x.kind()))
}

thread_local! {
    /// The number of splits while [`split`] runs; 0 outside it.
    static SPLITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f` (training forwards) with every 4-D batch-norm layer (the encoders'; the projection
/// head keeps plain statistics) normalising `splits` interleaved groups of samples on their own:
/// sample n belongs to split n mod `splits` (the official MoCo's `SplitBatchNorm`, which views
/// `[N, C, H, W]` as `[N / s, s C, H, W]`). Each running statistic moves towards the mean of
/// the splits' updates.
pub fn split<R>(splits: usize, f: impl FnOnce() -> R) -> R {
    let before = SPLITS.with(|s| s.replace(splits.max(1)));
    let out = f();
    SPLITS.with(|s| s.set(before));
    out
}

/// Whether `x` meets a batch-norm layer under [`split`]: a 4-D input inside it. Such a layer
/// keeps this process's statistics even inside [`synchronised`] (and with one split).
pub(crate) fn is_split(x: &Tensor) -> bool {
    SPLITS.with(|s| s.get()) > 0 && x.dim() == 4
}

/// The training forward of `bn` by splits, when [`is_split`] and there is more than one split.
pub(crate) fn split_forward(bn: &BatchNorm, x: &Tensor) -> Option<Tensor> {
    let splits = SPLITS.with(|s| s.get()) as i64;
    if splits <= 1 || !is_split(x) {
        return None;
    }
    let [n, c, h, w] = x.size()[..] else {
        return None;
    };
    let repeat = |t: &Tensor| t.repeat([splits]);
    let (rm, rv) = (repeat(&bn.running_mean), repeat(&bn.running_var));
    let y = Tensor::batch_norm(
        &x.reshape([n / splits, splits * c, h, w]),
        Some(&repeat(&bn.weight)),
        Some(&repeat(&bn.bias)),
        Some(&rm),
        Some(&rv),
        true,
        0.1,
        1e-5,
        true,
    )
    .reshape([n, c, h, w]);
    // The reshape made the rows NCHW-contiguous; keep the network's channels-last layout.
    let y = if x.is_contiguous() {
        y
    } else {
        crate::layers::to_channels_last(&y)
    };
    tch::no_grad(|| {
        bn.running_mean
            .shallow_clone()
            .copy_(
                &rm.view([splits, c])
                    .mean_dim([0i64].as_slice(), false, Kind::Float),
            );
        bn.running_var
            .shallow_clone()
            .copy_(
                &rv.view([splits, c])
                    .mean_dim([0i64].as_slice(), false, Kind::Float),
            );
    });
    Some(y)
}

/// How the two views of a pair meet in batch norm. Default `separate` (the official code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BnViews {
    /// One forward per view: statistics per view, running statistics updated once per view.
    #[default]
    Separate,
    /// One forward of both views: statistics over the pair, one running-statistics update.
    Joint,
}

impl BnViews {
    pub fn name(self) -> &'static str {
        match self {
            BnViews::Separate => "separate",
            BnViews::Joint => "joint",
        }
    }

    /// The training forward of `x` (`[2B, ...]`: view 1 then view 2) through `f`, with the
    /// statistics grouped as `self` says. Output `[2B, ...]` in the same row order.
    pub fn forward_pair(self, x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
        match self {
            BnViews::Joint => f(x),
            BnViews::Separate => {
                let b = x.size()[0] / 2;
                Tensor::cat(&[f(&x.narrow(0, 0, b)), f(&x.narrow(0, b, b))], 0)
            }
        }
    }
}

impl std::fmt::Display for BnViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::{ResNet, ResNetConfig};
    use tch::{nn, Device, Kind};

    /// The same small ResNet every call (fresh running statistics).
    fn net() -> (ResNet, nn::VarStore) {
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNetConfig {
            width: 4,
            ..Default::default()
        }
        .init(vs.root());
        (net, vs)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        f64::try_from((a - b).abs().max()).unwrap()
    }

    #[test]
    fn separate_views_are_each_views_own_forward_and_update_twice() {
        tch::manual_seed(5);
        let b = 6;
        // The second view shifted and scaled, so the pair's statistics differ from each view's.
        let x1 = Tensor::randn([b, 3, 8, 8], (Kind::Float, Device::Cpu));
        let x2 = Tensor::randn([b, 3, 8, 8], (Kind::Float, Device::Cpu)) * 2.0 + 0.5;
        let pair = Tensor::cat(&[&x1, &x2], 0);

        let (separate_net, _s) = net();
        let separate = BnViews::Separate.forward_pair(&pair, |v| separate_net.forward(v, true));
        let (alone_net, _a) = net();
        let alone1 = alone_net.forward(&x1, true);
        let (alone_net2, _a2) = net();
        let alone2 = alone_net2.forward(&x2, true);
        assert!(max_diff(&separate.narrow(0, 0, b), &alone1) < 1e-6);
        assert!(max_diff(&separate.narrow(0, b, b), &alone2) < 1e-6);
        let (joint_net, _j) = net();
        let joint = BnViews::Joint.forward_pair(&pair, |v| joint_net.forward(v, true));
        assert!(
            max_diff(&separate, &joint) > 1e-3,
            "joint statistics are the pair's"
        );

        // The stem's batch norm after one separate step: two momentum-0.1 updates from 0,
        // m = 0.9 (0.1 mean(view 1)) + 0.1 mean(view 2), the means over (N, H, W) of conv1's
        // output for each view.
        let (fresh, _f) = net();
        let mean = |x: &Tensor| {
            fresh
                .conv1
                .forward(x)
                .mean_dim([0i64, 2, 3].as_slice(), false, Kind::Float)
        };
        let want = mean(&x1) * 0.1 * 0.9 + mean(&x2) * 0.1;
        assert!(max_diff(&separate_net.bn1.running_mean, &want) < 1e-6);
        let joint_want = mean(&pair) * 0.1;
        assert!(max_diff(&joint_net.bn1.running_mean, &joint_want) < 1e-6);
    }
}
