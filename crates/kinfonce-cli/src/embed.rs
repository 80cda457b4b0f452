//! `kinfonce embed`: export frozen encoder features and labels for analysis elsewhere.

use crate::eval_cmd::{encoder_source, feature_options, SourceArgs};
use anyhow::{bail, Context};
use kinfonce_data::{DataConfig, Split};
use kinfonce_train::features::{eval_source, labels_tensor, run_normalization, FrozenEncoder};
use kinfonce_train::tch::Tensor;
use kinfonce_train::trainer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Export encoder features (before the projection head) and labels of one split.
///
/// FILE.safetensors: tensors `features` (f32 [n, d]) and `labels` (i64 [n]).
/// FILE.npy: FILE holds the features (f32 [n, d]) and FILE with `.npy` replaced by
/// `.labels.npy` the labels (i64 [n]), e.g. `emb.npy` + `emb.labels.npy`.
/// Rows follow the split's order; unlabelled images get label 0.
///
/// In Python: `safetensors.numpy.load_file("emb.safetensors")` or
/// `numpy.load("emb.npy"), numpy.load("emb.labels.npy")`.
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Split: train (training images minus the run's validation split), val, test (the
    /// official test set).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Output file: .safetensors or .npy.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// The labels file beside a features `.npy` file.
pub fn labels_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.labels.npy"))
}

/// Fails now, not after minutes of feature computation, when `out` cannot be written.
fn check_writable(out: &Path) -> anyhow::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot write --out {}: cannot create its folder {}",
                out.display(),
                dir.display()
            )
        })?;
    }
    let existed = out.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(out)
        .with_context(|| format!("cannot write --out {}", out.display()))?;
    if !existed {
        let _ = std::fs::remove_file(out);
    }
    Ok(())
}

pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    crate::pretrain::ensure_passive_openmp();
    let ext = a
        .out
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if ext != "safetensors" && ext != "npy" {
        bail!(
            "--out {}: expected a .safetensors or .npy file name",
            a.out.display()
        );
    }
    let split: Split = a
        .split
        .parse()
        .map_err(|e| anyhow::anyhow!("--split: {e}"))?;
    check_writable(&a.out)?;
    if a.source.init && a.source.checkpoint.is_some() {
        bail!("--init evaluates the network at initialisation; drop --checkpoint");
    }
    let threads = trainer::configure_threads(a.source.threads);
    let source = encoder_source(&a.source);
    let config = source.config()?;
    let (path, format) = eval_source(
        &config,
        a.source.data.as_deref(),
        a.source.format.as_deref(),
    )?;
    let mut dc = DataConfig::new(&path);
    dc.format = format;
    dc.val_fraction = config.data.val_fraction;
    dc.seed = config.compute.seed;
    dc.folder = config.folder_options();
    eprintln!("reading the {split} split of {}", path.display());
    let data = Arc::new(dc.load(split)?);
    let format = dc.resolved_format()?;
    let options = feature_options(&a.source, threads);
    let encoder = FrozenEncoder::load_with_config(
        &source,
        config,
        &options,
        data.height().max(data.width()),
        data.channels(),
    )?;
    let n = data.len();
    let normalization = run_normalization(&encoder.config, format);
    let features = encoder.features(&data, &normalization, &options, &mut |d| {
        if d == n {
            eprintln!("  features: {d}/{n}");
        }
    })?;
    let labels = labels_tensor(&data);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let written = if ext == "safetensors" {
        Tensor::write_safetensors(
            &[("features", features.shallow_clone()), ("labels", labels)],
            &a.out,
        )
        .with_context(|| format!("writing {}", a.out.display()))?;
        vec![a.out.clone()]
    } else {
        let lp = labels_path(&a.out);
        features
            .write_npy(&a.out)
            .with_context(|| format!("writing {}", a.out.display()))?;
        labels
            .write_npy(&lp)
            .with_context(|| format!("writing {}", lp.display()))?;
        vec![a.out.clone(), lp]
    };
    let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!(
        "{n} x {} features of the {split} split ({}) -> {}",
        encoder.feature_dim,
        match &encoder.checkpoint {
            Some(p) => format!("checkpoint {}", p.display()),
            None => "network at initialisation".into(),
        },
        files.join(", ")
    );
    if a.source.json {
        println!(
            "{}",
            serde_json::json!({
                "n": n,
                "dim": encoder.feature_dim,
                "split": split.to_string(),
                "files": files,
                "checkpoint": encoder.checkpoint.as_ref().map(|p| p.display().to_string()),
                "step": encoder.step,
            })
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_file_sits_beside_the_features() {
        assert_eq!(
            labels_path(Path::new("out/emb.npy")),
            PathBuf::from("out/emb.labels.npy")
        );
    }
}
