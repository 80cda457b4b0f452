//! Checkpoints: a folder `checkpoints/step-NNNNNNNN/` holding
//! - `encoder.safetensors`: the encoder with torchvision's names (loads into
//!   `torchvision.models.resnet18()` with `strict=False`, only `fc` missing),
//! - `head.safetensors`: the projection head (`projection.*`) and the online probe (`probe.*`),
//! - `optimizer.safetensors`: optimiser moments (`model.*`, `probe.*`),
//! - `state.json`: the [`TrainingState`].
//!
//! A checkpoint is written into a hidden temporary folder, every file synced, then renamed
//! into place, so a crash leaves either the whole checkpoint or none of it.

use crate::error::{io_err, torch_err, Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Where training stands, enough to continue the same trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Optimiser steps done.
    pub step: u64,
    /// Epoch of the next batch (0-based).
    pub epoch: u64,
    /// Batches of that epoch already consumed.
    pub batch_in_epoch: u64,
    /// Steps of the model optimiser and of the probe optimiser.
    pub optimizer_step: u64,
    pub probe_optimizer_step: u64,
    /// The run's seed (data order, augmentations, initialisation).
    pub seed: u64,
    /// Loss of the last step (NaN before the first step, written as null).
    #[serde(deserialize_with = "nan_when_null")]
    pub last_loss: f64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
}

/// JSON has no NaN: serde_json writes it as null; read null back as NaN.
fn nan_when_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The named tensors of one checkpoint.
pub struct Checkpoint {
    pub path: PathBuf,
    pub encoder: HashMap<String, Tensor>,
    pub head: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    pub state: TrainingState,
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn cpu_contiguous(tensors: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect()
}

fn sync_file(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Writes a checkpoint under `dir` (created if needed) and keeps only the newest `keep`
/// (`keep` >= 1). Returns the checkpoint's folder.
pub fn save(
    dir: &Path,
    encoder: &[(String, Tensor)],
    head: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    state: &TrainingState,
    keep: usize,
) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = step_dir_name(state.step);
    let tmp = dir.join(format!(".{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    for (file, tensors) in [
        ("encoder.safetensors", encoder),
        ("head.safetensors", head),
        ("optimizer.safetensors", optimizer),
    ] {
        let path = tmp.join(file);
        Tensor::write_safetensors(&cpu_contiguous(tensors), &path)
            .map_err(torch_err(format!("writing {}", path.display())))?;
        sync_file(&path)?;
    }
    let state_path = tmp.join("state.json");
    let json = serde_json::to_string_pretty(state).expect("the state serialises");
    fs::write(&state_path, json).map_err(io_err(&state_path))?;
    sync_file(&state_path)?;
    let final_path = dir.join(&name);
    if final_path.exists() {
        fs::remove_dir_all(&final_path).map_err(io_err(&final_path))?;
    }
    fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    prune(dir, keep.max(1))?;
    Ok(final_path)
}

/// Completed checkpoints under `dir`, oldest first (temporary folders are not listed).
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        {
            if entry.path().join("state.json").is_file() {
                out.push((step, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint under `dir`.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(dir)?.pop().map(|(_, p)| p))
}

fn prune(dir: &Path, keep: usize) -> Result<()> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep);
    for (step, path) in all.into_iter().take(excess) {
        // Out of the listing first (one rename), then deleted: a kill mid-deletion leaves a
        // hidden folder, never a listed checkpoint with missing files.
        let trash = dir.join(format!(".{}.old", step_dir_name(step)));
        if trash.exists() {
            fs::remove_dir_all(&trash).map_err(io_err(&trash))?;
        }
        fs::rename(&path, &trash).map_err(io_err(&path))?;
        fs::remove_dir_all(&trash).map_err(io_err(&trash))?;
    }
    Ok(())
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot read safetensors: {e}"),
    })?;
    Ok(tensors.into_iter().collect())
}

/// Reads only the [`TrainingState`] of the checkpoint folder `path`.
pub fn load_state(path: &Path) -> Result<TrainingState> {
    let state_path = path.join("state.json");
    let text = fs::read_to_string(&state_path).map_err(io_err(&state_path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: state_path.clone(),
        message: format!("state.json does not parse: {e}"),
    })
}

/// Reads the checkpoint folder `path`.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let state = load_state(path)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        encoder: read_tensors(&path.join("encoder.safetensors"))?,
        head: read_tensors(&path.join("head.safetensors"))?,
        optimizer: read_tensors(&path.join("optimizer.safetensors"))?,
        state,
    })
}

/// Copies `source[name]` into every variable of `targets` (same shapes), in place.
pub fn copy_into(
    targets: &[(String, Tensor)],
    source: &HashMap<String, Tensor>,
    what: &Path,
) -> Result<()> {
    tch::no_grad(|| {
        for (name, target) in targets {
            let src = source.get(name).ok_or_else(|| TrainError::Checkpoint {
                path: what.to_path_buf(),
                message: format!("no tensor `{name}` (another architecture or width?)"),
            })?;
            if src.size() != target.size() {
                return Err(TrainError::Checkpoint {
                    path: what.to_path_buf(),
                    message: format!(
                        "`{name}` has shape {:?}, the model expects {:?} (another architecture or width?)",
                        src.size(),
                        target.size()
                    ),
                });
            }
            let mut t = target.shallow_clone();
            t.copy_(&src.to_device(t.device()).to_kind(t.kind()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn state(step: u64) -> TrainingState {
        TrainingState {
            step,
            epoch: 1,
            batch_in_epoch: 2,
            optimizer_step: step,
            probe_optimizer_step: step,
            seed: 7,
            last_loss: 1.5,
            elapsed_s: 0.25,
        }
    }

    #[test]
    fn round_trip_and_retention() {
        let dir = std::env::temp_dir().join(format!("kinfonce-ckpt-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let w = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
        // A non-contiguous view is saved by value.
        let enc = vec![("conv1.weight".to_string(), w.tr())];
        let head = vec![("projection.model.3.weight".to_string(), w.shallow_clone())];
        let opt = vec![("model.first.conv1.weight".to_string(), w.zeros_like())];
        for step in [10, 20, 30] {
            save(&dir, &enc, &head, &opt, &state(step), 2).unwrap();
        }
        let steps: Vec<u64> = list(&dir).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![20, 30]);
        // A torn (temporary) folder is ignored.
        fs::create_dir_all(dir.join(".step-00000040.tmp")).unwrap();
        let ck = load(&latest(&dir).unwrap().unwrap()).unwrap();
        assert_eq!(ck.state, state(30));
        let got = &ck.encoder["conv1.weight"];
        assert_eq!(got.size(), vec![3, 2]);
        assert!(got.equal(&w.tr()));
        let target = vec![(
            "conv1.weight".to_string(),
            Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)),
        )];
        copy_into(&target, &ck.encoder, &ck.path).unwrap();
        assert!(target[0].1.equal(&w.tr()));
        let wrong = vec![(
            "conv1.weight".to_string(),
            Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
        )];
        let err = copy_into(&wrong, &ck.encoder, &ck.path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("conv1.weight") && err.contains("[3, 2]"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
