//! Image data for kinfonce: readers, SimCLR augmentations and a prefetching two-view loader.
//!
//! Pure Rust, no libtorch: batches are plain contiguous `f32` (or `bf16`) slices that the
//! trainer hands to `Tensor::from_slice`.
//!
//! - Reading: [`DataConfig`] (path, optional [`DataFormat`], `val_fraction`, `seed`, `subset`)
//!   gives a [`Dataset`] per [`Split`] or all [`Splits`] at once. Images are `u8`, HWC.
//! - Augmenting: [`AugmentConfig::preset`] and [`augment_view`], a pure function of
//!   [`ViewKey`] `(seed, epoch, index, view)`; [`eval_view`] normalises without augmenting.
//! - Loading: [`ContrastiveLoader`] yields prefetched [`Batch`]es of `[views * B, C, H, W]`
//!   (NCHW or NHWC, f32 or bf16); [`EvalLoader`] yields plain normalised batches.
//! - Checksums: [`sha256_file`] for provenance, [`Dataset::fingerprint`] for the pixels.

mod archive;
mod augment;
pub mod blur;
mod checksum;
mod cifar;
pub mod color;
mod dataset;
mod error;
mod folder;
mod format;
mod loader;
mod mnist;
mod read;
mod resize;
pub mod rng;
mod split;
mod stl10;
mod stream;
mod synthetic;
mod tensor;

pub use augment::{
    augment_view, center_crop_resize, center_crop_view, eval_view, imagenet_resize,
    random_resized_crop, AugmentConfig, BlurConfig, ColorJitter, Crop, ImageShape, Normalization,
    Scratch, ViewKey, ViewParams, AUGMENT_PRESETS,
};
pub use checksum::{md5_file, sha256_file, Checksum};
pub use cifar::CIFAR10_CLASSES;
pub use dataset::{Dataset, OfficialSplits};
pub use error::{DataError, Result};
pub use folder::{FolderOptions, StreamMode, STREAM_MEMORY_LIMIT};
pub use format::DataFormat;
pub use loader::{
    Batch, BatchData, Batches, ContrastiveLoader, EvalConfig, EvalLoader, LoaderConfig,
};
pub use read::{DataConfig, Split, Splits};
pub use split::{class_balanced_subset, class_balanced_val_split};
pub use stl10::STL10_CLASSES;
pub use stream::{crop_at_decode, dct_denominator, StreamIndex, INDEX_FILE};
pub use synthetic::{synthetic_image, write_synthetic_cifar, SYNTHETIC_CLASSES};
pub use tensor::{Dtype, Element, Layout};

#[cfg(feature = "fetch")]
pub mod fetch;
