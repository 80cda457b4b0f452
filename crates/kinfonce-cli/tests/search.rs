//! `kinfonce search`: tiny searches on a small synthetic set (ResNet-18 width 8, 8 steps per
//! epoch, 3 epochs): the pruner stops trials and the best trial is the best of the trials' own
//! records; a search killed with SIGKILL and restarted ends as one run straight through; two
//! searches sharing one study give every trial one folder and one final state; bad inputs are
//! one line before any trial.
#![cfg(feature = "torch")]

mod common;
use common::{wait_within, WithDeadline};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A synthetic CIFAR-10-layout set of 1,000 training (900 after the validation split) and 200
/// test images, written once per test.
fn synthetic(dir: &Path) -> PathBuf {
    kinfonce_data::write_synthetic_cifar(&dir.join("data"), 200, 200, 0).unwrap()
}

/// `kinfonce search` over lr and tau of the origin family, 3 epochs per trial, `extra` flags
/// before the trials' pretrain flags.
fn search(data: &Path, out: &Path, trials: usize, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    // The project's environment (with Optuna), wherever the target folder is.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        cmd.env("KINFONCE_PYTHON", venv);
    }
    cmd.args([
        "search",
        "--trials",
        &trials.to_string(),
        "--max-epochs",
        "3",
    ])
    .args(["--seed", "3", "--parallel", "1"])
    .arg("--out")
    .arg(out)
    .args(extra)
    .arg("--")
    .arg("--data")
    .arg(data);
    for a in [
        "--subset",
        "256",
        "--batch",
        "32",
        "--width",
        "8",
        "--hidden-dim",
        "32",
        "--out-dim",
        "16",
        "--precision",
        "f32",
        "--deterministic",
        "--knn-k",
        "20",
        "--knn-bank",
        "256",
        "--checkpoint-every",
        "4",
        "--checkpoint-minutes",
        "0",
        "--seed",
        "1",
    ] {
        cmd.arg(a);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// Runs a search to the end; its stderr.
fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output_within();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "search failed: {stderr}");
    stderr
}

/// trial number -> its row of DIR/trials.json.
fn trials(out: &Path) -> BTreeMap<u64, Value> {
    let text = std::fs::read_to_string(out.join("trials.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["number"].as_u64().unwrap(), t.clone()))
        .collect()
}

/// (epoch, knn_top1) of the epoch records of a trial's metrics.jsonl.
fn epoch_monitor(folder: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(folder.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "epoch")
        .filter_map(|v| Some((v["epoch"].as_u64()?, v["knn_top1"].as_f64()?)))
        .collect()
}

#[test]
fn the_pruner_stops_trials_and_the_best_trial_is_the_best_record() {
    let scratch = tempfile::tempdir().unwrap();
    let data = synthetic(scratch.path());
    let out = scratch.path().join("search");
    run_ok(search(&data, &out, 6, &[]));
    let rows = trials(&out);
    assert_eq!(rows.len(), 6);
    let pruned: Vec<_> = rows.values().filter(|t| t["state"] == "pruned").collect();
    assert!(!pruned.is_empty(), "no trial was stopped early: {rows:?}");
    for t in &pruned {
        // Stopped at a rung: its last reported epoch is below the full 3.
        let last = t["intermediate"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse::<u64>().unwrap())
            .max();
        assert!(last.unwrap() < 3, "a pruned trial ran to the end: {t}");
    }
    // The best complete trial's score is the best final k-NN top-1 in the complete trials'
    // own metrics.jsonl, and the report names it.
    let mut best_in_records: Option<(f64, u64)> = None;
    for (number, t) in &rows {
        if t["state"] != "complete" {
            continue;
        }
        let curve = epoch_monitor(&out.join(t["folder"].as_str().unwrap()));
        let &(epoch, last) = curve.last().unwrap();
        assert_eq!(epoch, 3);
        assert_eq!(t["value"].as_f64().unwrap(), last);
        if best_in_records.is_none_or(|(b, _)| last > b) {
            best_in_records = Some((last, *number));
        }
    }
    let (best, number) = best_in_records.expect("no trial completed");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("Trial {number:03}: "))
            && report.contains(&format!("{best:.4} on the validation split")),
        "the report's best is not trial {number} at {best}:\n{report}"
    );
    assert!(
        report.contains("weighted k-NN (`kinfonce eval knn`, evaluated once): top-1"),
        "{report}"
    );
    for figure in ["ladder.svg", "score-vs-lr.svg", "score-vs-tau.svg"] {
        assert!(out.join(figure).exists(), "{figure} missing");
    }
}

/// The params and final state of every trial number.
fn outcome(out: &Path) -> BTreeMap<u64, (String, String)> {
    trials(out)
        .into_iter()
        .map(|(n, t)| (n, (t["params"].to_string(), t["state"].to_string())))
        .collect()
}

/// Starts the search in `out`, SIGKILLs its process group (the search, its driver and the
/// running trial) once `ready` holds, and starts it again to the end; the restart's stderr.
fn kill_when_then_restart(data: &Path, out: &Path, ready: impl Fn() -> bool) -> String {
    let mut cmd = search(data, out, 5, &[]);
    cmd.stderr(Stdio::null()).process_group(0);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    while !ready() {
        assert!(Instant::now() < deadline, "the kill point never came");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the search ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let group = child.id() as i32;
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .status()
        .unwrap();
    child.wait().unwrap();
    run_ok(search(data, out, 5, &[]))
}

#[test]
fn a_killed_search_restarted_ends_as_one_run_straight_through() {
    let scratch = tempfile::tempdir().unwrap();
    let data = synthetic(scratch.path());
    let straight = scratch.path().join("straight");
    run_ok(search(&data, &straight, 5, &[]));

    // Killed at trial 3's first metrics line: the trial had no checkpoint and starts again.
    let early = scratch.path().join("early");
    let first_line = early.join("trials/003/metrics.jsonl");
    let restart = kill_when_then_restart(&data, &early, || {
        std::fs::read_to_string(&first_line).is_ok_and(|t| t.contains('\n'))
    });
    assert!(
        restart.contains("taking over trial 3") && !restart.contains("--resume"),
        "trial 3 was not started again: {restart}"
    );
    assert_eq!(outcome(&early), outcome(&straight));

    // Killed after trial 3's first finished checkpoint: the trial resumes from it.
    let late = scratch.path().join("late");
    let checkpoints = late.join("trials/003/checkpoints");
    let restart = kill_when_then_restart(&data, &late, || {
        std::fs::read_dir(&checkpoints).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
        })
    });
    let resumed = format!("pretrain --resume {}", late.join("trials/003").display());
    assert!(
        restart.contains(&resumed),
        "trial 3 did not resume: {restart}"
    );
    let log = std::fs::read_to_string(late.join("trials/003/pretrain.log")).unwrap_or_default();
    assert_eq!(outcome(&late), outcome(&straight), "trial 3: {log}");
}

#[test]
fn two_searches_on_one_study_give_each_trial_one_folder_and_one_state() {
    let scratch = tempfile::tempdir().unwrap();
    let data = synthetic(scratch.path());
    let storage = format!("journal:{}", scratch.path().join("study.log").display());
    let (a, b) = (scratch.path().join("a"), scratch.path().join("b"));
    let first = search(&data, &a, 4, &["--storage", &storage]).spawn_in_group();
    let second = search(&data, &b, 4, &["--storage", &storage]).spawn_in_group();
    for child in [first, second] {
        let out = wait_within(child, "a kinfonce process");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The study as the search that ended last saw it (the other may have ended while a trial
    // of this one still ran).
    let modified = |d: &Path| {
        std::fs::metadata(d.join("trials.json"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let last = if modified(&a) >= modified(&b) { &a } else { &b };
    let rows = trials(last);
    assert!(rows.len() >= 4, "{rows:?}");
    for (number, t) in &rows {
        let state = t["state"].as_str().unwrap();
        assert!(
            state == "complete" || state == "pruned",
            "trial {number}: {state}"
        );
        let folder = format!("trials/{number:03}");
        let holders = [&a, &b]
            .iter()
            .filter(|d| d.join(&folder).join("metrics.jsonl").exists())
            .count();
        assert_eq!(holders, 1, "trial {number} has {holders} folders");
    }
}

/// Each mistake is one line naming what is wrong, and no trial starts.
#[test]
fn bad_inputs_are_one_line_before_any_trial() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("no-data");
    let space = |name: &str, text: &str| {
        let path = scratch.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cases: [(Vec<String>, &str); 4] = [
        (
            vec![
                "--space".into(),
                space("unknown.toml", "[temperature]\nlow = 0.1\nhigh = 1.0")
                    .display()
                    .to_string(),
            ],
            "unknown parameter `temperature`",
        ),
        (
            vec![
                "--space".into(),
                space("empty.toml", "[tau]\nlow = 0.5\nhigh = 0.1")
                    .display()
                    .to_string(),
            ],
            "parameter `tau`: empty range",
        ),
        (
            vec![
                "--space".into(),
                space("log.toml", "[lr]\nlow = 0.0\nhigh = 0.1\nlog = true")
                    .display()
                    .to_string(),
            ],
            "parameter `lr`: a log range must lie above 0",
        ),
        (
            vec![
                "--storage".into(),
                "sqlite:////nonexistent-folder/study.db".into(),
            ],
            "storage sqlite:////nonexistent-folder/study.db cannot be opened",
        ),
    ];
    for (i, (flags, message)) in cases.iter().enumerate() {
        let out_dir = scratch.path().join(format!("s{i}"));
        let mut cmd = search(
            &data,
            &out_dir,
            2,
            &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let out = cmd.output_within();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(message), "{stderr}");
        assert!(
            !out_dir.join("trials/000").exists(),
            "a trial started: {stderr}"
        );
    }
}
