//! # kinfonce-graph: the theory lab
//!
//! Contrastive learning with InfoNCE is spectral clustering on a similarity graph (Tan, Zhang,
//! Yang, Yuan, ICLR 2024). This crate makes each statement of that result a computation whose
//! closed-form prediction can be checked: similarity graphs pi, Laplacians, spectral embeddings,
//! k-means++, ARI/NMI, the Markov random field P(W; pi) and the cross-entropy H(pi, K_Z), free
//! node embeddings trained with InfoNCE (through `kinfonce-loss`), and experiments with plots.
//!
//! **Kernel convention** (the project's one convention): K(x, y) = exp(-||x - y||^gamma / tau),
//! gamma = 2 unless stated; so with gamma = 2, -log K = d^2 / tau, the trace form's factor is
//! 2 / tau and planted block centres sit at squared distance tau ln(p/q).

pub mod edge_list;
pub mod eigen;
pub mod error;
pub mod experiments;
pub mod free_embedding;
pub mod generators;
pub mod graph;
pub mod kernel;
pub mod kmeans;
pub mod laplacian;
pub mod metrics;
pub mod mrf;
pub mod optim;
pub mod plot;
pub mod report;
pub mod rng;
pub mod spectral;
pub mod subspace;

pub use error::{GraphError, Result};
pub use graph::Graph;
