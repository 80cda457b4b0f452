//! Checkpoints: a folder `checkpoints/step-NNNNNNNN/` holding
//! - `encoder.safetensors`: the encoder with torchvision's names (loads into
//!   `torchvision.models.resnet18()` with `strict=False`, only `fc` missing),
//! - `head.safetensors`: the projection head (`projection.*`) and the online probe (`probe.*`);
//!   MoCo runs add the momentum encoder and head (`momentum.*`, named as the trained ones) and
//!   the queue of keys (`moco.queue`, its oldest row in the state's `queue_ptr`),
//! - `optimizer.safetensors`: optimiser moments (`model.*`, `probe.*`),
//! - `state.json`: the [`TrainingState`],
//! - `checksums.json`: the SHA-256 of each file above.
//!
//! A checkpoint is written into a hidden temporary folder, every file synced, then renamed
//! into place, so a crash leaves either the whole checkpoint or none of it. Reading verifies
//! the checksums first ([`verify`]): a damaged file is refused by name before libtorch reads a
//! byte of it (a damaged safetensors file can crash its loader, or load as other weights).

use crate::error::{io_err, torch_err, Result, TrainError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
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
    /// MoCo: the queue row the next key overwrites (the oldest key).
    #[serde(default)]
    pub queue_ptr: u64,
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

/// The files of a checkpoint, each recorded in [`CHECKSUMS`].
const FILES: [&str; 4] = [
    "encoder.safetensors",
    "head.safetensors",
    "optimizer.safetensors",
    "state.json",
];
/// SHA-256 of each of [`FILES`], hex, written last before the rename.
const CHECKSUMS: &str = "checksums.json";

fn sha256_hex(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Checks every file of the checkpoint folder `path` against the SHA-256 it recorded.
/// Checkpoints of earlier versions record none and pass unchecked.
pub fn verify(path: &Path) -> Result<()> {
    let list = path.join(CHECKSUMS);
    if !list.exists() {
        return Ok(());
    }
    let text = fs::read_to_string(&list).map_err(io_err(&list))?;
    let recorded: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| TrainError::Damaged {
            file: list.clone(),
            detail: format!("it does not parse ({e})"),
        })?;
    for file in FILES {
        let file_path = path.join(file);
        let Some(want) = recorded.get(file) else {
            return Err(TrainError::Damaged {
                file: list.clone(),
                detail: format!("it records no checksum of {file}"),
            });
        };
        if !file_path.is_file() {
            return Err(TrainError::Damaged {
                file: file_path,
                detail: "the file is missing".into(),
            });
        }
        let got = sha256_hex(&file_path)?;
        if &got != want {
            return Err(TrainError::Damaged {
                file: file_path,
                detail: format!(
                    "its SHA-256 starts {} where the checkpoint recorded {}",
                    &got[..12],
                    &want[..want.len().min(12)]
                ),
            });
        }
    }
    Ok(())
}

/// The newest checkpoint under `dir` that passes [`verify`].
pub fn newest_intact(dir: &Path) -> Result<Option<PathBuf>> {
    for (_, path) in list(dir)?.into_iter().rev() {
        if verify(&path).is_ok() {
            return Ok(Some(path));
        }
    }
    Ok(None)
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

#[cfg(test)]
thread_local! {
    /// Tests: the file of a checkpoint written to `/dev/full` instead (the kernel's ENOSPC).
    static WRITE_TO_DEV_FULL: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Where the checkpoint file `file` is written in the folder `tmp`.
fn file_path(tmp: &Path, file: &str) -> PathBuf {
    #[cfg(test)]
    if WRITE_TO_DEV_FULL.with(|f| f.get()) == Some(file) {
        return PathBuf::from("/dev/full");
    }
    tmp.join(file)
}

/// The files of one checkpoint, written and synced into the folder `tmp`, checksums last.
fn write_files(
    tmp: &Path,
    encoder: &[(String, Tensor)],
    head: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    state: &TrainingState,
) -> Result<()> {
    for (file, tensors) in [
        ("encoder.safetensors", encoder),
        ("head.safetensors", head),
        ("optimizer.safetensors", optimizer),
    ] {
        let path = file_path(tmp, file);
        Tensor::write_safetensors(&cpu_contiguous(tensors), &path)
            .map_err(torch_err(format!("writing {}", path.display())))?;
        sync_file(&path)?;
    }
    let state_path = file_path(tmp, "state.json");
    let json = serde_json::to_string_pretty(state).expect("the state serialises");
    fs::write(&state_path, json).map_err(io_err(&state_path))?;
    sync_file(&state_path)?;
    let mut sums = BTreeMap::new();
    for file in FILES {
        sums.insert(file, sha256_hex(&tmp.join(file))?);
    }
    let sums_path = tmp.join(CHECKSUMS);
    let json = serde_json::to_string_pretty(&sums).expect("checksums serialise");
    fs::write(&sums_path, json).map_err(io_err(&sums_path))?;
    sync_file(&sums_path)?;
    Ok(())
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
    if let Err(e) = write_files(&tmp, encoder, head, optimizer, state) {
        // A full disk or a failing device leaves no partial checkpoint behind.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
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

/// Reads the checkpoint folder `path`, after [`verify`].
pub fn load(path: &Path) -> Result<Checkpoint> {
    verify(path)?;
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
            queue_ptr: 3,
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

    fn tiny_checkpoint(dir: &Path, step: u64) -> PathBuf {
        let w = Tensor::arange(64, (Kind::Float, Device::Cpu));
        let t = vec![("w".to_string(), w)];
        save(dir, &t, &t, &t, &state(step), 5).unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kinfonce-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_changed_byte_is_refused_by_name_and_the_older_checkpoint_stays_usable() {
        let dir = scratch("ckpt-damage");
        let older = tiny_checkpoint(&dir, 1);
        let newer = tiny_checkpoint(&dir, 2);
        verify(&newer).unwrap();
        // One byte of a tensor's data (the header stays intact, so it would load).
        let file = newer.join("encoder.safetensors");
        let mut bytes = fs::read(&file).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(&file, bytes).unwrap();
        let err = load(&newer)
            .err()
            .expect("a damaged checkpoint must not load");
        let text = err.to_string();
        assert!(matches!(err, TrainError::Damaged { .. }), "{text}");
        assert!(
            text.contains("encoder.safetensors") && text.contains("SHA-256"),
            "{text}"
        );
        assert_eq!(newest_intact(&dir).unwrap(), Some(older.clone()));
        load(&older).unwrap();
        // A missing file is named too.
        fs::remove_file(older.join("head.safetensors")).unwrap();
        let text = verify(&older).unwrap_err().to_string();
        assert!(
            text.contains("head.safetensors") && text.contains("missing"),
            "{text}"
        );
        assert_eq!(newest_intact(&dir).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_disk_is_named_once_and_leaves_no_partial_checkpoint() {
        let dir = scratch("ckpt-full");
        let kept = tiny_checkpoint(&dir, 1);
        for file in ["encoder.safetensors", "state.json"] {
            WRITE_TO_DEV_FULL.with(|f| f.set(Some(file)));
            let w = vec![(
                "w".to_string(),
                Tensor::zeros([64], (Kind::Float, Device::Cpu)),
            )];
            let err = save(&dir, &w, &w, &w, &state(2), 5)
                .unwrap_err()
                .to_string();
            WRITE_TO_DEV_FULL.with(|f| f.set(None));
            let lower = err.to_lowercase();
            assert_eq!(lower.matches("no space left on device").count(), 1, "{err}");
            let left: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(left, ["step-00000001"], "after a failed write of {file}");
        }
        load(&kept).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
