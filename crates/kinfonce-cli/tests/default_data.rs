//! With no data named, no CIFAR-10 in the cache and no network, `kinfonce pretrain` says so and
//! trains on the built-in synthetic set, so the demo always completes.
#![cfg(feature = "torch")]

use std::process::Command;

#[test]
fn offline_without_data_trains_on_the_synthetic_set() {
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // Run two levels down, so that no ../shared/data/ is within reach.
    let cwd = scratch.path().join("work/here");
    std::fs::create_dir_all(&cwd).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .current_dir(&cwd)
        .env("KINFONCE_DATA", &cache)
        .env("KINFONCE_OFFLINE", "1")
        .args([
            "pretrain",
            "--width",
            "4",
            "--hidden-dim",
            "16",
            "--out-dim",
            "8",
            "--batch",
            "16",
            "--threads",
            "1",
            "--max-steps",
            "3",
            "--knn-bank",
            "200",
            "--knn-queries",
            "100",
            "--checkpoint-minutes",
            "0",
            "--out",
            "run",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("built-in synthetic set"), "{stderr}");
    assert!(stdout.contains("k-NN top-1"), "{stdout}");
    let batches = cache.join("synthetic/cifar-10-batches-bin");
    for f in ["data_batch_5.bin", "test_batch.bin", "batches.meta.txt"] {
        assert!(batches.join(f).is_file(), "{f} missing");
    }
    let config = std::fs::read_to_string(cwd.join("run/config.toml")).unwrap();
    assert!(config.contains("synthetic"), "{config}");
}
