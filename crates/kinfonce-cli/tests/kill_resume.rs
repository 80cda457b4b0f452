//! Crash safety of `kinfonce pretrain`: a deterministic run killed with SIGKILL mid-run and
//! continued with `--resume` reproduces the uninterrupted run's per-step losses, and every
//! checkpoint left behind by the kill loads (none is torn).
#![cfg(feature = "torch")]

mod common;
use common::{cifar, WithDeadline};
use kinfonce_train::checkpoint;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tiny deterministic run: 64 images, 4 steps per epoch, 3 epochs, a checkpoint every step;
/// `extra` flags after these.
fn pretrain(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    cmd.arg("pretrain").arg("--data").arg(data);
    for a in [
        "--subset",
        "64",
        "--width",
        "4",
        "--hidden-dim",
        "32",
        "--out-dim",
        "16",
        "--batch",
        "16",
        "--epochs",
        "3",
        "--seed",
        "5",
        "--threads",
        "1",
        "--precision",
        "f32",
        "--channels-last=false",
        "--deterministic",
        "--log-every",
        "1",
        "--knn-every",
        "0",
        "--checkpoint-every",
        "1",
        "--checkpoint-minutes",
        "0",
        "--lr",
        "0.01",
    ] {
        cmd.arg(a);
    }
    cmd.args(extra).arg("--out").arg(out);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// step -> loss of the per-step lines of metrics.jsonl (epoch lines excluded).
fn step_losses(run: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["views_per_s"].is_number() && v.get("alignment").is_none())
        .filter(|v| v.get("online_top1").is_none())
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?)))
        .collect()
}

#[test]
fn sigkill_then_resume_reproduces_the_losses() {
    kill_then_resume(&[]);
}

/// MoCo: the momentum networks and a queue (2 batches of keys, full from step 2 on, so the
/// kill at step 5 leaves one that has wrapped around) come back with the checkpoint.
#[test]
fn sigkill_then_resume_reproduces_the_losses_of_moco() {
    kill_then_resume(&["--method", "moco", "--queue-size", "32", "--bn-splits", "2"]);
}

fn kill_then_resume(extra: &[&str]) {
    let Some(data) = cifar() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let whole = scratch.path().join("whole");
    let killed = scratch.path().join("killed");

    let status = pretrain(&data, &whole, extra).output_within().status;
    assert!(status.success(), "the uninterrupted run failed");
    let reference = step_losses(&whole);
    assert_eq!(reference.len(), 12);

    // Kill as soon as step 5 is logged: the process may be anywhere in step 6 or its checkpoint.
    let mut child = pretrain(&data, &killed, extra).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let logged = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap_or_default();
        if logged.contains("\"step\":5,") || logged.contains("\"step\":5}") {
            break;
        }
        assert!(Instant::now() < deadline, "step 5 never logged");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Whatever the kill interrupted, every listed checkpoint is whole.
    let saved = checkpoint::list(&killed.join("checkpoints")).unwrap();
    assert!(!saved.is_empty(), "no checkpoint survived the kill");
    for (step, path) in &saved {
        let ckpt = checkpoint::load(path).unwrap();
        assert_eq!(ckpt.state.step, *step);
    }
    let resumed_from = saved.last().unwrap().0;
    assert!(resumed_from < 12);

    let status = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .arg("pretrain")
        .arg("--resume")
        .arg(&killed)
        .output_within()
        .status;
    assert!(status.success(), "the resumed run failed");
    let resumed = step_losses(&killed);
    assert_eq!(
        resumed.keys().copied().collect::<Vec<_>>(),
        (1..=12).collect::<Vec<u64>>()
    );
    for (step, want) in &reference {
        let got = resumed[step];
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "step {step}: resumed {got} vs uninterrupted {want} (resumed from step {resumed_from})"
        );
    }
}
