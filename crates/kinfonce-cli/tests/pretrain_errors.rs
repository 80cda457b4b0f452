//! Bad input to `kinfonce pretrain` ends with exit code 1 and a message that names the file,
//! record, parameter or step at fault; nothing already saved is lost.
#![cfg(feature = "torch")]

mod common;
use common::cifar;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `kinfonce pretrain` with a tiny model and `args`; returns (exit code, stderr).
fn pretrain(args: &[&str], out: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .arg("pretrain")
        .args([
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
            "--checkpoint-minutes",
            "0",
            "--precision",
            "f32",
        ])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
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
