//! Pretraining on libtorch: ResNet encoders with torchvision's parameter names, the projection
//! head, the Kernel-InfoNCE losses on tensors, optimisers with serialisable state, checkpoints
//! and the trainer.
pub use tch;

pub mod allocator;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod error;
pub mod eval;
pub mod features;
pub mod layers;
pub mod loss_tensor;
pub mod monitor;
pub mod optim;
pub mod plots;
pub mod projection;
pub mod report;
pub mod resnet;
pub mod schedule;
pub mod trainer;

pub use config::TrainConfig;
pub use trainer::{RunOptions, Summary, Trainer};
