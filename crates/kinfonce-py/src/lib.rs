//! `kinfonce._native`: the Kernel-InfoNCE losses of `kinfonce-loss` for Python.
//!
//! The Python half (`python/kinfonce`) wraps this in a `torch.autograd.Function`; here a loss is
//! only described ([`Loss`]) and evaluated: the loss value and the analytic gradient of every
//! input, computed by the fused CPU engine on the caller's memory (no copy of the inputs) with
//! the GIL released. Inputs and gradient buffers are C-contiguous 2-D arrays exposing the buffer
//! protocol (`tensor.numpy()` of a CPU tensor), all f32 or all f64.
//!
//! [`loader`] adds `kinfonce-data`'s two-view loader (`kinfonce.data` on the Python side).
//!
//! Every rule (presets, parameter ranges, pairings) lives in `kinfonce-loss`; errors from it
//! become `ValueError`, and a panic a `RuntimeError` naming the function, never an abort.

mod loader;

use std::panic::{catch_unwind, AssertUnwindSafe};

use kinfonce_loss::{evaluate, LossError, LossOutput, LossSpec, MatRef, Norm, Pairing, PRESETS};
use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Where a loss comes from: a preset is resolved per call, since `concat-sum` splits the
/// embedding width it is given.
#[derive(Debug, Clone)]
enum Source {
    Preset(String),
    Spec(LossSpec),
}

/// A loss description, checked when built. Exactly one of: `preset`; `gamma` and `tau` (one
/// exponential kernel exp(-||x - y||_p^gamma / tau), `p` 1, 2 or inf); `spec` (the JSON form of
/// kinfonce-loss's `LossSpec`, for mixtures, sums, Concatenation Sum, arc-cosine kernels and the
/// spectral loss).
#[pyclass(frozen, module = "kinfonce._native")]
#[derive(Debug, Clone)]
pub struct Loss {
    source: Source,
}

#[pymethods]
impl Loss {
    #[new]
    #[pyo3(signature = (*, preset=None, gamma=None, tau=None, p=None, spec=None))]
    fn new(
        preset: Option<String>,
        gamma: Option<f64>,
        tau: Option<f64>,
        p: Option<String>,
        spec: Option<String>,
    ) -> PyResult<Self> {
        let kernel_args = gamma.is_some() || tau.is_some() || p.is_some();
        let given = [preset.is_some(), kernel_args, spec.is_some()];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err(PyValueError::new_err(
                "give exactly one of: preset=..., gamma= and tau= (and optionally p=), or spec=...",
            ));
        }
        let source = if let Some(name) = preset {
            // Validated now with a placeholder width; the real one comes with the inputs.
            LossSpec::preset(&name, 2).map_err(value_error)?;
            Source::Preset(name)
        } else if let Some(json) = spec {
            let spec: LossSpec = serde_json::from_str(&json).map_err(|e| {
                PyValueError::new_err(format!(
                    "spec: not a loss specification ({e}); expected e.g. {{\"loss\": \"info_nce\", \
                     \"kernel\": {{\"type\": \"exp\", \"gamma\": 1.0, \"tau\": 0.2, \"p\": \"L2\"}}}}"
                ))
            })?;
            // The width comes with the inputs (a Concatenation Sum's split is checked then).
            spec.validate(usize::MAX).map_err(value_error)?;
            Source::Spec(spec)
        } else {
            let (Some(gamma), Some(tau)) = (gamma, tau) else {
                return Err(PyValueError::new_err(
                    "one exponential kernel needs both gamma= and tau=",
                ));
            };
            let norm = Norm::parse(p.as_deref().unwrap_or("2")).map_err(value_error)?;
            let spec = LossSpec::kernel(kinfonce_loss::Kernel::Exp(kinfonce_loss::ExpKernel {
                gamma,
                tau,
                p: norm,
            }));
            spec.validate(usize::MAX).map_err(value_error)?;
            Source::Spec(spec)
        };
        Ok(Self { source })
    }

    /// The loss as kinfonce-loss JSON for embeddings of width `dim`.
    fn spec_json(&self, dim: usize) -> PyResult<String> {
        let spec = self.resolve(dim)?;
        serde_json::to_string(&spec).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        match &self.source {
            Source::Preset(name) => format!("Loss(preset={name:?})"),
            Source::Spec(spec) => format!(
                "Loss(spec={:?})",
                serde_json::to_string(spec).unwrap_or_default()
            ),
        }
    }

    /// The loss (mean over anchors) of `inputs`, writing d loss / d input into `grads`.
    ///
    /// `pairing`: "simclr" (z1, z2), "moco" (q, k, queue), "clip" (a, b) or "gathered" (z1_all,
    /// z2_all gathered from every rank; `local_rows` = (offset, count): this rank's anchors are
    /// the rows `offset..offset + count` of both). `names` name the inputs in error messages.
    #[pyo3(signature = (pairing, inputs, grads, names, local_rows=None))]
    fn compute(
        &self,
        py: Python<'_>,
        pairing: &str,
        inputs: Vec<Bound<'_, PyAny>>,
        grads: Vec<Bound<'_, PyAny>>,
        names: Vec<String>,
        local_rows: Option<(usize, usize)>,
    ) -> PyResult<f64> {
        let pairing = match pairing {
            "simclr" => Pairing::SimClr,
            "moco" => Pairing::Moco,
            "clip" => Pairing::Clip,
            "gathered" => {
                let (offset, local) = local_rows.ok_or_else(|| {
                    PyValueError::new_err("local_rows: the gathered pairing needs (offset, count)")
                })?;
                Pairing::Gathered { offset, local }
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "pairing: {other:?} is not one of \"simclr\", \"moco\", \"clip\""
                )))
            }
        };
        if inputs.len() != grads.len() || inputs.len() != names.len() {
            return Err(PyValueError::new_err(
                "inputs, grads and names must have the same length",
            ));
        }
        let first = inputs
            .first()
            .ok_or_else(|| PyValueError::new_err("no inputs"))?;
        if PyBuffer::<f32>::get(first).is_ok() {
            self.run::<f32>(py, pairing, &inputs, &grads, &names)
        } else if PyBuffer::<f64>::get(first).is_ok() {
            self.run::<f64>(py, pairing, &inputs, &grads, &names)
        } else {
            Err(PyTypeError::new_err(format!(
                "{}: expected a float32 or float64 array",
                names[0]
            )))
        }
    }
}

impl Loss {
    fn resolve(&self, dim: usize) -> PyResult<LossSpec> {
        let spec = match &self.source {
            Source::Preset(name) => LossSpec::preset(name, dim).map_err(value_error)?,
            Source::Spec(spec) => spec.clone(),
        };
        spec.validate(dim).map_err(value_error)?;
        Ok(spec)
    }

    fn run<T: Element + kinfonce_loss::Real>(
        &self,
        py: Python<'_>,
        pairing: Pairing,
        inputs: &[Bound<'_, PyAny>],
        grads: &[Bound<'_, PyAny>],
        names: &[String],
    ) -> PyResult<f64> {
        let buffers = inputs
            .iter()
            .zip(names)
            .map(|(obj, name)| matrix_buffer::<T>(obj, name))
            .collect::<PyResult<Vec<_>>>()?;
        let views = buffers
            .iter()
            .zip(names)
            .map(|((buf, rows, cols), name)| {
                // SAFETY: `buf` is a C-contiguous buffer of `rows * cols` items of type T (checked
                // by `matrix_buffer`), kept alive by the PyBuffer for the whole call; the caller
                // (the autograd function) does not write to its inputs while the loss runs.
                let data = unsafe {
                    std::slice::from_raw_parts(buf.buf_ptr() as *const T, buf.item_count())
                };
                MatRef::new(data, *rows, *cols).map_err(|e| named(e, names, name))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let spec = self.resolve(views[0].cols)?;
        let out: LossOutput<T> = guarded(py, FUNCTION, || evaluate(&spec, pairing, &views))?
            .map_err(|e| PyValueError::new_err(rename_inputs(&e.to_string(), names)))?;
        for ((grad, obj), name) in out.grads.iter().zip(grads).zip(names) {
            let buf = PyBuffer::<T>::get(obj)
                .map_err(|e| PyTypeError::new_err(format!("gradient of {name}: {e}")))?;
            if buf.readonly() || !buf.is_c_contiguous() || buf.item_count() != grad.data.len() {
                return Err(PyValueError::new_err(format!(
                    "gradient of {name}: need a writable C-contiguous buffer of {} values",
                    grad.data.len()
                )));
            }
            buf.copy_from_slice(py, &grad.data)?;
        }
        Ok(out.loss)
    }
}

/// A 2-D C-contiguous buffer of T: the buffer, its rows and columns.
fn matrix_buffer<T: Element>(
    obj: &Bound<'_, PyAny>,
    name: &str,
) -> PyResult<(PyBuffer<T>, usize, usize)> {
    let buf = PyBuffer::<T>::get(obj).map_err(|_| {
        PyTypeError::new_err(format!(
            "{name}: every input must have the dtype of the first (float32 or float64)"
        ))
    })?;
    let shape = buf.shape().to_vec();
    if shape.len() != 2 || !buf.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name}: expected a C-contiguous 2-D array (rows x dim), got shape {shape:?}"
        )));
    }
    Ok((buf, shape[0], shape[1]))
}

/// Messages of kinfonce-loss name inputs by position ("input 0"); say the caller's names.
fn rename_inputs(message: &str, names: &[String]) -> String {
    names
        .iter()
        .enumerate()
        .fold(message.to_string(), |m, (i, name)| {
            m.replace(&format!("input {i}"), name)
        })
}

fn named(e: LossError, names: &[String], name: &str) -> PyErr {
    PyValueError::new_err(format!("{name}: {}", rename_inputs(&e.to_string(), names)))
}

fn value_error(e: LossError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// The Python function whose failures these are.
const FUNCTION: &str = "kinfonce.kernel_infonce";

/// Runs `f` without the GIL; a panic inside (a bug, never a user error) becomes a RuntimeError
/// naming `function` instead of unwinding into the interpreter.
fn guarded<R: Send>(py: Python<'_>, function: &str, f: impl FnOnce() -> R + Send) -> PyResult<R> {
    py.detach(|| catch_unwind(AssertUnwindSafe(f)))
        .map_err(|payload| {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            PyRuntimeError::new_err(format!(
                "{function}: internal error in the Rust engine (please report): {what}"
            ))
        })
}

/// Panics inside [`guarded`], as the loss call would; lets the tests check the RuntimeError.
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    guarded(py, FUNCTION, || panic!("deliberate test panic"))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Loss>()?;
    m.add_class::<loader::TwoViewLoader>()?;
    m.add_class::<loader::Epoch>()?;
    m.add_class::<loader::BatchBuffer>()?;
    m.add_function(wrap_pyfunction!(loader::crop_at_decode, m)?)?;
    m.add("AUGMENT_PRESETS", kinfonce_data::AUGMENT_PRESETS.to_vec())?;
    m.add(
        "DATA_FORMATS",
        kinfonce_data::DataFormat::ALL
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>(),
    )?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add("PRESETS", PRESETS.to_vec())?;
    Ok(())
}
