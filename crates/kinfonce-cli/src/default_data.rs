//! Where `kinfonce pretrain` finds its data when no `--data` is given, so the demo always
//! completes: CIFAR-10 from `$KINFONCE_DATA` or the cache folder, else a download (checksum
//! verified), else, offline (or with `KINFONCE_OFFLINE` set), the built-in synthetic set.

use kinfonce_data::fetch::{self, FetchOptions};
use kinfonce_data::{write_synthetic_cifar, DataFormat};
use std::path::PathBuf;
use std::time::Duration;

/// Images per training batch file and test images of the synthetic set (12,000 / 2,000: enough
/// for the main job's `--subset 10000` after the validation split).
const SYNTHETIC_TRAIN_PER_BATCH: usize = 2_400;
const SYNTHETIC_TEST: usize = 2_000;

/// The data set already on this machine that [`default_data`] would train on: `$KINFONCE_DATA`
/// or CIFAR-10 in the cache folder; `None` when it would download.
pub(crate) fn local_data() -> anyhow::Result<Option<PathBuf>> {
    let cache = fetch::default_cache_dir();
    let cifar10 = fetch::known_dataset("cifar10")?;
    if let Some(env) = std::env::var_os("KINFONCE_DATA").map(PathBuf::from) {
        // A data file or a folder in a known layout (a folder of loose images is more likely
        // an empty cache than a data set: name those with --data).
        let data_set = env.is_file()
            || matches!(DataFormat::detect(&env), Ok(f) if f != DataFormat::ImageFolder);
        if data_set && fetch::locate(cifar10, &env).is_none() {
            return Ok(Some(env));
        }
    }
    Ok(fetch::locate(cifar10, &cache))
}

/// The data set to train on when none was named. `$KINFONCE_DATA` may name a data set
/// (a file, or a folder in a known layout other than a plain image folder) or the cache
/// folder holding `cifar10/`.
pub(crate) fn default_data() -> anyhow::Result<PathBuf> {
    if let Some(found) = local_data()? {
        return Ok(found);
    }
    let cache = fetch::default_cache_dir();
    let cifar10 = fetch::known_dataset("cifar10")?;
    let fetched = if std::env::var_os("KINFONCE_OFFLINE").is_some() {
        Err("KINFONCE_OFFLINE is set".to_string())
    } else {
        eprintln!(
            "kinfonce: no CIFAR-10 in {}; downloading it (about 170 MB, resumable)",
            cache.display()
        );
        let options = FetchOptions {
            timeout: Duration::from_secs(15),
            ..FetchOptions::default()
        };
        fetch::fetch_dataset(cifar10, &cache, &options).map_err(|e| e.to_string())
    };
    match fetched {
        Ok(report) => Ok(report.data_path),
        Err(err) => {
            let dir = cache.join("synthetic");
            eprintln!(
                "kinfonce: could not download CIFAR-10 ({err}).\n\
                 kinfonce: offline, so this run uses the built-in synthetic set instead: 10 classes \
                 of procedurally drawn shapes, 12,000 training and 2,000 test images of 32x32, in {}. \
                 Give --data PATH to train on real images.",
                dir.display()
            );
            Ok(write_synthetic_cifar(
                &dir,
                SYNTHETIC_TRAIN_PER_BATCH,
                SYNTHETIC_TEST,
                0,
            )?)
        }
    }
}
