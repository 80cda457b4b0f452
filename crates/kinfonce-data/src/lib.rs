//! Data readers and augmentations (being written).
