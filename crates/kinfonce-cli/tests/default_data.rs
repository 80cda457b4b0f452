//! The defaults a user gets without flags. With no data named, no CIFAR-10 in the cache and no
//! network, `kinfonce pretrain` says so and trains on the built-in synthetic set, so the demo
//! always completes; with no precision named, it computes in what `kinfonce info` says `auto`
//! picks on this machine, and records that choice.
#![cfg(feature = "torch")]

mod common;
use common::WithDeadline;
use std::process::Command;

/// A tiny network on one thread (the data, batch and length are each test's own).
const TINY: &[&str] = &[
    "pretrain",
    "--width",
    "4",
    "--hidden-dim",
    "16",
    "--out-dim",
    "8",
    "--threads",
    "1",
];

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
        .args(TINY)
        .args([
            "--batch",
            "16",
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
        .output_within();
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

#[test]
fn info_reports_the_machine_and_the_run_records_the_auto_choice() {
    let kinfonce = |args: &[&str], cwd: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_kinfonce"))
            .current_dir(cwd)
            .args(args)
            .output_within();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kinfonce {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let scratch = tempfile::tempdir().unwrap();
    let stdout = kinfonce(&["info", "--json"], scratch.path());
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for flag in ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "native_bf16"] {
        assert!(v["cpu"][flag].is_boolean(), "cpu.{flag} in {v}");
    }
    assert!(!v["cpu"]["model"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["cores"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["threads"]["libtorch"], v["cores"], "{v}");
    assert_eq!(v["libtorch"]["version"], "2.11.0", "{v}");
    assert!(v["cuda"].is_array(), "{v}");
    let auto = &v["auto"]["cpu"];
    // The documented rule: bf16 exactly where the CPU computes it natively; channels-last on CPUs.
    let native = v["cpu"]["native_bf16"].as_bool().unwrap();
    assert_eq!(
        auto["precision"],
        if native { "bf16" } else { "f32" },
        "{v}"
    );
    assert_eq!(auto["channels_last"], true, "{v}");
    assert!(auto["reason"].as_str().unwrap().contains("bf16"), "{v}");
    // Networks narrower than 8 channels (TINY's 4) run contiguous where oneDNN's AVX2 code
    // would crash in channels-last.
    let narrow = &auto["narrow"];
    let onednn_avx2 = v["cpu"]["avx2"] == true && v["cpu"]["avx512f"] == false;
    assert_eq!(!narrow.is_null(), onednn_avx2, "{v}");
    let tiny_layout = if onednn_avx2 {
        assert_eq!(narrow["below_width"], 8, "{v}");
        assert!(narrow["reason"].as_str().unwrap().contains("oneDNN"), "{v}");
        &narrow["channels_last"]
    } else {
        &auto["channels_last"]
    };

    // A run left on auto stores the resolved choice and says that auto made it.
    let run = scratch.path().join("run");
    let data =
        kinfonce_data::write_synthetic_cifar(&scratch.path().join("data"), 40, 20, 0).unwrap();
    kinfonce(
        &[
            TINY,
            &[
                "--data",
                data.to_str().unwrap(),
                "--batch",
                "8",
                "--max-steps",
                "1",
                "--knn-every",
                "0",
                "--checkpoint-minutes",
                "0",
                "--out",
                run.to_str().unwrap(),
            ],
        ]
        .concat(),
        scratch.path(),
    );
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let saved: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        saved["config"]["precision"].as_str(),
        auto["precision"].as_str(),
        "{text}"
    );
    assert_eq!(
        saved["config"]["channels_last"].as_bool(),
        tiny_layout.as_bool(),
        "{text}"
    );
    let compute = saved["provenance"]["compute"].as_str().unwrap();
    assert!(
        compute.contains("auto chose the precision and layout"),
        "{text}"
    );
}
