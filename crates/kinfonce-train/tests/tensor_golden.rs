//! The tensor form of the losses (the CUDA path) against the golden vectors: values and
//! gradients of every case it supports, in f64, within 1e-9 of the case's largest magnitude.
//! Reads `../shared/golden/kernel_infonce.json` beside the checkout and skips with a
//! message when it is absent.

use kinfonce_train::loss_tensor::TensorLoss;
use kinfonce_train::tch::Tensor;
use serde_json::Value;

fn golden() -> Option<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/kernel_infonce.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("golden JSON parses")),
        Err(_) => {
            eprintln!("skipping: golden file {} not found", path.display());
            None
        }
    }
}

fn matrix(v: &Value) -> Tensor {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let (r, c) = (rows.len() as i64, rows[0].len() as i64);
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    Tensor::from_slice(&flat).reshape([r, c])
}

fn p_of(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::Null => 2.0,
        v => v.as_f64().unwrap(),
    }
}

fn loss_of(kind: &str, params: &Value) -> Option<TensorLoss> {
    let f = |k: &str| params[k].as_f64().unwrap();
    Some(match kind {
        "exp" => TensorLoss::Exp {
            gamma: f("gamma"),
            tau: f("tau"),
            p: p_of(&params["p"]),
        },
        "loss_sum" => TensorLoss::Weighted {
            terms: vec![
                (
                    f("lambda"),
                    TensorLoss::Exp {
                        gamma: f("gamma"),
                        tau: f("tau"),
                        p: 2.0,
                    },
                ),
                (
                    1.0 - f("lambda"),
                    TensorLoss::Exp {
                        gamma: f("gamma2"),
                        tau: f("tau"),
                        p: 2.0,
                    },
                ),
            ],
        },
        "loss_concat" => TensorLoss::Concat {
            split: params["split"].as_i64().unwrap(),
            lambda: f("lambda"),
            first: Box::new(TensorLoss::Exp {
                gamma: f("gamma"),
                tau: f("tau"),
                p: 2.0,
            }),
            second: Box::new(TensorLoss::Exp {
                gamma: f("gamma2"),
                tau: f("tau"),
                p: 2.0,
            }),
        },
        "kernel_mixture" => TensorLoss::Mixture {
            components: serde_json::from_value(params["components"].clone()).unwrap(),
            p: 2.0,
        },
        "spectral" => TensorLoss::Spectral,
        _ => return None,
    })
}

/// Every SimCLR-pairing case of the golden file: loss and both gradients within 1e-9 of the
/// case's largest magnitude (f64).
#[test]
fn tensor_losses_match_the_golden_vectors_in_f64() {
    let Some(golden) = golden() else { return };
    let mut checked = Vec::new();
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let Some(loss) = loss_of(case["kind"].as_str().unwrap(), &case["params"]) else {
            continue;
        };
        let z1 = matrix(&case["inputs"][0]).set_requires_grad(true);
        let z2 = matrix(&case["inputs"][1]).set_requires_grad(true);
        let value = loss.forward(&z1, &z2);
        value.backward();
        let expected_grads = [matrix(&case["grads"][0]), matrix(&case["grads"][1])];
        let expected_loss = case["loss"].as_f64().unwrap();
        let scale = expected_grads
            .iter()
            .map(|g| f64::try_from(g.abs().max()).unwrap())
            .fold(expected_loss.abs(), f64::max);
        let got = f64::try_from(&value).unwrap();
        assert!(
            (got - expected_loss).abs() <= 1e-9 * scale,
            "{name}: loss {got} vs {expected_loss}"
        );
        for (z, g) in [(&z1, &expected_grads[0]), (&z2, &expected_grads[1])] {
            let err = f64::try_from((z.grad() - g).abs().max()).unwrap();
            assert!(
                err <= 1e-9 * scale,
                "{name}: gradient off by {err} (scale {scale})"
            );
        }
        checked.push(name.to_string());
    }
    assert!(
        checked.len() >= 17,
        "only {} cases checked: {checked:?}",
        checked.len()
    );
    assert!(checked.iter().any(|n| n.contains("identical")));
}
