//! # kinfonce-loss
//!
//! The Kernel-InfoNCE loss family of Tan, Zhang, Yang and Yuan, "Contrastive Learning Is Spectral
//! Clustering On Similarity Graph" (ICLR 2024), exact and fast, on plain row-major slices.
//!
//! For anchors i with positive pos(i) and candidates D(i),
//!
//! L = (1 / n) sum_i -ln( K(z_i, z_pos(i)) / sum_{j in D(i)} K(z_i, z_j) ),
//!
//! with K(x, y) = exp(-||x - y||_p^gamma / tau) (gamma in (0, 2], p in {1, 2, inf}; gamma = 2 on
//! unit vectors is SimCLR's NT-Xent at temperature tau / 2), kernel mixtures in one softmax
//! (Simple Sum), weighted sums of losses, Concatenation Sum, arc-cosine kernels and the
//! spectral contrastive loss; in the SimCLR, MoCo, CLIP and gathered pairings (see
//! [`Pairing`]). Values and gradients in f32 and f64.
//!
//! Everything is computed in log-space: log-sum-exp throughout, the self-pair masked before any
//! power (finite gradients for gamma < 1 and identical rows), no overflow or underflow for tau
//! down to 1e-3 in f32. The CPU path ([`fused`]) is blocked and parallel (rayon) and never holds
//! an N x N matrix: memory O(N d + threads x tile).
//!
//! ```
//! use kinfonce_loss::{simclr, LossSpec, MatRef};
//! let z1 = [1.0f32, 0.0, 0.0, 1.0];
//! let z2 = [0.8f32, 0.6, 0.6, 0.8];
//! let spec = LossSpec::preset("laplacian", 2).unwrap();
//! let out = simclr(&spec, MatRef::new(&z1, 2, 2).unwrap(), MatRef::new(&z2, 2, 2).unwrap()).unwrap();
//! assert!(out.loss > 0.0 && out.grads.len() == 2);
//! ```

pub mod cases;
pub mod error;
pub mod fused;
pub mod kernel;
pub mod matrix;
pub mod output;
pub mod pairing;
pub mod real;
pub mod reference;
pub mod spec;
pub mod spectral;

pub use error::LossError;
pub use fused::{InfoNceGrads, Positives};
pub use kernel::{ExpKernel, Kernel, MixtureComponent, Norm};
pub use matrix::{Mat, MatRef};
pub use output::LossOutput;
pub use pairing::{clip, evaluate, infonce, moco, simclr, Pairing};
pub use real::Real;
pub use spec::{LossSpec, PRESETS};
