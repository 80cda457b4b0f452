//! Pretraining learns on real CIFAR-10: short runs lower the loss and lift the k-NN accuracy of
//! the encoder above that of the same network at initialisation (same seed), with SimCLR and
//! with MoCo. The full-size check (each preset, width 16, 10k images) is the CIFAR-10 study in
//! docs/results/.
//!
//! Each run is deterministic on one machine, but libtorch's kernels differ by instruction set
//! (AVX2, AVX-512, AMX), so another kind of CPU follows another trajectory: in effect another
//! draw. The claim is therefore the median over three seeds, with a margin measured across
//! draws. Settings below, 8 runs (seeds 0-3, on AVX-512 + avx512_bf16 and with libtorch held to
//! AVX2 by ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): the k-NN gain per run was 0.026 to
//! 0.068 and the median over seeds 0-2 0.053 and 0.048; the loss fell by 0.43 to 1.24. With 3
//! epochs instead of 6, single runs gained -0.006 to 0.070, too close to zero to test.

use kinfonce_train::config::{run_preset, Method};
use kinfonce_train::trainer::configure_threads;
use kinfonce_train::{Precision, RunOptions, Summary, TrainConfig, Trainer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// 1,000 images, 6 epochs of 15 steps, width 8, f32, then `adjust`; the summary and the loss
/// of every step.
fn short_run(
    data: &Path,
    seed: u64,
    adjust: impl Fn(&mut TrainConfig),
) -> (Summary, BTreeMap<u64, f64>) {
    // A folder of its own: the tests of this file run at the same time.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "kinfonce-learning-{}-{}-{seed}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
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
        c.monitor.log_every = 1;
        adjust(&mut c);
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
    let losses = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (summary, losses)
}

fn cifar() -> Option<PathBuf> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10/cifar-10-binary.tar.gz");
    if !data.exists() {
        eprintln!("skipping: {} not found", data.display());
        return None;
    }
    Some(data)
}

fn report(runs: &[(Summary, BTreeMap<u64, f64>)]) -> Vec<String> {
    runs.iter()
        .map(|(s, _)| {
            format!(
                "loss {:.3} -> {:.3}, k-NN {:.3} -> {:.3}",
                s.first_loss.unwrap(),
                s.final_loss,
                s.knn_top1_init.unwrap(),
                s.knn_top1.unwrap()
            )
        })
        .collect()
}

fn knn_gain(runs: &[(Summary, BTreeMap<u64, f64>)]) -> f64 {
    median(
        runs.iter()
            .map(|(s, _)| s.knn_top1.unwrap() - s.knn_top1_init.unwrap())
            .collect(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn short_runs_lower_the_loss_and_lift_knn_accuracy_in_the_median_over_seeds() {
    let Some(data) = cifar() else { return };
    configure_threads(1);
    let runs: Vec<_> = (0..3)
        .map(|seed| {
            short_run(&data, seed, |c| {
                c.loss.preset = "simple-sum".into();
            })
        })
        .collect();
    let report = report(&runs);
    let loss_drop = median(
        runs.iter()
            .map(|(s, _)| s.first_loss.unwrap() - s.final_loss)
            .collect(),
    );
    let knn_gain = knn_gain(&runs);
    assert!(loss_drop > 0.3, "median loss drop {loss_drop}: {report:#?}");
    assert!(knn_gain >= 0.02, "median k-NN gain {knn_gain}: {report:#?}");
}

/// MoCo with the `moco-sum` preset's schedule (cosine per epoch, no warmup), network (no stem
/// ReLU, PyTorch's default initialisation) and views (lightly's MoCo v2); scaled down for the
/// budget: a queue of 4 batches, 4 batch-norm splits, momentum 0.9 so that the keys follow
/// within a short run, 12 epochs, and the file's Adam at its default lr. (Passes with them on
/// AVX-512; the figures below were measured with the earlier warmup, stem ReLU, Kaiming
/// initialisation and SimCLR views.) Measured (seeds 0-2, AVX-512 and libtorch held to
/// AVX2): k-NN gains 0.030 to 0.081, medians 0.056 and 0.066; the loss at the end 0.3 to 0.6
/// below the loss at step 5, the first step whose queue holds no initial random key (the loss
/// rises while the queue fills with real keys, so the first step is no reference).
#[test]
fn short_moco_runs_lift_knn_accuracy_and_lower_the_loss_of_a_full_queue() {
    let Some(data) = cifar() else { return };
    configure_threads(1);
    let (queue, batch) = (256, 64);
    let runs: Vec<_> = (0..3)
        .map(|seed| {
            short_run(&data, seed, |c| {
                let preset: TrainConfig = toml::Value::Table(run_preset("moco-sum").unwrap())
                    .try_into()
                    .unwrap();
                c.optim.schedule = preset.optim.schedule;
                c.model.stem = preset.model.stem;
                c.model.stem_relu = preset.model.stem_relu;
                c.model.init = preset.model.init;
                c.data.augment = preset.data.augment;
                c.method.method = Method::Moco;
                c.method.queue_size = queue;
                c.method.bn_splits = 4;
                c.method.moco_momentum = 0.9;
                c.optim.epochs = Some(12);
            })
        })
        .collect();
    let report = report(&runs);
    let refreshed = (queue / batch) as u64 + 1;
    let loss_drop = median(
        runs.iter()
            .map(|(s, losses)| losses[&refreshed] - s.final_loss)
            .collect(),
    );
    let knn_gain = knn_gain(&runs);
    assert!(knn_gain >= 0.03, "median k-NN gain {knn_gain}: {report:#?}");
    assert!(
        loss_drop > 0.1,
        "median loss drop from step {refreshed}: {loss_drop}: {report:#?}"
    );
}
