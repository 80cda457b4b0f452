//! Typed errors: each names the parameter or input and what was expected.

use thiserror::Error;

/// Everything that can be wrong with a loss call. No loss function panics on user input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LossError {
    /// A parameter outside its allowed range, e.g. `gamma = 2.5` (allowed: (0, 2]).
    #[error("parameter `{name}` = {value} is out of range: expected {expected}")]
    Parameter {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    /// Inputs whose shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A NaN or infinite entry in an input.
    #[error("input `{input}` has a non-finite value {value} at row {row}, column {col}")]
    NonFinite {
        input: &'static str,
        row: usize,
        col: usize,
        value: f64,
    },
    /// An empty batch (or a batch too small for the pairing).
    #[error("empty input: {0}")]
    Empty(String),
    /// A case file or loss description that cannot be understood.
    #[error("{0}")]
    Spec(String),
}

/// Checks that `value` lies in the range described by `ok`; `expected` is the human text.
pub(crate) fn check_param(
    name: &'static str,
    value: f64,
    ok: bool,
    expected: &'static str,
) -> Result<(), LossError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(LossError::Parameter {
            name,
            value,
            expected,
        })
    }
}
