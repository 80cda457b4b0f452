//! Kernel-InfoNCE losses (being written).
