//! `kinfonce loss`: the tensor engine (the trainer's path on GPUs) computes what the fused CPU
//! engine computes on every case it covers, says which it skips and why, and a device this
//! machine lacks is a one-line error.
#![cfg(feature = "torch")]

mod common;
use common::golden_cases;
use serde_json::Value;
use std::process::{Command, Output};

fn loss(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinfonce"))
        .arg("loss")
        .args(args)
        .output()
        .unwrap()
}

fn json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => vec![n.as_f64().unwrap()],
        Value::Array(a) => a.iter().flat_map(numbers).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_tensor_engine_agrees_with_the_fused_one() {
    let Some(cases) = golden_cases() else { return };
    let cases = cases.to_str().unwrap();
    let fused = json(loss(&["--cases", cases, "--dtype", "f64"]));
    let tensor = json(loss(&[
        "--cases", cases, "--dtype", "f64", "--engine", "tensor", "--device", "cpu",
    ]));
    let by_name = |doc: &Value, name: &str| -> Value {
        doc["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let computed = tensor["cases"].as_array().unwrap();
    assert!(computed.len() >= 17, "{} cases", computed.len());
    for case in computed {
        let name = case["name"].as_str().unwrap();
        let (a, b) = (numbers(case), numbers(&by_name(&fused, name)));
        assert_eq!(a.len(), b.len(), "{name}");
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= 1e-9 * scale, "{name}: off by {err} (scale {scale})");
    }
    // What the tensor form does not cover is listed with its reason, never dropped silently.
    let skipped = tensor["skipped"].as_array().unwrap();
    assert_eq!(
        computed.len() + skipped.len(),
        fused["cases"].as_array().unwrap().len()
    );
    for s in skipped {
        let why = s["why"].as_str().unwrap();
        assert!(
            why.contains("SimCLR and MoCo pairings") || why.contains("arc-cosine"),
            "{s}"
        );
    }
}

#[test]
fn a_missing_gpu_is_one_line() {
    let Some(cases) = golden_cases() else { return };
    let cases = cases.to_str().unwrap();
    if kinfonce_train::tch::Cuda::is_available() {
        eprintln!("skipping: this machine has a GPU");
        return;
    }
    for (args, wanted) in [
        (
            vec!["--engine", "tensor", "--device", "cuda"],
            "no CUDA device is visible",
        ),
        (vec!["--device", "cuda"], "add --engine tensor"),
    ] {
        let out = loss(&[&["--cases", cases][..], &args].concat());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
    }
}
