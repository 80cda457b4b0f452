//! `kinfonce bench fuzz` end to end: mutated bytes of small real inputs (images from the
//! official CIFAR-10 test records) through every reader; no panic, no input over 2 s, every
//! refusal names its file.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn no_reader_panics_hangs_or_fails_without_naming_its_file() {
    let records = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/cifar10/lossless_test_first1000.bin");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinfonce"));
    cmd.args(["bench", "fuzz", "--count", "500", "--seed", "11", "--json"]);
    if records.exists() {
        cmd.arg("--cifar").arg(&records);
    } else {
        eprintln!("images are synthetic: {} not found", records.display());
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked at"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let formats = report["formats"].as_array().unwrap();
    assert!(formats.len() >= 7, "{report}");
    for f in formats {
        assert_eq!(f["tried"], 500, "{f}");
        assert_eq!(f["panics"].as_array().map(Vec::len), Some(0), "{f}");
        assert_eq!(f["slow"], 0, "{f}");
        assert_eq!(f["unnamed"].as_array().map(Vec::len), Some(0), "{f}");
    }
}
