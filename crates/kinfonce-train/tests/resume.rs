//! End-to-end training on a tiny real CIFAR-10 subset: exact resume, bf16 + channels-last,
//! the run folder's contents and the clear refusal to overwrite a run.

use kinfonce_train::checkpoint;
use kinfonce_train::metrics::{read_records, Record};
use kinfonce_train::trainer::{configure_threads, read_run_config};
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

fn tiny(data: PathBuf) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.data.data = data;
    c.data.subset = Some(64);
    c.model.width = 4;
    c.model.hidden_dim = 32;
    c.model.out_dim = 16;
    c.optim.batch = 16;
    c.optim.epochs = Some(2);
    c.compute.seed = 3;
    c.compute.threads = 1;
    c.compute.deterministic = true;
    c.monitor.log_every = 1;
    c.monitor.knn_every = 0;
    c.checkpoint.checkpoint_minutes = 0.0;
    c.optim.lr = Some(1e-2);
    // Pinned, so the trajectory does not depend on the CPU's bf16 support.
    c.compute.precision = Precision::F32;
    c.compute.channels_last = Some(false);
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kinfonce-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn quiet() -> RunOptions {
    RunOptions {
        quiet: true,
        provenance: vec![],
        ..Default::default()
    }
}

#[test]
fn resume_continues_the_same_trajectory() {
    let Some(data) = cifar() else { return };
    configure_threads(1);
    // Uninterrupted: 2 epochs of 4 steps.
    let a_dir = scratch("a");
    let mut a = Trainer::new(tiny(data.clone()), &a_dir, false, quiet()).unwrap();
    assert_eq!(a.steps_per_epoch(), 4);
    let sa = a.run().unwrap();
    assert_eq!(sa.losses.len(), 8);
    assert!(sa.losses.iter().all(|l| l.is_finite()));

    // Stopped mid-epoch after 3 steps (same schedule), then resumed.
    let b_dir = scratch("b");
    let mut first = tiny(data);
    first.max_steps = Some(3);
    let sb1 = Trainer::new(first, &b_dir, false, quiet())
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(sb1.losses, sa.losses[..3]);
    let mut saved = read_run_config(&b_dir).unwrap();
    saved.max_steps = None;
    let sb2 = Trainer::new(saved, &b_dir, true, quiet())
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(sb2.losses.len(), 5);
    for (k, (x, y)) in sb2.losses.iter().zip(&sa.losses[3..]).enumerate() {
        assert!(
            (x - y).abs() <= 1e-6 * y.abs(),
            "step {}: resumed {x} vs uninterrupted {y}",
            k + 4
        );
    }
    // Same final weights.
    let wa = checkpoint::load(
        &checkpoint::latest(&a_dir.join("checkpoints"))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let wb = checkpoint::load(
        &checkpoint::latest(&b_dir.join("checkpoints"))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(wa.state.step, 8);
    assert_eq!(wb.state.step, 8);
    for (name, t) in &wa.encoder {
        let diff = f64::try_from((t - &wb.encoder[name]).abs().max()).unwrap();
        assert!(diff <= 1e-6, "{name} differs by {diff}");
    }
    // metrics.jsonl, read back through its one record type, holds every step once and each
    // completed epoch once.
    let records = read_records(&b_dir.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Step { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<u64>>());
    let epochs: Vec<(u64, u64)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Epoch(e) if !e.partial_epoch => Some((e.epoch, e.step)),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, [(1, 4), (2, 8)]);
    for f in ["config.toml", "metrics.csv", "report.md", "loss.svg"] {
        assert!(b_dir.join(f).is_file(), "{f} missing");
    }
    // Encoder keys are torchvision's.
    assert!(wa.encoder.contains_key("layer4.1.bn2.running_var"));
    assert!(wa.head.contains_key("projection.model.3.weight"));
    // A second run into the same folder is refused.
    let err = Trainer::new(tiny(PathBuf::from("unused")), &a_dir, false, quiet())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already holds a run"), "{err}");
    let _ = std::fs::remove_dir_all(&a_dir);
    let _ = std::fs::remove_dir_all(&b_dir);
}

#[test]
fn bf16_channels_last_with_knn_monitor() {
    let Some(data) = cifar() else { return };
    let dir = scratch("bf16");
    let config = {
        let mut c = tiny(data);
        c.compute.precision = Precision::Bf16;
        c.compute.channels_last = Some(true);
        // Width 8: narrower networks cannot run channels-last where oneDNN runs AVX2 code.
        c.model.width = 8;
        c.max_steps = Some(2);
        c.monitor.knn_every = 1;
        c.monitor.knn_bank = 64;
        c.monitor.knn_queries = 100;
        c.loss.preset = "simple-sum".into();
        c.compute.threads = 2;
        c
    };
    let summary = Trainer::new(config, &dir, false, quiet())
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.losses.len(), 2);
    assert!(summary.losses.iter().all(|l| l.is_finite() && *l > 0.0));
    let acc = summary.knn_top1.unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(summary.knn_top1_init.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
