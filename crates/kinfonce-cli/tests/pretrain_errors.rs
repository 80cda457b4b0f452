//! Bad input to `kinfonce pretrain` ends with exit code 1 and a message that names the file,
//! record, parameter or step at fault; nothing already saved is lost.
#![cfg(feature = "torch")]

mod common;
use common::{cifar, wait_within, WithDeadline};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `kinfonce pretrain` with a tiny model (width 4, batch 8, one thread, f32, no monitor).
fn tiny_pretrain() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    cmd.arg("pretrain").args([
        "--width",
        "4",
        "--hidden-dim",
        "16",
        "--out-dim",
        "8",
        "--batch",
        "8",
        "--threads",
        "1",
        "--knn-every",
        "0",
        "--precision",
        "f32",
    ]);
    cmd
}

/// Runs the tiny `kinfonce pretrain` with `args` and time-based checkpoints off; returns
/// (exit code, stderr).
fn pretrain(args: &[&str], out: &Path) -> (i32, String) {
    let output = tiny_pretrain()
        .args(["--checkpoint-minutes", "0"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output_within();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_fails(args: &[&str], out: &Path, wanted: &[&str]) {
    let (code, stderr) = pretrain(args, out);
    assert_eq!(code, 1, "exit code for {args:?}; stderr: {stderr}");
    for w in wanted {
        assert!(stderr.contains(w), "{args:?}: `{w}` not in: {stderr}");
    }
}

#[test]
fn bad_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);

    // A CIFAR batch file whose length is not a whole number of 3,073-byte records.
    std::fs::write(p("data_batch_1.bin"), vec![0u8; 3073 * 2 + 100]).unwrap();
    let bad_len = p("data_batch_1.bin");
    assert_fails(
        &["--data", bad_len.to_str().unwrap(), "--format", "cifar10"],
        &p("run1"),
        &["data_batch_1.bin"],
    );

    // An ImageFolder with a file that is not an image.
    let folder = p("folder");
    std::fs::create_dir_all(folder.join("cats")).unwrap();
    std::fs::create_dir_all(folder.join("dogs")).unwrap();
    let png = |path: PathBuf, shade: u8| {
        image::RgbImage::from_pixel(16, 16, image::Rgb([shade, 0, 0]))
            .save(path)
            .unwrap()
    };
    png(folder.join("cats/a.png"), 10);
    png(folder.join("dogs/b.png"), 200);
    std::fs::write(folder.join("dogs/notes.png"), b"not an image").unwrap();
    assert_fails(
        &[
            "--data",
            folder.to_str().unwrap(),
            "--format",
            "imagefolder",
        ],
        &p("run2"),
        &["notes.png"],
    );

    // A class folder without images.
    std::fs::remove_file(folder.join("dogs/notes.png")).unwrap();
    std::fs::create_dir_all(folder.join("birds")).unwrap();
    assert_fails(
        &[
            "--data",
            folder.to_str().unwrap(),
            "--format",
            "imagefolder",
        ],
        &p("run3"),
        &["birds"],
    );

    // A truncated copy of the official archive.
    if let Some(archive) = cifar() {
        let bytes = std::fs::read(&archive).unwrap();
        let cut = p("cifar-10-binary.tar.gz");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
        assert_fails(
            &["--data", cut.to_str().unwrap()],
            &p("run4"),
            &["cifar-10-binary.tar.gz"],
        );
    }
}

#[test]
fn bad_settings_are_named() {
    let Some(data) = cifar() else { return };
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_fails(
        &["--data", data, "--preset", "gaussain"],
        &dir.path().join("a"),
        &["gaussain", "simple-sum"],
    );
    assert_fails(
        &["--data", data, "--device", "cuda:3"],
        &dir.path().join("b"),
        &["cuda:3"],
    );
    assert_fails(
        &["--data", data, "--method", "mocco"],
        &dir.path().join("m1"),
        &["`method`", "mocco"],
    );
    assert_fails(
        &["--data", data, "--method", "moco", "--bn-splits", "3"],
        &dir.path().join("m2"),
        &["`bn_splits` = 3", "divisor of `batch` (8)"],
    );
    assert_fails(
        &["--data", data, "--method", "moco", "--queue-size", "20"],
        &dir.path().join("m3"),
        &["`queue_size` = 20", "a multiple of the global batch (8)"],
    );
    assert_fails(
        &[
            "--data",
            data,
            "--subset",
            "64",
            "--max-steps",
            "2",
            "--gamma",
            "2.5",
        ],
        &dir.path().join("c"),
        &["gamma"],
    );
}

#[test]
fn a_diverging_run_stops_at_the_step_and_keeps_the_last_good_checkpoint() {
    let Some(data) = cifar() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (code, stderr) = pretrain(
        &[
            "--data",
            data.to_str().unwrap(),
            "--subset",
            "64",
            "--max-steps",
            "8",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--checkpoint-every",
            "1",
            "--deterministic",
        ],
        &run,
    );
    assert_eq!(code, 1, "{stderr}");
    let step: u64 = stderr
        .split("at step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no step named in: {stderr}"));
    assert!(stderr.contains("loss became"), "{stderr}");
    if step > 1 {
        // Every step before the bad one was checkpointed, and the newest is named and loads.
        let kept = run
            .join("checkpoints")
            .join(format!("step-{:08}", step - 1));
        let listed = kinfonce_train::checkpoint::latest(&run.join("checkpoints"))
            .unwrap()
            .unwrap();
        assert_eq!(listed.file_name(), kept.file_name(), "{stderr}");
        assert!(stderr.contains(&*listed.to_string_lossy()), "{stderr}");
        kinfonce_train::checkpoint::load(&listed).unwrap();
    }
}

/// Every file of a run folder with its bytes, to show that nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked at"),
        "a panic reached the user: {stderr}"
    );
}

/// Where oneDNN runs its AVX2 code (here held there, as on an AVX2-only CPU), a network
/// narrower than 8 channels never trains in channels-last, whose backward crashes libtorch
/// there: asked for, it is refused in one line naming the defect, before anything is written; a
/// run stored in channels-last (as on an AVX-512 machine) resumes in the contiguous layout.
#[test]
fn narrow_channels_last_is_refused_or_switched_where_onednn_avx2_would_crash() {
    let Some(data) = cifar() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = data.to_str().unwrap();
    let held = |cmd: &mut Command| {
        cmd.env("ONEDNN_MAX_CPU_ISA", "AVX2")
            .env("ATEN_CPU_CAPABILITY", "avx2")
            .output_within()
    };
    let out = held(
        tiny_pretrain()
            .args(["--data", data, "--subset", "64", "--max-steps", "1"])
            .args(["--checkpoint-minutes", "0", "--channels-last", "--out"])
            .arg(&run),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--channels-last refused") && stderr.contains("oneDNN 3.10.2"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );
    assert!(
        !run.join("config.toml").exists(),
        "a refused run wrote its folder"
    );

    // A run stored in channels-last: made contiguous here, then marked as an AVX-512 machine
    // would have stored it.
    let (code, stderr) = pretrain(
        &[
            "--data",
            data,
            "--subset",
            "64",
            "--epochs",
            "1",
            "--max-steps",
            "1",
            "--channels-last=false",
        ],
        &run,
    );
    assert_eq!(code, 0, "{stderr}");
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("channels_last = false"), "{text}");
    std::fs::write(
        &config,
        text.replace("channels_last = false", "channels_last = true"),
    )
    .unwrap();
    let out = held(Command::new(env!("CARGO_BIN_EXE_kinfonce")).args([
        "pretrain",
        "--resume",
        run.to_str().unwrap(),
        "--max-steps",
        "2",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("switched to the contiguous layout") && stderr.contains("oneDNN"),
        "{stderr}"
    );
    let steps = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(steps.contains("\"step\":2"), "{steps}");
}

#[test]
fn a_finished_run_resumes_to_no_change_and_a_folder_without_checkpoint_says_what_to_do() {
    let Some(data) = cifar() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = data.to_str().unwrap();
    let (code, stderr) = pretrain(
        &["--data", data, "--subset", "64", "--max-steps", "2"],
        &run,
    );
    assert_eq!(code, 0, "{stderr}");
    let before = snapshot(&run);
    let resumed = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .args(["pretrain", "--resume", run.to_str().unwrap()])
        .output_within();
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert_eq!(resumed.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("complete"), "{stdout}");
    assert!(
        snapshot(&run) == before,
        "resuming a finished run changed its folder"
    );

    // A run that stopped before its first checkpoint: both a resume and a new run into the
    // folder say how to start again.
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let resumed = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .args(["pretrain", "--resume", run.to_str().unwrap()])
        .output_within();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("before its first checkpoint") && stderr.contains(".abandoned &&"),
        "{stderr}"
    );
    let (code, stderr) = pretrain(
        &["--data", data, "--subset", "64", "--max-steps", "2"],
        &run,
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(".abandoned &&"), "{stderr}");
}

#[test]
fn a_damaged_checkpoint_is_refused_by_name_and_the_printed_command_resumes_from_an_intact_one() {
    let Some(data) = cifar() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = data.to_str().unwrap();
    // One epoch of 8 steps, stopped at step 4: checkpoints at steps 2 and 4.
    let (code, stderr) = pretrain(
        &[
            "--data",
            data,
            "--subset",
            "64",
            "--epochs",
            "1",
            "--max-steps",
            "4",
            "--checkpoint-every",
            "2",
        ],
        &run,
    );
    assert_eq!(code, 0, "{stderr}");
    let newest = run.join("checkpoints/step-00000004");
    let file = newest.join("encoder.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let resume = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kinfonce"))
            .args([
                "pretrain",
                "--resume",
                run.to_str().unwrap(),
                "--max-steps",
                "6",
            ])
            .args(extra)
            .output_within()
    };
    let out = resume(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    no_panic(&stderr);
    let mv = format!("mv {0} {0}.damaged", newest.display());
    assert!(
        stderr.contains("encoder.safetensors") && stderr.contains(&mv),
        "{stderr}"
    );
    assert!(
        stderr.contains("step-00000002"),
        "the intact one is named: {stderr}"
    );
    std::fs::rename(&newest, newest.with_extension("damaged")).unwrap();
    let out = resume(&["--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.join("checkpoints/step-00000006").is_dir());
    // The resumed run's summary is the whole run's: its first loss is step 1's.
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let step1: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "step" && r["step"] == 1)
        .expect("step 1 is on record");
    assert_eq!(summary["first_loss"], step1["loss"], "{summary}");
}

#[test]
fn interrupted_runs_save_then_exit_130_on_sigint_and_143_on_sigterm() {
    let Some(data) = cifar() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let run = dir.path().join(signal.trim_start_matches('-'));
        let child = tiny_pretrain()
            .args([
                "--data",
                data.to_str().unwrap(),
                "--subset",
                "64",
                "--epochs",
                "1000",
                "--log-every",
                "1",
                "--out",
            ])
            .arg(&run)
            .spawn_in_group();
        let metrics = run.join("metrics.jsonl");
        let started = std::time::Instant::now();
        while std::fs::read_to_string(&metrics).map_or(true, |m| m.lines().count() < 2) {
            assert!(
                started.elapsed().as_secs() < 60,
                "no step logged within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let out = wait_within(child, "a kinfonce process");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{signal}: {stderr}");
        no_panic(&stderr);
        let saved = kinfonce_train::checkpoint::latest(&run.join("checkpoints")).unwrap();
        assert!(saved.is_some(), "{signal}: no checkpoint saved");
    }
}

#[test]
fn impossible_sizes_and_values_are_refused_naming_the_setting() {
    let Some(data) = cifar() else { return };
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .args([
            "pretrain", "--data", data, "--subset", "64", "--width", "100000", "--batch", "8",
            "--out",
        ])
        .arg(dir.path().join("a"))
        .output_within();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    no_panic(&stderr);
    assert!(
        stderr.contains("`width` = 100000") && stderr.contains("GB"),
        "{stderr}"
    );
    assert_fails(
        &["--data", data, "--preset", "sum-of-losses", "--lambda", "2"],
        &dir.path().join("b"),
        &["--lambda 2", "[0, 1]"],
    );
    let (code, stderr) = pretrain(&["--data", data, "--subset", "0"], &dir.path().join("c"));
    assert_eq!(code, 2, "clap refuses --subset 0: {stderr}");
    assert!(stderr.contains("--subset"), "{stderr}");
}

/// A run folder has one writer: while another process holds `owner.lock` (here the test holds
/// it itself), `--resume` is refused in one line naming the folder and the holder's PID, and
/// writes nothing; once the lock is free the same command runs.
#[test]
fn a_second_writer_of_a_run_folder_is_refused_naming_the_holder() {
    use std::os::fd::AsRawFd;
    let Some(data) = cifar() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let (code, stderr) = pretrain(
        &[
            "--data",
            data.to_str().unwrap(),
            "--subset",
            "64",
            "--max-steps",
            "2",
        ],
        &run,
    );
    assert_eq!(code, 0, "{stderr}");
    let lock_path = run.join("owner.lock");
    let mut holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    // SAFETY: flock(2) on a descriptor the test owns.
    let held = unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(held, 0, "the finished run left its folder locked");
    std::io::Write::write_all(&mut holder, format!("{}\n", std::process::id()).as_bytes()).unwrap();
    let before = snapshot(&run);
    let resume = || {
        Command::new(env!("CARGO_BIN_EXE_kinfonce"))
            .args(["pretrain", "--resume", run.to_str().unwrap()])
            .output_within()
    };
    let out = resume();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    no_panic(&stderr);
    let error: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains(run.to_str().unwrap())
            && error[0].contains(&format!("process {}", std::process::id())),
        "{stderr}"
    );
    assert!(
        snapshot(&run) == before,
        "the refused writer changed the folder"
    );
    drop(holder);
    let out = resume();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("complete"), "{stdout}");
}

/// Counts, durations and lists are checked where they are parsed: zero, NaN, negative and
/// repeated values are refused naming the flag (exit 2 from the flag parser, 1 from a config
/// file or a list's repeat), before anything is written.
#[test]
fn zeros_nans_negatives_and_repeats_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (args, flag) in [
        (&["--epochs", "0"][..], "--epochs"),
        (&["--nproc-per-node", "0"][..], "--nproc-per-node"),
        (&["--nnodes", "0"][..], "--nnodes"),
        (&["--checkpoint-minutes", "nan"][..], "--checkpoint-minutes"),
        (&["--checkpoint-minutes=-1"][..], "--checkpoint-minutes"),
        (&["--checkpoint-minutes", "inf"][..], "--checkpoint-minutes"),
    ] {
        let run = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
            .arg("pretrain")
            .args(args)
            .arg("--out")
            .arg(&out)
            .output_within();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.lines().next().unwrap().contains(flag),
            "{args:?}: {stderr}"
        );
    }
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "checkpoint_minutes = -1.0\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .args(["pretrain", "--config", config.to_str().unwrap(), "--out"])
        .arg(&out)
        .output_within();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`checkpoint_minutes` = -1"), "{stderr}");
    let study = dir.path().join("study");
    let run = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .args(["compare", "--seeds", "0,1,0", "--out"])
        .arg(&study)
        .output_within();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--seeds lists 0 twice"), "{stderr}");
    assert!(
        !out.exists() && !study.exists(),
        "a refused command wrote its folder"
    );
}
