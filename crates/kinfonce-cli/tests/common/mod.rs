//! Shared by the CLI's integration tests: where the real data is.

use std::path::PathBuf;

/// The official CIFAR-10 archive in `../shared/data/`, or `None` (with a message saying the
/// test skips) when it is absent.
#[allow(dead_code)] // not every test binary uses it
pub fn cifar() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10/cifar-10-binary.tar.gz");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

/// The golden loss cases in `../shared/golden/`, or `None` (with a message saying the test
/// skips) when they are absent.
#[allow(dead_code)] // not every test binary uses it
pub fn golden_cases() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/kernel_infonce.json");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}
