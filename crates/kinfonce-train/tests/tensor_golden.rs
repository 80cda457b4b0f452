//! The tensor form of the losses (the CUDA path) against the golden vectors: values and
//! gradients of every case it supports, within the golden rule (1e-9 of the case's largest
//! magnitude in f64, 1e-4 in f32). Reads `../shared/golden/kernel_infonce.json` beside the
//! checkout and skips with a message when it is absent.

use kinfonce_loss::cases::{parse_cases, Case};
use kinfonce_train::loss_tensor::evaluate_case;
use kinfonce_train::tch::{Device, Kind};
use serde_json::Value;

fn golden() -> Option<(Vec<Case>, Value)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/kernel_infonce.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some((
            parse_cases(&text).expect("golden cases parse"),
            serde_json::from_str(&text).expect("golden JSON parses"),
        )),
        Err(_) => {
            eprintln!("skipping: golden file {} not found", path.display());
            None
        }
    }
}

/// Every SimCLR- and MoCo-pairing case the tensor form covers, in `kind`, within `tol` of the case's
/// largest magnitude; returns the names checked.
fn check(kind: Kind, tol: f64) -> Vec<String> {
    let Some((cases, doc)) = golden() else {
        return Vec::new();
    };
    let mut checked = Vec::new();
    for (case, expected) in cases.iter().zip(doc["cases"].as_array().unwrap()) {
        let Ok(got) = evaluate_case(case, kind, Device::Cpu).unwrap() else {
            continue;
        };
        let grads: Vec<Vec<Vec<f64>>> = serde_json::from_value(expected["grads"].clone()).unwrap();
        let loss = expected["loss"].as_f64().unwrap();
        let flat = |g: &Vec<Vec<Vec<f64>>>| -> Vec<f64> {
            g.iter().flatten().flatten().copied().collect()
        };
        let scale = flat(&grads).iter().fold(loss.abs(), |m, v| m.max(v.abs()));
        let name = &case.name;
        assert!(
            (got.loss - loss).abs() <= tol * scale,
            "{name}: loss {} vs {loss}",
            got.loss
        );
        let err = flat(&got.grads)
            .iter()
            .zip(flat(&grads))
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= tol * scale,
            "{name}: gradient off by {err} (scale {scale})"
        );
        checked.push(name.clone());
    }
    checked
}

#[test]
fn tensor_losses_match_the_golden_vectors_in_f64() {
    let checked = check(Kind::Double, 1e-9);
    if checked.is_empty() {
        return;
    }
    assert!(
        checked.len() >= 17,
        "only {} cases checked: {checked:?}",
        checked.len()
    );
    assert!(checked.iter().any(|n| n.contains("identical")));
    assert!(checked.iter().any(|n| n.starts_with("moco")), "{checked:?}");
}

#[test]
fn tensor_losses_match_the_golden_vectors_in_f32() {
    let checked = check(Kind::Float, 1e-4);
    assert!(checked.is_empty() || checked.len() >= 17, "{checked:?}");
}
