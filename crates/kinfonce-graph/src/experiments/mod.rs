//! The experiments: each has a `XxxConfig` with documented defaults and a `run` that returns a
//! [`Report`](crate::report::Report) of predicted-vs-measured claims and writes plots when given
//! an output folder.

pub mod all;
pub mod batch_size;
pub mod clip;
pub mod common;
pub mod cross_entropy;
pub mod kernels;
pub mod knn_real;
pub mod mrf;
pub mod planted;
pub mod scale;
pub mod spectral_agreement;
