//! Pretraining on libtorch: ResNet encoders with torchvision's parameter names, the projection
//! head, the Kernel-InfoNCE losses on tensors, optimisers with serialisable state, checkpoints
//! and the trainer.
pub use tch;

/// The tch release this crate binds, and the libtorch it pins (the PyPI wheel torch==2.11.0).
pub const TCH_VERSION: &str = "0.24.0";
pub const LIBTORCH_VERSION: &str = "2.11.0";
/// The libtorch library folder this build linked against (also the binaries' rpath).
pub const LIBTORCH_LIB: Option<&str> = option_env!("KINFONCE_LIBTORCH_LIB");

pub mod allocator;
pub mod batch_norm;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod device;
pub mod distributed;
pub mod error;
pub mod eval;
pub mod features;
pub mod hardware;
pub mod input;
pub mod layers;
pub mod loss_tensor;
pub mod metrics;
pub mod monitor;
pub mod optim;
pub mod plots;
pub mod projection;
pub mod report;
pub mod resnet;
pub mod schedule;
pub mod signal;
pub mod study_report;
pub mod summary;
pub mod trainer;

pub use config::TrainConfig;
pub use hardware::Precision;
pub use summary::Summary;
pub use trainer::{RunOptions, Trainer};
