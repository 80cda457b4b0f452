//! Reads the real data sets in `../shared/data` (skipped with a message when absent).

use std::path::PathBuf;
use std::time::Instant;

use kinfonce_data::{DataConfig, DataFormat, Split};

fn shared(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

#[test]
fn cifar10_archive_splits_labels_and_means() {
    let Some(dir) = shared("cifar10") else { return };
    let archive = dir.join("cifar-10-binary.tar.gz");
    assert_eq!(DataFormat::detect(&dir).unwrap(), DataFormat::Cifar10);
    assert_eq!(DataFormat::detect(&archive).unwrap(), DataFormat::Cifar10);
    let t0 = Instant::now();
    let splits = DataConfig::new(&archive).load_splits(true).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("read the full CIFAR-10 archive (train + test) in {secs:.2} s");
    let test = splits.test.unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(&test.labels()[..12], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9]);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    assert_eq!(test.class_names()[3], "cat");
    let mean = test.channel_mean();
    for (m, want) in mean.iter().zip([0.4941, 0.4851, 0.4504]) {
        assert!((m - want).abs() < 5e-4, "test mean {mean:?}");
    }
    assert_eq!(splits.train.len(), 45_000);
    assert_eq!(splits.val.len(), 5_000);
    assert_eq!(splits.val.class_counts(), vec![500; 10]);
    assert_eq!(splits.train.class_counts(), vec![4500; 10]);
}

#[test]
fn cifar10_lossless_fixture_matches_archive_labels() {
    let Some(dir) = shared("cifar10/lossless_test_first1000.bin") else {
        return;
    };
    let d = DataConfig::new(&dir).load(Split::Test).unwrap();
    assert_eq!(d.len(), 1000);
    assert_eq!(&d.labels()[..12], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9]);
    assert_eq!((d.height(), d.width(), d.channels()), (32, 32, 3));
}

#[test]
fn mnist_gz_counts_and_rgb() {
    let Some(dir) = shared("mnist") else { return };
    let mut cfg = DataConfig::new(&dir);
    assert_eq!(cfg.resolved_format().unwrap(), DataFormat::Mnist);
    let test = cfg.load(Split::Test).unwrap();
    assert_eq!(
        (test.len(), test.height(), test.width(), test.channels()),
        (10_000, 28, 28, 1)
    );
    // The official first test digits.
    assert_eq!(&test.labels()[..5], &[7, 2, 1, 0, 4]);
    assert!(
        (test.channel_mean()[0] - 0.1325).abs() < 2e-3,
        "{:?}",
        test.channel_mean()
    );
    cfg.rgb = true;
    cfg.subset = Some(1000);
    let train = cfg.load(Split::Train).unwrap();
    assert_eq!((train.len(), train.channels()), (1000, 3));
    assert_eq!(train.class_counts(), vec![100; 10]);
}
