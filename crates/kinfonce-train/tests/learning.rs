//! Pretraining learns on real CIFAR-10: short runs lower the loss and lift the k-NN accuracy of
//! the encoder above that of the same network at initialisation (same seed). The full-size check
//! (each preset, width 16, 10k images) is the CIFAR-10 study in docs/results/.
//!
//! Each run is deterministic on one machine, but libtorch's kernels differ by instruction set
//! (AVX2, AVX-512, AMX), so another kind of CPU follows another trajectory: in effect another
//! draw. The claim is therefore the median over three seeds, with a margin measured across
//! draws. Settings below, 8 runs (seeds 0-3, on AVX-512 + avx512_bf16 and with libtorch held to
//! AVX2 by ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): the k-NN gain per run was 0.026 to
//! 0.068 and the median over seeds 0-2 0.053 and 0.048; the loss fell by 0.43 to 1.24. With 3
//! epochs instead of 6, single runs gained -0.006 to 0.070, too close to zero to test.

use kinfonce_train::trainer::configure_threads;
use kinfonce_train::{Precision, RunOptions, Summary, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

/// 1,000 images, 6 epochs of 15 steps, width 8, f32.
fn short_run(data: &Path, seed: u64) -> Summary {
    let dir = std::env::temp_dir().join(format!("kinfonce-learning-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = {
        let mut c = TrainConfig::default();
        c.data.data = data.to_path_buf();
        c.data.subset = Some(1000);
        c.optim.epochs = Some(6);
        c.optim.batch = 64;
        c.model.width = 8;
        c.model.hidden_dim = 256;
        c.loss.preset = "simple-sum".into();
        c.compute.seed = seed;
        c.compute.threads = 1;
        c.compute.deterministic = true;
        c.monitor.knn_bank = 2000;
        c.monitor.knn_queries = 1000;
        c.checkpoint.checkpoint_minutes = 0.0;
        c.compute.precision = Precision::F32;
        c.compute.channels_last = Some(false);
        c
    };
    let options = RunOptions {
        quiet: true,
        provenance: vec![],
        ..Default::default()
    };
    let summary = Trainer::new(config, &dir, false, options)
        .unwrap()
        .run()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    summary
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn short_runs_lower_the_loss_and_lift_knn_accuracy_in_the_median_over_seeds() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10/cifar-10-binary.tar.gz");
    if !data.exists() {
        eprintln!("skipping: {} not found", data.display());
        return;
    }
    configure_threads(1);
    let runs: Vec<Summary> = (0..3).map(|seed| short_run(&data, seed)).collect();
    let report: Vec<String> = runs
        .iter()
        .map(|s| {
            format!(
                "loss {:.3} -> {:.3}, k-NN {:.3} -> {:.3}",
                s.first_loss.unwrap(),
                s.final_loss,
                s.knn_top1_init.unwrap(),
                s.knn_top1.unwrap()
            )
        })
        .collect();
    let loss_drop = median(
        runs.iter()
            .map(|s| s.first_loss.unwrap() - s.final_loss)
            .collect(),
    );
    let knn_gain = median(
        runs.iter()
            .map(|s| s.knn_top1.unwrap() - s.knn_top1_init.unwrap())
            .collect(),
    );
    assert!(loss_drop > 0.3, "median loss drop {loss_drop}: {report:#?}");
    assert!(knn_gain >= 0.02, "median k-NN gain {knn_gain}: {report:#?}");
}
