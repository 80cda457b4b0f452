//! The MNIST points of `knn-real` (and of `all`): where they are looked for and how they load.

use kinfonce_graph::experiments::knn_real;
use std::path::{Path, PathBuf};

/// Test images `knn-real` uses unless told otherwise; `all` uses the same count.
pub const DEFAULT_IMAGES: usize = 2000;

/// Default MNIST folder of `knn-real`: the one `kinfonce data fetch mnist` fills in the cache
/// folder (`$KINFONCE_DATA` or `~/.cache/kinfonce`).
pub fn default_mnist() -> PathBuf {
    let cache = kinfonce_data::fetch::default_cache_dir();
    match kinfonce_data::fetch::known_dataset("mnist") {
        Ok(d) => cache.join(d.name).join(d.data_path),
        Err(_) => cache.join("mnist"),
    }
}

/// Why `knn-real` cannot run on `path`, when the folder is absent.
pub fn missing_data(path: &Path) -> Option<String> {
    (!path.exists()).then(|| {
        format!(
            "MNIST not found at {} (`kinfonce data fetch mnist` downloads it; --data PATH points at IDX files elsewhere)",
            path.display()
        )
    })
}

/// `n` MNIST test images, evenly spaced, as f64 pixels / 255 with their digit labels.
pub fn load_mnist_points(path: &Path, n: usize) -> anyhow::Result<knn_real::KnnRealData> {
    let test = kinfonce_data::DataConfig::new(path).load(kinfonce_data::Split::Test)?;
    let idx = knn_real::evenly_spaced(test.len(), n)?;
    let dim = test.image_len();
    let mut points = Vec::with_capacity(n * dim);
    let mut labels = Vec::with_capacity(n);
    for &i in &idx {
        points.extend(test.image(i).iter().map(|&v| f64::from(v) / 255.0));
        labels.push(test.labels()[i] as usize);
    }
    Ok(knn_real::KnnRealData {
        points,
        dim,
        labels,
        source: format!("MNIST test, {n} of {} images", test.len()),
    })
}
