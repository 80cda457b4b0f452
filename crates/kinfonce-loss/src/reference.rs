//! A slow, direct transcription of the definitions (f64, whole matrices, no tiles, no shared
//! code with the fused engine). It is the specification the fused path is tested against.

use crate::kernel::{Kernel, Norm};
use crate::matrix::Mat;
use crate::pairing::Pairing;
use crate::spec::LossSpec;

fn distance(p: Norm, x: &[f64], y: &[f64]) -> f64 {
    let diffs = x.iter().zip(y).map(|(a, b)| (a - b).abs());
    match p {
        Norm::L1 => diffs.sum(),
        Norm::L2 => diffs.map(|v| v * v).sum::<f64>().sqrt(),
        Norm::Inf => diffs.fold(0.0, f64::max),
    }
}

/// ln K(x, y), straight from the formulas.
pub fn log_kernel(kernel: &Kernel, x: &[f64], y: &[f64]) -> f64 {
    match kernel {
        Kernel::Exp(e) => -distance(e.p, x, y).powf(e.gamma) / e.tau,
        Kernel::Mixture { components: parts } => parts
            .iter()
            .map(|c| {
                c.weight * (-distance(c.kernel.p, x, y).powf(c.kernel.gamma) / c.kernel.tau).exp()
            })
            .sum::<f64>()
            .ln(),
        Kernel::ArcCos { order, tau } => {
            let u: f64 = x.iter().zip(y).map(|(a, b)| a * b).sum();
            let t = (tau * u + 1.0 - tau).clamp(-1.0, 1.0).acos();
            let (s, c, pt) = (t.sin(), t.cos(), std::f64::consts::PI - t);
            match order {
                1 => pt,
                2 => s + pt * c,
                _ => 3.0 * s * c + pt * (1.0 + 2.0 * c * c),
            }
            .ln()
        }
    }
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// -ln softmax of the positive among `candidates`, for one anchor.
fn anchor_loss(kernel: &Kernel, x: &[f64], positive: &[f64], candidates: &[&[f64]]) -> f64 {
    let logits: Vec<f64> = candidates
        .iter()
        .map(|c| log_kernel(kernel, x, c))
        .collect();
    logsumexp(&logits) - log_kernel(kernel, x, positive)
}

fn kernel_loss(kernel: &Kernel, pairing: Pairing, inputs: &[Mat<f64>]) -> f64 {
    match pairing {
        Pairing::SimClr | Pairing::Gathered { .. } => {
            let b = inputs[0].rows;
            let z: Vec<&[f64]> = (0..b)
                .map(|i| inputs[0].row(i))
                .chain((0..b).map(|i| inputs[1].row(i)))
                .collect();
            let anchors: Vec<usize> = match pairing {
                Pairing::Gathered { offset, local } => (offset..offset + local)
                    .chain(b + offset..b + offset + local)
                    .collect(),
                _ => (0..2 * b).collect(),
            };
            let total: f64 = anchors
                .iter()
                .map(|&i| {
                    let others: Vec<&[f64]> =
                        (0..2 * b).filter(|&j| j != i).map(|j| z[j]).collect();
                    anchor_loss(kernel, z[i], z[(i + b) % (2 * b)], &others)
                })
                .sum();
            total / anchors.len() as f64
        }
        Pairing::Moco => {
            let queue: Vec<&[f64]> = (0..inputs[2].rows).map(|m| inputs[2].row(m)).collect();
            let b = inputs[0].rows;
            (0..b)
                .map(|i| anchor_loss(kernel, inputs[0].row(i), inputs[1].row(i), &queue))
                .sum::<f64>()
                / b as f64
        }
        Pairing::Clip => {
            let b = inputs[0].rows;
            let direction = |a: &Mat<f64>, c: &Mat<f64>| {
                let cands: Vec<&[f64]> = (0..b).map(|j| c.row(j)).collect();
                (0..b)
                    .map(|i| anchor_loss(kernel, a.row(i), c.row(i), &cands))
                    .sum::<f64>()
                    / b as f64
            };
            0.5 * (direction(&inputs[0], &inputs[1]) + direction(&inputs[1], &inputs[0]))
        }
    }
}

/// The loss by the definitions. Inputs as in [`crate::evaluate`]; parameters are not checked.
pub fn reference_loss(spec: &LossSpec, pairing: Pairing, inputs: &[Mat<f64>]) -> f64 {
    match spec {
        LossSpec::InfoNce { kernel } => kernel_loss(kernel, pairing, inputs),
        LossSpec::Sum { parts } => parts
            .iter()
            .map(|(w, k)| w * kernel_loss(k, pairing, inputs))
            .sum(),
        LossSpec::Concat {
            split,
            lambda,
            first,
            second,
        } => {
            let d = inputs[0].cols;
            let part = |from, to| -> Vec<Mat<f64>> {
                inputs.iter().map(|m| m.view().columns(from, to)).collect()
            };
            lambda * kernel_loss(first, pairing, &part(0, *split))
                + (1.0 - lambda) * kernel_loss(second, pairing, &part(*split, d))
        }
        LossSpec::Spectral => {
            let b = inputs[0].rows;
            let z: Vec<&[f64]> = (0..b)
                .map(|i| inputs[0].row(i))
                .chain((0..b).map(|i| inputs[1].row(i)))
                .collect();
            let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
            let mut off = 0.0;
            for i in 0..2 * b {
                for j in 0..2 * b {
                    if i != j {
                        off += dot(z[i], z[j]).powi(2);
                    }
                }
            }
            let align: f64 = (0..b).map(|i| dot(z[i], z[i + b])).sum();
            off / (b * (b - 1)) as f64 - 2.0 / b as f64 * align
        }
    }
}
