//! The Kernel-InfoNCE losses as libtorch tensor ops (autograd gives the gradient), for CUDA and
//! as an independent check of the fused CPU kernel.
//!
//! SimCLR pairing: the 2B rows of Z = [z1; z2] are the anchors; anchor i's positive is its other
//! view, its candidates every other row (positive included, itself excluded):
//!
//! L = mean_i [ -log K(i, pos(i)) + log sum_{j != i} K(i, j) ],  K(x, y) = exp(-||x - y||_p^gamma / tau).
//!
//! Stable form: logits, log-sum-exp, and every singular point masked *before* the power or the
//! square root (the self-pair and zero distances), so the gradient stays finite for gamma < 1 and
//! identical views. Positive distances come straight from the differences (the GEMM form
//! |x|^2 + |y|^2 - 2 x.y cancels catastrophically for near-identical views).

use crate::error::{Result, TrainError};
use kinfonce_loss::cases::{Case, CaseResult};
use kinfonce_loss::{Kernel, LossSpec, Pairing};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// A loss on the two views' projections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TensorLoss {
    /// One exponential kernel exp(-||x - y||_p^gamma / tau) in one softmax; p is 1, 2 or inf.
    Exp { gamma: f64, tau: f64, p: f64 },
    /// One softmax over a kernel mixture K = sum_k w_k exp(-||x - y||_p^gamma_k / tau_k)
    /// (the paper's Simple Sum); components are (w, gamma, tau).
    Mixture {
        components: Vec<(f64, f64, f64)>,
        p: f64,
    },
    /// Weighted sum of losses sum_k w_k L_k (the official `sum`: lambda L(gamma) + (1 - lambda) L(2)).
    Weighted { terms: Vec<(f64, TensorLoss)> },
    /// Concatenation Sum (the official `product`): `first` on columns [0, split), `second` on
    /// [split, d), weighted lambda and 1 - lambda; the parts are not renormalised.
    Concat {
        split: i64,
        lambda: f64,
        first: Box<TensorLoss>,
        second: Box<TensorLoss>,
    },
    /// Spectral contrastive loss: sum_{i != j} (z_i . z_j)^2 / (B (B - 1)) - (2 / B) sum_i z1_i . z2_i.
    Spectral,
}

impl TensorLoss {
    /// The loss (a scalar tensor, in the inputs' dtype).
    ///
    /// # Shapes
    /// `z1`, `z2`: `[B, d]`, B >= 2.
    pub fn forward(&self, z1: &Tensor, z2: &Tensor) -> Tensor {
        match self {
            TensorLoss::Exp { gamma, tau, p } => {
                let z = Tensor::cat(&[z1, z2], 0);
                let logits = -distance_pow(z1, z2, &z, *p, *gamma) / *tau;
                softmax_loss(logits, z1.size()[0])
            }
            TensorLoss::Mixture { components, p } => {
                let z = Tensor::cat(&[z1, z2], 0);
                let per_component: Vec<Tensor> = components
                    .iter()
                    .map(|&(w, gamma, tau)| w.ln() - distance_pow(z1, z2, &z, *p, gamma) / tau)
                    .collect();
                let logits = Tensor::stack(&per_component, 0).logsumexp([0], false);
                softmax_loss(logits, z1.size()[0])
            }
            TensorLoss::Weighted { terms } => terms
                .iter()
                .map(|(w, loss)| loss.forward(z1, z2) * *w)
                .reduce(|a, b| a + b)
                .expect("a weighted loss has at least one term"),
            TensorLoss::Concat {
                split,
                lambda,
                first,
                second,
            } => {
                let ((a1, b1), (a2, b2)) = (columns(z1, *split), columns(z2, *split));
                first.forward(&a1, &a2) * *lambda + second.forward(&b1, &b2) * (1.0 - lambda)
            }
            TensorLoss::Spectral => {
                let b = z1.size()[0] as f64;
                let z = Tensor::cat(&[z1, z2], 0);
                let n = z.size()[0];
                let gram = z.matmul(&z.tr());
                let eye = Tensor::eye(n, (Kind::Bool, z.device()));
                let off = gram.masked_fill(&eye, 0.0).square().sum(gram.kind());
                let pos = (z1 * z2).sum(z1.kind());
                off / (b * (b - 1.0)) - pos * (2.0 / b)
            }
        }
    }
}

impl TensorLoss {
    /// The MoCo form: each query `q_i` against its key `k_i` (the positive, not in the
    /// denominator) and the queue's rows (the negatives),
    /// L = mean_i [ -log K(q_i, k_i) + log sum_m K(q_i, queue_m) ]; weighted sums and the
    /// concatenation sum combine as in [`TensorLoss::forward`].
    ///
    /// # Shapes
    /// `q`, `k`: `[B, d]`, `queue`: `[K, d]`.
    pub fn forward_moco(&self, q: &Tensor, k: &Tensor, queue: &Tensor) -> Result<Tensor> {
        // log K for the positives `[B]` and the negatives `[B, K]`, per kernel.
        let log_kernels = |p: f64, parts: &[(f64, f64, f64)]| {
            let stack = |t: Vec<Tensor>| Tensor::stack(&t, 0).logsumexp([0], false);
            let pos = parts
                .iter()
                .map(|&(w, gamma, tau)| w.ln() - row_distance_pow(q, k, p, gamma) / tau)
                .collect();
            let neg = parts
                .iter()
                .map(|&(w, gamma, tau)| w.ln() - cross_distance_pow(q, queue, p, gamma) / tau)
                .collect();
            (stack(pos), stack(neg))
        };
        let softmax =
            |(pos, neg): (Tensor, Tensor)| (neg.logsumexp([1], false) - pos).mean(q.kind());
        Ok(match self {
            TensorLoss::Exp { gamma, tau, p } => softmax(log_kernels(*p, &[(1.0, *gamma, *tau)])),
            TensorLoss::Mixture { components, p } => softmax(log_kernels(*p, components)),
            TensorLoss::Weighted { terms } => terms
                .iter()
                .map(|(w, loss)| Ok(loss.forward_moco(q, k, queue)? * *w))
                .collect::<Result<Vec<Tensor>>>()?
                .into_iter()
                .reduce(|a, b| a + b)
                .expect("a weighted loss has at least one term"),
            TensorLoss::Concat {
                split,
                lambda,
                first,
                second,
            } => {
                let ((qa, qb), (ka, kb)) = (columns(q, *split), columns(k, *split));
                let (queue_a, queue_b) = columns(queue, *split);
                first.forward_moco(&qa, &ka, &queue_a)? * *lambda
                    + second.forward_moco(&qb, &kb, &queue_b)? * (1.0 - lambda)
            }
            TensorLoss::Spectral => {
                return Err(TrainError::Config(
                    "the spectral contrastive loss has no MoCo form".into(),
                ))
            }
        })
    }
}

/// The columns `[0, split)` and `[split, d)` of `t` (the two parts of a concatenation sum).
fn columns(t: &Tensor, split: i64) -> (Tensor, Tensor) {
    let d = t.size()[1];
    (t.narrow(1, 0, split), t.narrow(1, split, d - split))
}

/// `[B]`: ||a_i - b_i||_p^gamma, from the differences (exact for nearly equal rows), with a
/// finite gradient at 0.
fn row_distance_pow(a: &Tensor, b: &Tensor, p: f64, gamma: f64) -> Tensor {
    let diff = a - b;
    let none = Tensor::zeros([a.size()[0]], (Kind::Bool, a.device()));
    if p == 2.0 {
        let d2 = diff
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, a.kind());
        masked_pow(&d2, &none, gamma / 2.0)
    } else if p == 1.0 {
        let d = diff
            .abs()
            .sum_dim_intlist([1i64].as_slice(), false, a.kind());
        masked_pow(&d, &none, gamma)
    } else {
        let d = diff.abs().amax([1i64].as_slice(), false);
        masked_pow(&d, &none, gamma)
    }
}

/// `[N, M]`: ||a_i - b_m||_p^gamma for two different sets of rows, with a finite gradient at 0.
fn cross_distance_pow(a: &Tensor, b: &Tensor, p: f64, gamma: f64) -> Tensor {
    let none = Tensor::zeros([a.size()[0], b.size()[0]], (Kind::Bool, a.device()));
    if p == 2.0 {
        let sq = |t: &Tensor| {
            t.square()
                .sum_dim_intlist([1i64].as_slice(), true, t.kind())
        };
        let d2 = (sq(a) + sq(b).tr() - a.matmul(&b.tr()) * 2.0).clamp_min(0.0);
        masked_pow(&d2, &none, gamma / 2.0)
    } else {
        masked_pow(&Tensor::cdist(a, b, p, None::<i64>), &none, gamma)
    }
}

/// `[2B, 2B]` matrix of ||z_i - z_j||_p^gamma with 0 on the diagonal (to be masked by the caller).
fn distance_pow(z1: &Tensor, z2: &Tensor, z: &Tensor, p: f64, gamma: f64) -> Tensor {
    let n = z.size()[0];
    let b = n / 2;
    let device = z.device();
    let eye = Tensor::eye(n, (Kind::Bool, device));
    // Column of each row's positive: (i + B) mod 2B.
    let pos_col = (Tensor::arange(n, (Kind::Int64, device)) + b).remainder(n);
    let pos_mask =
        Tensor::zeros([n, n], (Kind::Bool, device)).scatter_value(1, &pos_col.unsqueeze(1), 1);
    if p == 2.0 {
        let sq = z
            .square()
            .sum_dim_intlist([1i64].as_slice(), true, z.kind());
        let gram = z.matmul(&z.tr());
        let d2 = (&sq + sq.tr() - gram * 2.0).clamp_min(0.0);
        let pos = (z1 - z2)
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, z.kind());
        let pos = Tensor::cat(&[&pos, &pos], 0)
            .unsqueeze(1)
            .expand([n, n], false);
        let d2 = pos.where_self(&pos_mask, &d2);
        masked_pow(&d2, &eye, gamma / 2.0)
    } else {
        // p = 1 or inf: cdist computes every entry from the differences.
        let d = Tensor::cdist(z, z, p, None::<i64>);
        masked_pow(&d, &eye, gamma)
    }
}

/// x^e where x > 0 and not masked, else 0, with a finite gradient everywhere (the zero
/// entries get gradient 0, as autograd gives a zero-length difference vector).
fn masked_pow(x: &Tensor, mask: &Tensor, e: f64) -> Tensor {
    let singular = mask.logical_or(&x.le(0.0));
    let safe = x.ones_like().where_self(&singular, x);
    let pow = if e == 1.0 {
        safe
    } else {
        safe.pow_tensor_scalar(e)
    };
    pow.masked_fill(&singular, 0.0)
}

/// mean_i [ -logits[i, pos(i)] + logsumexp_{j != i} logits[i, j] ] for `[2B, 2B]` logits,
/// computed as mean_i softplus(logsumexp_{j != i, pos(i)} (logits[i, j] - logits[i, pos(i)])):
/// the positive's own term exp(0) = 1 stays out of the sum, so a loss near 0 (views far closer
/// than any negative) keeps its relative precision in f32 instead of cancelling in log(1 + s).
fn softmax_loss(logits: Tensor, b: i64) -> Tensor {
    let n = 2 * b;
    let device = logits.device();
    let pos_col = (Tensor::arange(n, (Kind::Int64, device)) + b).remainder(n);
    let positive = logits.gather(1, &pos_col.unsqueeze(1), false);
    let not_negative =
        Tensor::eye(n, (Kind::Bool, device)).scatter_value(1, &pos_col.unsqueeze(1), 1);
    let relative = (logits - positive).masked_fill(&not_negative, f64::NEG_INFINITY);
    relative
        .logsumexp([1], false)
        .softplus()
        .mean(relative.kind())
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

/// A case of the golden format through the tensor form on `device` in `kind` (f32 or f64):
/// its loss and the gradients autograd gives, or `Ok(Err(reason))` when the tensor form does
/// not cover it (the CLIP pairing, arc-cosine kernels).
pub fn evaluate_case(
    case: &Case,
    kind: Kind,
    device: Device,
) -> Result<std::result::Result<CaseResult, String>> {
    let (spec, pairing) = case
        .spec()
        .map_err(|e| TrainError::Config(format!("case {}: {e}", case.name)))?;
    if !matches!(pairing, Pairing::SimClr | Pairing::Moco) {
        return Ok(Err(format!(
            "the tensor form covers the SimCLR and MoCo pairings, not {pairing:?}"
        )));
    }
    let loss = match tensor_loss_of(&spec) {
        Ok(loss) => loss,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let shapes: Vec<(usize, usize)> = case.inputs.iter().map(|m| (m.rows, m.cols)).collect();
    let (count, fits) = match pairing {
        Pairing::Moco => (
            3,
            shapes.len() == 3 && shapes[0] == shapes[1] && shapes[2].1 == shapes[0].1,
        ),
        _ => (
            2,
            shapes.len() == 2 && shapes[0] == shapes[1] && shapes[0].0 >= 2,
        ),
    };
    if !fits {
        return Err(TrainError::Config(format!(
            "case {}: the {pairing:?} pairing takes {count} inputs of matching shapes, got \
             shapes {shapes:?}",
            case.name
        )));
    }
    let inputs: Vec<Tensor> = case
        .inputs
        .iter()
        .map(|m| {
            Tensor::from_slice(&m.data)
                .view([m.rows as i64, m.cols as i64])
                .to_device(device)
                .to_kind(kind)
                .set_requires_grad(true)
        })
        .collect();
    let value = match pairing {
        Pairing::Moco => loss.forward_moco(&inputs[0], &inputs[1], &inputs[2])?,
        _ => loss.forward(&inputs[0], &inputs[1]),
    };
    value.backward();
    let rows = |t: &Tensor| -> Result<Vec<Vec<f64>>> {
        Vec::<Vec<f64>>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double)).map_err(|e| {
            TrainError::Torch {
                context: format!("case {}", case.name),
                cause: e,
            }
        })
    };
    Ok(Ok(CaseResult {
        name: case.name.clone(),
        loss: value.double_value(&[]),
        grads: inputs
            .iter()
            .map(|t| rows(&t.grad()))
            .collect::<Result<_>>()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fully collapsed embeddings: every kernel value is 1, so L = ln(2B - 1) exactly.
    #[test]
    fn collapsed_embeddings_give_ln_2b_minus_1() {
        let b = 6;
        let z = Tensor::ones([b, 4], (Kind::Double, Device::Cpu)) * 0.5;
        for loss in [
            TensorLoss::Exp {
                gamma: 1.0,
                tau: 0.2,
                p: 2.0,
            },
            TensorLoss::Exp {
                gamma: 0.5,
                tau: 0.1,
                p: 1.0,
            },
            TensorLoss::Mixture {
                components: vec![(0.5, 1.0, 0.2), (0.5, 2.0, 0.4)],
                p: 2.0,
            },
        ] {
            let z1 = z.copy().set_requires_grad(true);
            let value = loss.forward(&z1, &z);
            value.backward();
            let got = f64::try_from(&value).unwrap();
            assert!(
                (got - ((2 * b - 1) as f64).ln()).abs() < 1e-12,
                "{loss:?}: {got}"
            );
            assert!(bool::try_from(z1.grad().isfinite().all()).unwrap());
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        tch::manual_seed(5);
        let z1 = Tensor::randn([16, 8], (Kind::Double, Device::Cpu));
        let z2 = &z1 + Tensor::randn([16, 8], (Kind::Double, Device::Cpu)) * 0.1;
        let loss = TensorLoss::Exp {
            gamma: 1.0,
            tau: 0.2,
            p: 2.0,
        };
        let a = f64::try_from(loss.forward(&z1, &z2)).unwrap();
        let b = f64::try_from(loss.forward(&z1.to_kind(Kind::Float), &z2.to_kind(Kind::Float)))
            .unwrap();
        assert!((a - b).abs() < 1e-5 * a.abs(), "{a} vs {b}");
    }
}
