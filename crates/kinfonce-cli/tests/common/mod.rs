//! Shared by the CLI's integration tests: where the real data is.

use std::path::PathBuf;

/// The official CIFAR-10 archive in `../shared/data/`, or `None` (with a message saying the
/// test skips) when it is absent.
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
