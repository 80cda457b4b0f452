//! Pretraining learns on real CIFAR-10: a short deterministic run lowers the loss and lifts the
//! k-NN accuracy of the encoder at least 3 points above that of the same network at
//! initialisation (same seed). The full-size check (each preset, width 16, 10k images) is the
//! CIFAR-10 study in docs/results/.

use kinfonce_train::trainer::configure_threads;
use kinfonce_train::{Precision, RunOptions, TrainConfig, Trainer};
use std::path::PathBuf;

#[test]
fn a_short_run_lowers_the_loss_and_lifts_knn_accuracy() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10/cifar-10-binary.tar.gz");
    if !data.exists() {
        eprintln!("skipping: {} not found", data.display());
        return;
    }
    configure_threads(1);
    let dir = std::env::temp_dir().join(format!("kinfonce-learning-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 1,000 images, 3 epochs of 15 steps; deterministic, so the outcome is a fixed number.
    let config = TrainConfig {
        data,
        subset: 1000,
        epochs: 3,
        batch: 64,
        width: 8,
        hidden_dim: 256,
        preset: "simple-sum".into(),
        threads: 1,
        deterministic: true,
        knn_bank: 2000,
        knn_queries: 1000,
        checkpoint_minutes: 0.0,
        precision: Precision::F32,
        channels_last: Some(false),
        ..TrainConfig::default()
    };
    let options = RunOptions {
        quiet: true,
        provenance: vec![],
    };
    let summary = Trainer::new(config, &dir, false, options)
        .unwrap()
        .run()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let (first, last) = (summary.first_loss.unwrap(), summary.final_loss);
    assert!(last < first - 0.3, "loss {first} -> {last}");
    let (init, trained) = (summary.knn_top1_init.unwrap(), summary.knn_top1.unwrap());
    assert!(
        trained >= init + 0.03,
        "k-NN top-1 {init} at initialisation -> {trained} after training"
    );
}
