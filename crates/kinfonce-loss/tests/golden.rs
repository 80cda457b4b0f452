//! Every case of `shared/golden/kernel_infonce.json` (PyTorch autograd in float64, see its
//! README): loss and every gradient entry within tol x the case's largest magnitude,
//! tol = 1e-9 in f64 and 1e-4 in f32.

use std::path::PathBuf;

use kinfonce_loss::cases::{parse_cases, CaseResult};
use kinfonce_loss::Real;
use serde_json::Value;

fn golden_text() -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/kernel_infonce.json");
    match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!(
                "skipping: golden vectors not found at {} ({e})",
                path.display()
            );
            None
        }
    }
}

fn check_all<T: Real>(tol: f64) {
    let Some(text) = golden_text() else { return };
    let doc: Value = serde_json::from_str(&text).unwrap();
    let cases = parse_cases(&text).unwrap();
    assert_eq!(cases.len(), doc["cases"].as_array().unwrap().len());
    let mut failures = Vec::new();
    for (case, expected) in cases.iter().zip(doc["cases"].as_array().unwrap()) {
        let got: CaseResult = case.run::<T>().unwrap();
        let want_loss = expected["loss"].as_f64().unwrap();
        let want_grads: Vec<Vec<Vec<f64>>> =
            serde_json::from_value(expected["grads"].clone()).unwrap();
        let scale = want_grads
            .iter()
            .flatten()
            .flatten()
            .fold(want_loss.abs(), |m, g| m.max(g.abs()));
        let mut worst = (got.loss - want_loss).abs();
        assert_eq!(got.grads.len(), want_grads.len(), "{}", case.name);
        for (g, w) in got
            .grads
            .iter()
            .flatten()
            .flatten()
            .zip(want_grads.iter().flatten().flatten())
        {
            worst = worst.max((g - w).abs());
        }
        let rel = worst / scale;
        eprintln!(
            "{:<40} {} loss {:.12} want {:.12} rel err {rel:.2e}",
            case.name,
            T::NAME,
            got.loss,
            want_loss
        );
        if rel > tol || !rel.is_finite() {
            failures.push(format!("{}: relative error {rel:.3e} > {tol:e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn golden_cases_match_in_f64() {
    check_all::<f64>(1e-9);
}

#[test]
fn golden_cases_match_in_f32() {
    check_all::<f32>(1e-4);
}
