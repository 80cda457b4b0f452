//! The random-init baseline is the trainer's own network before its first step: a checkpoint
//! written by a fresh trainer and the encoder drawn by `FrozenEncoder` at initialisation give
//! the same features; the newest checkpoint of a run is what `--run` loads.

use kinfonce_train::features::{
    load_eval_data, EncoderSource, EvalDataOptions, FeatureOptions, FrozenEncoder,
};
use kinfonce_train::trainer::configure_threads;
use kinfonce_train::{Precision, RunOptions, TrainConfig, Trainer};
use std::path::PathBuf;

fn cifar() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10/cifar-10-binary.tar.gz");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

#[test]
fn init_encoder_is_the_trainers_step_zero() {
    let Some(data) = cifar() else { return };
    configure_threads(1);
    let dir = std::env::temp_dir().join(format!("kinfonce-init-baseline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = {
        let mut c = TrainConfig::default();
        c.data.data = data;
        c.data.subset = Some(64);
        c.model.width = 4;
        c.model.hidden_dim = 32;
        c.model.out_dim = 16;
        c.optim.batch = 16;
        c.max_steps = Some(1);
        c.compute.seed = 5;
        c.compute.threads = 1;
        c.monitor.knn_every = 0;
        c.checkpoint.checkpoint_minutes = 0.0;
        c.loss.preset = "simple-sum".into();
        c.compute.precision = Precision::F32;
        c.compute.channels_last = Some(false);
        c
    };
    let mut trainer = Trainer::new(
        config,
        &dir,
        false,
        RunOptions {
            quiet: true,
            provenance: vec![],
            ..Default::default()
        },
    )
    .unwrap();
    trainer.save_checkpoint().unwrap();
    drop(trainer);

    let trained = EncoderSource {
        run_dir: Some(dir.clone()),
        ..Default::default()
    };
    let init = EncoderSource {
        run_dir: Some(dir.clone()),
        init: true,
        ..Default::default()
    };
    let config = trained.config().unwrap();
    let eval = load_eval_data(
        &config,
        &EvalDataOptions {
            subset_train: Some(40),
            ..Default::default()
        },
    )
    .unwrap();
    // The evaluation's train split is the seeded 45,000 (not the pretraining subset), capped.
    assert_eq!(eval.train.len(), 40);
    assert_eq!(eval.test.len(), 10_000);
    let opts = FeatureOptions {
        precision: Precision::F32,
        channels_last: Some(false),
        ..FeatureOptions::default()
    };
    let a = FrozenEncoder::load(&trained, &opts, 32, 3).unwrap();
    assert_eq!(a.step, 0);
    assert!(a.checkpoint.is_some());
    let b = FrozenEncoder::load(&init, &opts, 32, 3).unwrap();
    assert!(b.checkpoint.is_none());
    let fa = a
        .features(&eval.train, &eval.normalization, &opts, &mut |_| {})
        .unwrap();
    let fb = b
        .features(&eval.train, &eval.normalization, &opts, &mut |_| {})
        .unwrap();
    assert_eq!(fa.size(), vec![40, 32]);
    assert!(fa.allclose(&fb, 1e-6, 1e-6, false));
    // Another seed draws another network.
    let mut other = config.clone();
    other.compute.seed = 6;
    let c = FrozenEncoder::load_with_config(&init, other, &opts, 32, 3).unwrap();
    let fc = c
        .features(&eval.train, &eval.normalization, &opts, &mut |_| {})
        .unwrap();
    assert!(!fa.allclose(&fc, 1e-3, 1e-3, false));
    std::fs::remove_dir_all(&dir).unwrap();
}
