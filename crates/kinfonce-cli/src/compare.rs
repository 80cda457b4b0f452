//! `kinfonce compare`: pretrain every kernel with every seed, evaluate each run (k-NN and the
//! fast linear probe, trained and at initialisation) and write the study's report.

use crate::overlay;
use crate::pretrain::{cpu_model, git_revision, provenance, resolve_config, PretrainArgs};
use anyhow::{bail, Context};
use kinfonce_data::Split;
use kinfonce_train::compare::{
    evaluate_run, gap_changes, gaps, kernel_stats, read_evaluated_run, read_metrics, run_dir,
    run_state, trajectory_differences, DataCache, Horizon, InitCache, RunState, StudyEvalOptions,
    StudyInfo, StudyRun,
};
use kinfonce_train::eval::{KnnConfig, ProbeConfig};
use kinfonce_train::features::{EvalDataOptions, FeatureOptions};
use kinfonce_train::study_report::write_report;
use kinfonce_train::trainer::{self, read_run_config};
use kinfonce_train::{Precision, RunOptions, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::time::Instant;

const ALL_KERNELS: &str = "gaussian,laplacian,exp-0.5,simple-sum,sum-of-losses,concat-sum";

/// Compare kernels: pretrain every kernel with every seed, evaluate, write DIR/report.md.
///
/// Each run is a standard pretraining run folder DIR/runs/<preset>-seed<S>/, configured exactly
/// as `kinfonce pretrain --preset <preset> --seed <S> --out DIR/runs/<preset>-seed<S>` with the
/// same shared flags (--epochs, --subset, --arch, --width, --batch, --precision,
/// --channels-last, --threads, --data, ...) would configure it, so runs started by hand with
/// that command are adopted. Resumable: a finished run is not trained again, an unfinished one
/// resumes from its newest checkpoint, evaluations are cached in the run folder
/// (eval-knn.json, eval-linear.json, eval-knn-init.json, eval-linear-init.json). A run kept
/// without weights (config.toml, a metrics.jsonl that reached the schedule's end and the four
/// eval records, no checkpoints/) counts as finished and evaluated; without its eval records
/// it is an error that names it. An existing run with other trajectory settings is an error
/// that names it.
///
/// Report: each kernel's mean ± std with the 95% interval of the mean (Student t over seeds),
/// and each kernel's per-seed difference to --baseline with its interval; with --horizon-b,
/// the same at the second horizon and how each gap changes between the two (paired by seed).
///
/// Evaluation: weighted k-NN (k 200, t 0.1) and the fast linear probe (features without
/// augmentation, SGD lr 0.3, momentum 0.9, weight decay 1e-6, cosine over 100 epochs, batch
/// 256), fit on `train` (training images minus the validation split), reported on `test`;
/// both also for the same network at initialisation. Ctrl-C stops cleanly (checkpoint saved);
/// run the same command again to continue.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Presets to compare, comma-separated: loss presets (gaussian, laplacian, ...; on top of
    /// --run-preset when given) or run presets (moco-origin, moco-sum: the whole recipe).
    #[arg(long, default_value = ALL_KERNELS, value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// Seeds, comma-separated.
    #[arg(long, default_value = "0,1,2", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Study folder (runs/, report.md, figures).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The kernel every other kernel is compared to, seed by seed (one of --kernels).
    /// [default: gaussian when compared, else the first of --kernels]
    #[arg(long, value_name = "KERNEL")]
    pub baseline: Option<String>,
    /// A second study folder (made by its own `kinfonce compare --out DIR` with the same
    /// kernels and seeds and a longer schedule) whose runs join the report: the gaps to
    /// --baseline at both horizons and their change (gap at B minus gap at A, paired by seed).
    /// Read as it stands, never trained or evaluated: its runs of --kernels and --seeds that
    /// exist must be finished and evaluated.
    #[arg(long, value_name = "DIR")]
    pub horizon_b: Option<PathBuf>,
    /// The pretraining settings every run of the study shares.
    #[command(flatten)]
    pub run: SharedRunFlags,
    /// Evaluation: use at most N train images (evenly spaced; default all of `train`).
    #[arg(long, value_name = "N")]
    pub subset_train: Option<usize>,
    /// Evaluation: epochs of the fast linear probe.
    #[arg(long, default_value_t = 100)]
    pub probe_epochs: usize,
    /// Evaluation: k of the k-NN classifier.
    #[arg(long, default_value_t = 200)]
    pub knn_k: i64,
    /// Evaluation: temperature of the k-NN vote.
    #[arg(long, default_value_t = 0.1)]
    pub knn_t: f64,
    /// Evaluation: images per forward pass.
    #[arg(long, default_value_t = 256)]
    pub eval_batch: usize,
    /// Do not pretrain: evaluate and report the finished runs only (unfinished or absent runs
    /// are listed and left out).
    #[arg(long)]
    pub report_only: bool,
    /// Print a summary as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// The flags of `kinfonce pretrain` that a study passes to each of its runs (named as in
/// `kinfonce pretrain`, so they pass through by name).
#[derive(clap::Args, Debug, Default, serde::Serialize)]
pub struct SharedRunFlags {
    /// Pretraining epochs. [default: 10]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: Option<u64>,
    /// Pretrain on a class-balanced seeded subset of N training images.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub subset: Option<u64>,
    /// Encoder: resnet18, resnet34, resnet50.
    #[arg(long)]
    pub arch: Option<String>,
    /// Base channel count.
    #[arg(long)]
    pub width: Option<i64>,
    /// Pairs per pretraining step.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Precision of pretraining and evaluation: auto, f32 or bf16 (as `kinfonce pretrain`).
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Channels-last memory layout: `--channels-last` on, `--channels-last=false` off.
    /// [default: chosen with the precision]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub channels_last: Option<bool>,
    /// Threads for libtorch and the image pipeline (0 = all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Data set (any format pretrain reads). [default: as `kinfonce pretrain`]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data layout when detection is not wanted.
    #[arg(long)]
    pub format: Option<String>,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Optimiser: adam, sgd or lars (as `kinfonce pretrain`).
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Base learning rate. [default: the optimiser's]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Method: simclr or moco.
    #[arg(long, value_name = "simclr|moco")]
    pub method: Option<String>,
    /// MoCo: momentum of the key encoder.
    #[arg(long, value_name = "M")]
    pub moco_momentum: Option<f64>,
    /// MoCo: keys in the queue of negatives.
    #[arg(long, value_name = "KEYS")]
    pub queue_size: Option<usize>,
    /// MoCo: batch-norm splits of both encoders.
    #[arg(long, value_name = "S")]
    pub bn_splits: Option<usize>,
    /// The views' augmentation: auto or moco-v2.
    #[arg(long, value_name = "auto|moco-v2")]
    pub augment: Option<String>,
    /// Batch norm in the projection head: `--head-bn` on, `--head-bn=false` off.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub head_bn: Option<bool>,
    /// The recipe under every run whose entry in --kernels is a loss preset (e.g. moco-origin:
    /// MoCo runs that differ only in their loss). [default: none]
    #[serde(skip)]
    #[arg(long, value_name = "NAME")]
    pub run_preset: Option<String>,
}

/// The configuration `kinfonce pretrain` gives the run (preset, seed) of this study.
pub(crate) fn run_config(a: &CompareArgs, preset: &str, seed: u64) -> anyhow::Result<TrainConfig> {
    let shared = overlay::flags_table(&a.run)?;
    let mut args: PretrainArgs = toml::Value::Table(shared).try_into()?;
    // A run preset in --kernels brings its own loss; a loss preset sits on the shared recipe.
    if kinfonce_train::config::RUN_PRESETS.contains(&preset) {
        args.run_preset = Some(preset.to_string());
    } else {
        args.preset = Some(preset.to_string());
        args.run_preset = a.run.run_preset.clone();
    }
    args.seed = Some(seed);
    args.out = Some(run_dir(&a.out, preset, seed));
    resolve_config(&args).with_context(|| format!("configuring {preset} seed {seed}"))
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Brings the run in `dir` to the end of its schedule. Returns false when interrupted.
fn pretrain(dir: &Path, wanted: TrainConfig, label: &str) -> anyhow::Result<bool> {
    if dir.join("config.toml").is_file() {
        let existing = read_run_config(dir)?;
        let diffs = trajectory_differences(&existing, &wanted)?;
        if !diffs.is_empty() {
            bail!(
                "{} holds a run with other trajectory settings than this study asks for ({}); \
                 move it away or run the study with the settings it was made with",
                dir.display(),
                diffs.join("; ")
            );
        }
    }
    let state = run_state(dir)?;
    let (config, resume) = match state {
        RunState::Finished { step, weights } => {
            let kept = if weights {
                ""
            } else {
                ", kept without weights"
            };
            eprintln!("[{label}] pretraining finished (step {step}{kept}), skipped");
            return Ok(true);
        }
        RunState::Absent => (wanted, false),
        RunState::Unfinished { step, total } => {
            if kinfonce_train::checkpoint::latest(&dir.join("checkpoints"))?.is_none() {
                // Started but stopped before its first checkpoint: nothing to resume from.
                let aside = dir.with_file_name(format!(
                    "{}.abandoned-{}",
                    dir.file_name().unwrap_or_default().to_string_lossy(),
                    unix_time()
                ));
                std::fs::rename(dir, &aside)
                    .with_context(|| format!("moving {} aside", dir.display()))?;
                eprintln!(
                    "[{label}] {} had no checkpoint; moved to {} and starting afresh",
                    dir.display(),
                    aside.display()
                );
                (wanted, false)
            } else {
                eprintln!("[{label}] resuming at step {step} of {total}");
                (read_run_config(dir)?, true)
            }
        }
    };
    let device = trainer::parse_device(&config.compute.device)?;
    let threads = trainer::configure_threads(config.compute.threads);
    if !resume {
        eprintln!("[{label}] pretraining -> {}", dir.display());
    }
    let mut t = Trainer::new(
        config,
        dir,
        resume,
        RunOptions {
            quiet: false,
            provenance: provenance(device, threads),
            ..Default::default()
        },
    )?;
    let s = t.run()?;
    eprintln!(
        "[{label}] {} steps, loss {:.4}, k-NN monitor {}, {:.0} views/s, {:.0} s",
        s.steps,
        s.final_loss,
        s.knn_top1
            .map(|v| format!("{:.2}%", 100.0 * v))
            .unwrap_or_else(|| "n/a".into()),
        s.views_per_s,
        s.wall_s
    );
    Ok(!s.interrupted)
}

/// How each run of the study is evaluated.
fn study_eval_options(a: &CompareArgs, threads: usize) -> anyhow::Result<StudyEvalOptions> {
    let options = StudyEvalOptions {
        features: FeatureOptions {
            device: String::new(),
            precision: a.run.precision.unwrap_or_default(),
            channels_last: a.run.channels_last,
            batch: a.eval_batch.max(1),
            threads,
            ..Default::default()
        },
        data: EvalDataOptions {
            data: None,
            format: None,
            report_split: Split::Test,
            subset_train: a.subset_train,
            ..Default::default()
        },
        knn: KnnConfig {
            k: a.knn_k,
            temperature: a.knn_t,
        },
        probe: ProbeConfig {
            epochs: a.probe_epochs,
            ..ProbeConfig::default()
        },
        pca: false,
        pca_points: 2000,
    };
    options.knn.validate()?;
    options.probe.validate()?;
    Ok(options)
}

/// Where and how the study ran, for its report.
fn study_info(a: &CompareArgs, runs: &[StudyRun], threads: usize, start: Instant) -> StudyInfo {
    let device = runs
        .first()
        .map(|r| r.config.compute.device.clone())
        .unwrap_or_else(|| "cpu".into());
    StudyInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: vec![
            ("cpu".into(), cpu_model()),
            ("threads".into(), threads.to_string()),
            ("device".into(), device),
            (
                "libtorch".into(),
                format!(
                    "{} (PyPI wheel torch=={0}), tch {}",
                    kinfonce_train::LIBTORCH_VERSION,
                    kinfonce_train::TCH_VERSION
                ),
            ),
            ("git revision".into(), git_revision()),
        ],
        wall_s: start.elapsed().as_secs_f64(),
        kernels: a.kernels.clone(),
        seeds: a.seeds.clone(),
        ..Default::default()
    }
}

/// The baseline of the study: --baseline, else gaussian when compared, else the first kernel.
fn baseline(a: &CompareArgs) -> anyhow::Result<String> {
    match &a.baseline {
        Some(b) if a.kernels.contains(b) => Ok(b.clone()),
        Some(b) => bail!(
            "--baseline {b} is not among --kernels ({})",
            a.kernels.join(",")
        ),
        None if a.kernels.iter().any(|k| k == "gaussian") => Ok("gaussian".into()),
        None => Ok(a.kernels[0].clone()),
    }
}

/// The finished, evaluated runs of --horizon-b for this study's kernels and seeds.
fn read_horizon(a: &CompareArgs, dir: &Path) -> anyhow::Result<Horizon> {
    if !dir.join("runs").is_dir() {
        bail!(
            "--horizon-b {}: no runs/ folder (not a study folder of `kinfonce compare`)",
            dir.display()
        );
    }
    let mut runs = Vec::new();
    for k in &a.kernels {
        for &s in &a.seeds {
            runs.extend(read_evaluated_run(dir, k, s).context("reading --horizon-b")?);
        }
    }
    if runs.is_empty() {
        bail!(
            "--horizon-b {}: no run of --kernels {} with --seeds {:?}",
            dir.display(),
            a.kernels.join(","),
            a.seeds
        );
    }
    Ok(Horizon {
        dir: dir.to_path_buf(),
        runs,
    })
}

/// The per-kernel table on stdout, and with `--json` one JSON line.
fn print_summary(
    a: &CompareArgs,
    runs: &[StudyRun],
    info: &StudyInfo,
    report: &Path,
    missing: &[String],
) -> anyhow::Result<()> {
    println!(
        "{:>14} {:>6} {:>18} {:>18} {:>14} {:>14}",
        "kernel", "seeds", "k-NN top-1 %", "linear top-1 %", "k-NN init %", "linear init %"
    );
    let mut summary = serde_json::Map::new();
    for k in &a.kernels {
        let Some(s) = kernel_stats(runs, k) else {
            continue;
        };
        println!(
            "{k:>14} {:>6} {:>10.2} ± {:<5.2} {:>10.2} ± {:<5.2} {:>14.2} {:>14.2}",
            s.seeds,
            100.0 * s.knn_top1.mean,
            100.0 * s.knn_top1.std,
            100.0 * s.linear_top1.mean,
            100.0 * s.linear_top1.std,
            100.0 * s.knn_top1_init.mean,
            100.0 * s.linear_top1_init.mean
        );
        summary.insert(k.clone(), serde_json::to_value(&s)?);
    }
    println!("report: {}", report.display());
    if a.json {
        let paired = gaps(runs, &a.kernels, &info.baseline);
        let horizon_b = match &info.horizon_b {
            None => serde_json::Value::Null,
            Some(h) => {
                let kernels: serde_json::Map<_, _> = a
                    .kernels
                    .iter()
                    .filter_map(|k| {
                        Some((
                            k.clone(),
                            serde_json::to_value(kernel_stats(&h.runs, k)?).ok()?,
                        ))
                    })
                    .collect();
                let paired_b = gaps(&h.runs, &a.kernels, &info.baseline);
                serde_json::json!({
                    "dir": h.dir.display().to_string(),
                    "runs": h.runs.len(),
                    "kernels": kernels,
                    "paired": paired_b,
                    "gap_change": gap_changes(&paired, &paired_b),
                })
            }
        };
        println!(
            "{}",
            serde_json::json!({
                "report": report.display().to_string(),
                "runs": runs.len(),
                "not_finished": missing,
                "kernels": summary,
                "interval": "95%, Student t over seeds: mean ± t_0.975,n-1 · std / sqrt(n)",
                "baseline": info.baseline,
                "paired": paired,
                "horizon_b": horizon_b,
                "wall_s": info.wall_s,
            })
        );
    }
    Ok(())
}

/// A list flag names each value once: a repeat would be a second, identical run.
fn refuse_repeats<T: std::fmt::Display + Eq + std::hash::Hash>(
    flag: &str,
    values: &[T],
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    match values.iter().find(|v| !seen.insert(*v)) {
        Some(v) => bail!("{flag} lists {v} twice"),
        None => Ok(()),
    }
}

pub fn run(a: CompareArgs) -> anyhow::Result<()> {
    crate::pretrain::ensure_passive_openmp();
    let start = Instant::now();
    if a.kernels.is_empty() || a.seeds.is_empty() {
        bail!("--kernels and --seeds need at least one value each");
    }
    refuse_repeats("--kernels", &a.kernels)?;
    refuse_repeats("--seeds", &a.seeds)?;
    let baseline = baseline(&a)?;
    // Read before training, so a bad second study fails before hours of training.
    let horizon_b = a
        .horizon_b
        .as_deref()
        .map(|dir| read_horizon(&a, dir))
        .transpose()?;
    // Every configuration first, so a bad flag fails before hours of training.
    let mut plan = Vec::new();
    for k in &a.kernels {
        for &s in &a.seeds {
            plan.push((k.clone(), s, run_config(&a, k, s)?));
        }
    }
    let threads = trainer::configure_threads(plan[0].2.compute.threads);
    trainer::install_signal_handler();
    std::fs::create_dir_all(a.out.join("runs"))
        .with_context(|| format!("creating {}", a.out.display()))?;
    let eval_options = study_eval_options(&a, threads)?;
    let mut data = DataCache::default();
    let mut init_cache = InitCache::new();
    let mut runs = Vec::new();
    let mut missing = Vec::new();
    let total = plan.len();
    for (i, (kernel, seed, config)) in plan.into_iter().enumerate() {
        let dir = run_dir(&a.out, &kernel, seed);
        let label = format!("{}/{total} {kernel} seed {seed}", i + 1);
        if a.report_only {
            if !matches!(run_state(&dir)?, RunState::Finished { .. }) {
                eprintln!("[{label}] not finished, left out of the report");
                missing.push(dir.display().to_string());
                continue;
            }
        } else if !pretrain(&dir, config, &label)? {
            eprintln!(
                "interrupted: the checkpoint is saved; run the same command again to continue"
            );
            return Ok(());
        }
        if trainer::stop_requested() {
            eprintln!("interrupted; run the same command again to continue");
            return Ok(());
        }
        let options = StudyEvalOptions {
            pca: seed == a.seeds[0],
            ..eval_options.clone()
        };
        let evals = evaluate_run(&dir, &mut data, &mut init_cache, &options, &mut |msg| {
            eprintln!("[{label}] {msg}")
        })
        .with_context(|| format!("evaluating {}", dir.display()))?;
        let metrics = read_metrics(&dir)?;
        runs.push(StudyRun {
            preset: kernel,
            seed,
            config: read_run_config(&dir)?,
            dir,
            evals,
            metrics,
        });
    }
    if runs.is_empty() {
        bail!(
            "no finished run to report on ({} not finished)",
            missing.len()
        );
    }
    let info = StudyInfo {
        baseline,
        horizon_b,
        ..study_info(&a, &runs, threads, start)
    };
    let report = write_report(&a.out, &runs, &info)?;
    print_summary(&a, &runs, &info, &report, &missing)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use kinfonce_train::config::Method;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        compare: CompareArgs,
    }

    fn args(flags: &str) -> CompareArgs {
        let argv = format!("compare --out study {flags}");
        Cli::parse_from(argv.split_whitespace()).compare
    }

    #[test]
    fn kernels_may_be_run_presets_or_losses_on_the_shared_recipe() {
        let a = args("--kernels moco-sum,gaussian --run-preset moco-origin --batch 64");
        let sum = run_config(&a, "moco-sum", 0).unwrap();
        let gaussian = run_config(&a, "gaussian", 1).unwrap();
        for c in [&sum, &gaussian] {
            assert_eq!(c.method.method, Method::Moco);
            assert_eq!(c.optim.batch, 64, "the shared flags sit above the recipe");
        }
        assert!(matches!(
            sum.loss_spec().unwrap(),
            kinfonce_loss::LossSpec::Sum { .. }
        ));
        assert_eq!(
            gaussian.loss_spec().unwrap(),
            kinfonce_loss::LossSpec::preset("gaussian", 128).unwrap()
        );
        // Without a shared recipe a loss preset trains SimCLR, as before.
        let plain = run_config(&args("--kernels gaussian"), "gaussian", 0).unwrap();
        assert_eq!(plain.method.method, Method::Simclr);
    }
}
