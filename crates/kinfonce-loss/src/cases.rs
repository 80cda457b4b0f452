//! Cases in the golden-vector format (docs/loss-cases.md): `{"cases": [{"name", "kind",
//! "params", "inputs"}, ...]}` (other fields ignored). Used by `kinfonce loss --cases` and the
//! golden tests.

use serde::Serialize;
use serde_json::Value;

use crate::error::LossError;
use crate::kernel::{ExpKernel, Kernel, MixtureComponent, Norm};
use crate::matrix::Mat;
use crate::pairing::{evaluate, Pairing};
use crate::real::Real;
use crate::spec::LossSpec;

/// One case: the loss to compute and its inputs (each a list of rows).
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub kind: String,
    pub params: Value,
    pub inputs: Vec<Mat<f64>>,
}

/// The loss value and gradients of one case, with the inputs' nesting.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub loss: f64,
    pub grads: Vec<Vec<Vec<f64>>>,
}

/// Parses `{"cases": [...]}` (or a bare list of cases).
pub fn parse_cases(text: &str) -> Result<Vec<Case>, LossError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| LossError::Spec(format!("not valid JSON: {e}")))?;
    let list = match &doc {
        Value::Array(a) => a,
        Value::Object(o) => o
            .get("cases")
            .and_then(Value::as_array)
            .ok_or_else(|| LossError::Spec("expected an object with a `cases` list".into()))?,
        _ => {
            return Err(LossError::Spec(
                "expected an object with a `cases` list".into(),
            ))
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, c)| parse_case(i, c))
        .collect()
}

fn parse_case(index: usize, c: &Value) -> Result<Case, LossError> {
    let name = c
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| format!("case {index}"), str::to_owned);
    let here = |msg: String| LossError::Spec(format!("case {index} ({name}): {msg}"));
    let kind = c
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| here("missing string field `kind`".into()))?
        .to_owned();
    let inputs = c
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| here("missing field `inputs` (a list of matrices)".into()))?
        .iter()
        .enumerate()
        .map(|(k, m)| parse_matrix(m).map_err(|e| here(format!("input {k}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Case {
        name,
        kind,
        params: c.get("params").cloned().unwrap_or(Value::Null),
        inputs,
    })
}

fn parse_matrix(m: &Value) -> Result<Mat<f64>, String> {
    let rows = m.as_array().ok_or("expected a list of rows")?;
    let rows: Vec<Vec<f64>> = rows
        .iter()
        .enumerate()
        .map(|(r, row)| {
            row.as_array()
                .ok_or(format!("row {r} is not a list"))?
                .iter()
                .map(|v| v.as_f64().ok_or(format!("row {r} holds a non-number {v}")))
                .collect()
        })
        .collect::<Result<_, _>>()?;
    Mat::from_rows(&rows).map_err(|e| e.to_string())
}

impl Case {
    fn num(&self, key: &'static str, default: Option<f64>) -> Result<f64, LossError> {
        match self.params.get(key) {
            Some(v) => v.as_f64().ok_or_else(|| {
                LossError::Spec(format!(
                    "case {}: parameter `{key}` is not a number: {v}",
                    self.name
                ))
            }),
            None => default.ok_or_else(|| {
                LossError::Spec(format!("case {}: missing parameter `{key}`", self.name))
            }),
        }
    }

    fn norm(&self) -> Result<Norm, LossError> {
        match self.params.get("p") {
            None => Ok(Norm::L2),
            Some(Value::String(s)) => Norm::parse(s),
            Some(v) => Norm::parse(&v.to_string()),
        }
    }

    fn exp(
        &self,
        gamma_key: &'static str,
        default_gamma: Option<f64>,
    ) -> Result<Kernel, LossError> {
        Ok(Kernel::Exp(ExpKernel {
            gamma: self.num(gamma_key, default_gamma)?,
            tau: self.num("tau", None)?,
            p: self.norm()?,
        }))
    }

    /// The loss and pairing this case asks for.
    pub fn spec(&self) -> Result<(LossSpec, Pairing), LossError> {
        let spec = match self.kind.as_str() {
            "exp" | "moco" | "clip" => LossSpec::kernel(self.exp("gamma", None)?),
            "loss_sum" => LossSpec::sum_of_losses(
                self.num("lambda", None)?,
                self.exp("gamma", None)?,
                self.exp("gamma2", Some(2.0))?,
            )?,
            "loss_concat" => LossSpec::Concat {
                split: self.num("split", None)? as usize,
                lambda: self.num("lambda", None)?,
                first: self.exp("gamma", None)?,
                second: self.exp("gamma2", Some(2.0))?,
            },
            "kernel_mixture" => {
                let p = self.norm()?;
                let comps = self
                    .params
                    .get("components")
                    .and_then(Value::as_array)
                    .ok_or_else(|| {
                        LossError::Spec(format!(
                            "case {}: missing `components` [[w, gamma, tau], ...]",
                            self.name
                        ))
                    })?;
                let parts = comps
                    .iter()
                    .map(|c| {
                        match c
                            .as_array()
                            .map(|a| a.iter().map(Value::as_f64).collect::<Vec<_>>())
                        {
                            Some(v) if v.len() == 3 && v.iter().all(Option::is_some) => {
                                Ok(MixtureComponent {
                                    weight: v[0].unwrap_or_default(),
                                    kernel: ExpKernel {
                                        gamma: v[1].unwrap_or_default(),
                                        tau: v[2].unwrap_or_default(),
                                        p,
                                    },
                                })
                            }
                            _ => Err(LossError::Spec(format!(
                                "case {}: a mixture component must be [w, gamma, tau], got {c}",
                                self.name
                            ))),
                        }
                    })
                    .collect::<Result<_, _>>()?;
                LossSpec::kernel(Kernel::mixture(parts))
            }
            "acos" => LossSpec::kernel(Kernel::ArcCos {
                order: self.num("order", None)? as u8,
                tau: self.num("tau", None)?,
            }),
            "spectral" => LossSpec::Spectral,
            other => {
                return Err(LossError::Spec(format!(
                    "case {}: unknown kind {other:?}: expected exp, loss_sum, loss_concat, \
                     kernel_mixture, acos, spectral, moco or clip",
                    self.name
                )))
            }
        };
        let pairing = match self.kind.as_str() {
            "moco" => Pairing::Moco,
            "clip" => Pairing::Clip,
            _ => Pairing::SimClr,
        };
        Ok((spec, pairing))
    }

    /// Evaluates the case in precision `T`.
    pub fn run<T: Real>(&self) -> Result<CaseResult, LossError> {
        let (spec, pairing) = self.spec()?;
        let converted: Vec<Mat<T>> = self
            .inputs
            .iter()
            .map(|m| Mat {
                rows: m.rows,
                cols: m.cols,
                data: m.data.iter().map(|&v| T::from_f64(v)).collect(),
            })
            .collect();
        let views: Vec<_> = converted.iter().map(Mat::view).collect();
        let out = evaluate(&spec, pairing, &views).map_err(|e| match e {
            LossError::Spec(msg) => LossError::Spec(format!("case {}: {msg}", self.name)),
            other => other,
        })?;
        Ok(CaseResult {
            name: self.name.clone(),
            loss: out.loss,
            grads: out
                .grads
                .iter()
                .map(|g| {
                    g.to_rows()
                        .into_iter()
                        .map(|r| r.into_iter().map(Real::to_f64).collect())
                        .collect()
                })
                .collect(),
        })
    }
}
