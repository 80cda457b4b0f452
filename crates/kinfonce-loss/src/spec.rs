//! What to compute: a kernel in one softmax, a weighted sum of such losses, the Concatenation
//! Sum, or the spectral contrastive loss; and the named presets ([`PRESETS`],
//! [`LossSpec::preset`]).

use serde::{Deserialize, Serialize};

use crate::error::{check_param, LossError};
use crate::kernel::{ExpKernel, Kernel, MixtureComponent};

/// A contrastive loss over embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "loss", rename_all = "snake_case")]
pub enum LossSpec {
    /// InfoNCE with one kernel: -ln( K(i, pos) / sum_{j != i} K(i, j) ), mean over anchors.
    InfoNce { kernel: Kernel },
    /// sum_k w_k L_k, each L_k an InfoNCE loss with its own kernel (the official code's `sum`:
    /// lambda L(gamma) + (1 - lambda) L(2) with a shared tau).
    Sum { parts: Vec<(f64, Kernel)> },
    /// Concatenation Sum (the official `product`): the embedding is split after `split` columns,
    /// lambda L(first) on the first part + (1 - lambda) L(second) on the rest, not renormalised.
    Concat {
        split: usize,
        lambda: f64,
        first: Kernel,
        second: Kernel,
    },
    /// Spectral contrastive loss (HaoChen et al.): sum_{i != j} <z_i, z_j>^2 / (B (B - 1))
    /// - (2 / B) sum_i <z1_i, z2_i>, over the 2B rows of both views.
    Spectral,
}

/// The preset names, in the order `--help` lists them.
pub const PRESETS: [&str; 6] = [
    "gaussian",
    "laplacian",
    "exp-0.5",
    "simple-sum",
    "sum-of-losses",
    "concat-sum",
];

impl LossSpec {
    pub fn kernel(kernel: Kernel) -> Self {
        LossSpec::InfoNce { kernel }
    }

    /// lambda L(k1) + (1 - lambda) L(k2); lambda in [0, 1].
    pub fn sum_of_losses(lambda: f64, k1: Kernel, k2: Kernel) -> Result<Self, LossError> {
        check_lambda(lambda)?;
        Ok(LossSpec::Sum {
            parts: vec![(lambda, k1), (1.0 - lambda, k2)],
        })
    }

    /// A named preset, for embeddings of width `dim`, with K = exp(-||x - y||_2^gamma / tau):
    /// - `gaussian`: gamma 2, tau 0.4;
    /// - `laplacian`: gamma 1, tau 0.2;
    /// - `exp-0.5`: gamma 0.5, tau 0.15;
    /// - `simple-sum`: one softmax over the mixture 0.5 K(gamma 1, tau 0.2) + 0.5 K(gamma 2,
    ///   tau 0.4);
    /// - `sum-of-losses`: 0.5 L(gamma 1, tau 0.2) + 0.5 L(gamma 2, tau 0.2);
    /// - `concat-sum`: the embedding split in half (after `dim / 2` columns), 0.5 L(gamma 1,
    ///   tau 0.2) on the first half + 0.5 L(gamma 2, tau 0.2) on the second.
    pub fn preset(name: &str, dim: usize) -> Result<Self, LossError> {
        let exp = |gamma, tau| Kernel::exp(gamma, tau);
        Ok(match name {
            "gaussian" => Self::kernel(exp(2.0, 0.4)),
            "laplacian" => Self::kernel(exp(1.0, 0.2)),
            "exp-0.5" => Self::kernel(exp(0.5, 0.15)),
            "simple-sum" => Self::kernel(Kernel::mixture(vec![
                MixtureComponent {
                    weight: 0.5,
                    kernel: ExpKernel::new(1.0, 0.2),
                },
                MixtureComponent {
                    weight: 0.5,
                    kernel: ExpKernel::new(2.0, 0.4),
                },
            ])),
            "sum-of-losses" => Self::sum_of_losses(0.5, exp(1.0, 0.2), exp(2.0, 0.2))?,
            "concat-sum" => LossSpec::Concat {
                split: dim / 2,
                lambda: 0.5,
                first: exp(1.0, 0.2),
                second: exp(2.0, 0.2),
            },
            other => {
                return Err(LossError::Spec(format!(
                    "unknown preset {other:?}: expected one of {}",
                    PRESETS.join(", ")
                )))
            }
        })
    }

    /// Checks every parameter; `dim` is the embedding width the loss will see.
    pub fn validate(&self, dim: usize) -> Result<(), LossError> {
        match self {
            LossSpec::InfoNce { kernel } => kernel.validate(),
            LossSpec::Sum { parts } => {
                if parts.is_empty() {
                    return Err(LossError::Spec(
                        "a sum of losses needs at least one part".into(),
                    ));
                }
                for (w, k) in parts {
                    check_param("weight", *w, *w >= 0.0, "a value >= 0")?;
                    k.validate()?;
                }
                Ok(())
            }
            LossSpec::Concat {
                split,
                lambda,
                first,
                second,
            } => {
                check_lambda(*lambda)?;
                if *split == 0 || *split >= dim {
                    return Err(LossError::Parameter {
                        name: "split",
                        value: *split as f64,
                        expected: "a column index in [1, dim - 1] (both parts non-empty)",
                    });
                }
                first.validate()?;
                second.validate()
            }
            LossSpec::Spectral => Ok(()),
        }
    }
}

fn check_lambda(lambda: f64) -> Result<(), LossError> {
    check_param(
        "lambda",
        lambda,
        (0.0..=1.0).contains(&lambda),
        "a value in [0, 1]",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for name in PRESETS {
            LossSpec::preset(name, 128).unwrap().validate(128).unwrap();
        }
        let err = LossSpec::preset("cosine", 128).unwrap_err().to_string();
        assert!(err.contains("gaussian, laplacian"), "{err}");
    }

    /// Run configs and `--loss-json` carry specs as JSON; every preset must survive the trip
    /// (the mixture once could not: a tagged enum cannot hold a bare sequence).
    #[test]
    fn every_preset_round_trips_through_json() {
        for name in PRESETS {
            let spec = LossSpec::preset(name, 128).unwrap();
            let json = serde_json::to_string(&spec).unwrap();
            let back: LossSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, spec, "{name}: {json}");
        }
        let json = r#"{"loss": "info_nce", "kernel": {"type": "mixture", "components": [
            {"weight": 1.0, "kernel": {"gamma": 1.0, "tau": 0.5, "p": "L2"}}]}}"#;
        let spec: LossSpec = serde_json::from_str(json).unwrap();
        assert!(matches!(
            spec,
            LossSpec::InfoNce {
                kernel: Kernel::Mixture { .. }
            }
        ));
    }

    #[test]
    fn bad_lambda_and_split_are_named() {
        let k = Kernel::exp(1.0, 0.2);
        let err = LossSpec::sum_of_losses(1.5, k.clone(), k.clone()).unwrap_err();
        assert!(err.to_string().contains("`lambda` = 1.5"), "{err}");
        let concat = LossSpec::Concat {
            split: 16,
            lambda: 0.5,
            first: k.clone(),
            second: k,
        };
        let err = concat.validate(16).unwrap_err().to_string();
        assert!(err.contains("`split` = 16"), "{err}");
    }
}
