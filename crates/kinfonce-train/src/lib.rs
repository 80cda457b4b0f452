//! Models, optimisers and the trainer on libtorch (being written).
pub use tch;
