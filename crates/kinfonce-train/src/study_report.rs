//! A study's `report.md` and its figures (`loss.svg`, `knn-monitor.svg`, `pca-<preset>.svg`),
//! written from the run folders of `kinfonce compare`, one section per function.

use crate::compare::{
    exceeds_spread, kernel_stats, runs_of, stats, PcaRecord, Stats, StudyInfo, StudyRun,
};
use crate::config::{Augment, Method};
use crate::error::{io_err, Result};
use crate::plots::{self, Series};
use crate::TrainConfig;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}", 100.0 * x)
    } else {
        "n/a".into()
    }
}

fn pm(s: &Stats) -> String {
    if s.n == 0 {
        "n/a".into()
    } else if s.n == 1 {
        format!("{} (1 seed)", pct(s.mean))
    } else {
        format!("{} ± {}", pct(s.mean), pct(s.std))
    }
}

/// Mean over seeds of curves sampled at the same x (x values present in every series).
fn mean_curve(curves: &[&Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let mut by_x: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for c in curves {
        for &(x, y) in c.iter() {
            by_x.entry((x * 1000.0).round() as i64).or_default().push(y);
        }
    }
    by_x.into_iter()
        .filter(|(_, ys)| ys.len() == curves.len())
        .map(|(x, ys)| (x as f64 / 1000.0, ys.iter().sum::<f64>() / ys.len() as f64))
        .collect()
}

/// Writes `report.md`, `loss.svg`, `knn-monitor.svg` and `pca-<preset>.svg` into `out`.
/// Returns the report's path.
pub fn write_report(out: &Path, runs: &[StudyRun], info: &StudyInfo) -> Result<PathBuf> {
    fs::create_dir_all(out).map_err(io_err(out))?;
    let kernels: Vec<&str> = info
        .kernels
        .iter()
        .map(String::as_str)
        .filter(|k| runs.iter().any(|r| r.preset == *k))
        .collect();
    let pca_figures = write_figures(out, runs, &kernels)?;
    let mut md = String::new();
    header(&mut md, runs, info, &kernels);
    results_table(&mut md, runs, &kernels);
    verdicts(&mut md, runs, &kernels);
    runs_table(&mut md, runs, out);
    figures_section(&mut md, &pca_figures);
    protocol(&mut md, runs, &kernels);
    let path = out.join("report.md");
    fs::write(&path, md).map_err(io_err(&path))?;
    Ok(path)
}

/// The loss and k-NN curves (mean over seeds) and one PCA scatter per kernel; returns the
/// PCA figures as (kernel, seed, file).
fn write_figures(
    out: &Path,
    runs: &[StudyRun],
    kernels: &[&str],
) -> Result<Vec<(String, u64, String)>> {
    let of = |k: &str| runs_of(runs, k);
    // Figures.
    let mut loss_series = Vec::new();
    let mut knn_series = Vec::new();
    for k in kernels {
        let losses: Vec<&Vec<(f64, f64)>> =
            of(k).into_iter().map(|r| &r.metrics.loss_curve).collect();
        let knns: Vec<&Vec<(f64, f64)>> = of(k).into_iter().map(|r| &r.metrics.knn_curve).collect();
        loss_series.push(Series {
            name: k.to_string(),
            points: mean_curve(&losses),
        });
        knn_series.push(Series {
            name: k.to_string(),
            points: mean_curve(&knns)
                .into_iter()
                .map(|(x, y)| (x, 100.0 * y))
                .collect(),
        });
    }
    let write = |name: &str, text: String| -> Result<()> {
        let p = out.join(name);
        fs::write(&p, text).map_err(io_err(&p))
    };
    write(
        "loss.svg",
        plots::line_plot(
            &loss_series,
            "Pretraining loss per epoch (mean over seeds)",
            "epoch",
            "loss (each kernel's own scale)",
        ),
    )?;
    write(
        "knn-monitor.svg",
        plots::line_plot(
            &knn_series,
            "k-NN monitor top-1 on val (mean over seeds)",
            "epoch",
            "k-NN top-1 (%)",
        ),
    )?;
    let mut pca_figures = Vec::new();
    for k in kernels {
        if let Some(r) = of(k)
            .into_iter()
            .find(|r| r.dir.join("pca-test.json").is_file())
        {
            let text = fs::read_to_string(r.dir.join("pca-test.json"))
                .map_err(io_err(r.dir.join("pca-test.json")))?;
            if let Ok(p) = serde_json::from_str::<PcaRecord>(&text) {
                let name = format!("pca-{k}.svg");
                write(
                    &name,
                    plots::scatter_plot(
                        &p.points,
                        &p.labels,
                        &p.class_names,
                        &format!(
                            "{k}, seed {}: PCA of {} test embeddings",
                            r.seed,
                            p.points.len()
                        ),
                        &format!("PC1 ({:.1}% of variance)", 100.0 * p.explained[0]),
                        &format!("PC2 ({:.1}% of variance)", 100.0 * p.explained[1]),
                    ),
                )?;
                pca_figures.push((k.to_string(), r.seed, name));
            }
        }
    }
    Ok(pca_figures)
}

/// Title, command and machine.
fn header(md: &mut String, runs: &[StudyRun], info: &StudyInfo, kernels: &[&str]) {
    let _ = writeln!(md, "# Kernel comparison: {}\n", kernels.join(", "));
    let _ = writeln!(
        md,
        "Written by `kinfonce compare`. Every number below comes from the run folders under `runs/` \
         (their `metrics.jsonl`, checkpoints and `eval-*.json`).\n"
    );
    let _ = writeln!(md, "Command:\n\n```\n{}\n```\n", info.command);
    let _ = writeln!(md, "| machine | |\n|---|---|");
    for (k, v) in &info.machine {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let total_train: f64 = runs.iter().map(|r| r.metrics.wall_s).sum();
    let _ = writeln!(
        md,
        "| pretraining time, all runs | {:.0} s |\n| this invocation (wall) | {:.0} s |\n",
        total_train, info.wall_s
    );
}

/// Mean ± std over seeds per kernel.
fn results_table(md: &mut String, runs: &[StudyRun], kernels: &[&str]) {
    // Main table.
    let _ = writeln!(
        md,
        "## Results (mean ± sample std over seeds, top-1 in %)\n"
    );
    let _ = writeln!(
        md,
        "| kernel | seeds | k-NN top-1 | k-NN at init | linear top-1 | linear top-5 | linear at init (top-1) | final loss |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for k in kernels {
        let Some(s) = kernel_stats(runs, k) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {k} | {} | {} | {} | {} | {} | {} | {:.4} |",
            s.seeds,
            pm(&s.knn_top1),
            pm(&s.knn_top1_init),
            pm(&s.linear_top1),
            pm(&s.linear_top5),
            pm(&s.linear_top1_init),
            s.final_loss.mean,
        );
    }
    let _ = writeln!(md);
}

/// Each kernel against gaussian by the spread rule.
fn verdicts(md: &mut String, runs: &[StudyRun], kernels: &[&str]) {
    let of = |k: &str| runs_of(runs, k);
    let st = |k: &str, f: &dyn Fn(&StudyRun) -> f64| {
        stats(&of(k).into_iter().map(f).collect::<Vec<_>>())
    };
    // Verdicts.
    let _ = writeln!(md, "## Differences against gaussian\n");
    let _ = writeln!(
        md,
        "Rule: a difference of means counts as larger than the seed-to-seed spread when \
         |mean_kernel - mean_gaussian| > std_kernel + std_gaussian (sample standard deviations \
         over seeds). This is a plain spread rule, not a significance test; with 2 or 3 seeds it \
         only separates gaps that are large against the noise.\n"
    );
    if kernels.contains(&"gaussian") {
        for k in kernels.iter().filter(|k| **k != "gaussian") {
            for (metric, f) in [
                (
                    "k-NN top-1",
                    &(|r: &StudyRun| r.evals.knn.top1) as &dyn Fn(&StudyRun) -> f64,
                ),
                ("linear top-1", &|r: &StudyRun| r.evals.linear.top1),
            ] {
                let (a, g) = (st(k, f), st("gaussian", f));
                let diff = 100.0 * (a.mean - g.mean);
                let spread = 100.0 * (a.std + g.std);
                let verdict = match exceeds_spread(&a, &g) {
                    None => "cannot tell: fewer than 2 seeds on a side".to_string(),
                    Some(true) => format!(
                        "**exceeds** the spread ({:+.2} points vs {:.2}): {k} is {} than gaussian at this scale",
                        diff,
                        spread,
                        if diff > 0.0 { "better" } else { "worse" }
                    ),
                    Some(false) => format!(
                        "does **not** exceed the spread ({diff:+.2} points vs {spread:.2}): indistinguishable from seed noise"
                    ),
                };
                let _ = writeln!(md, "- {k} vs gaussian, {metric}: {verdict}.");
            }
        }
    } else {
        let _ = writeln!(md, "(gaussian is not among the kernels of this study.)");
    }
    let _ = writeln!(md);
}

/// One row per run folder.
fn runs_table(md: &mut String, runs: &[StudyRun], out: &Path) {
    // Per-run rows.
    let _ = writeln!(md, "## Runs\n");
    let _ = writeln!(
        md,
        "| run | epochs | steps | final loss | train time (s) | views/s | k-NN top-1 | linear top-1 | linear top-5 | k-NN init | linear init |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let m = &r.metrics;
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {:.4} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            r.dir.strip_prefix(out).unwrap_or(&r.dir).display(),
            m.epochs,
            m.steps,
            m.final_loss,
            m.wall_s,
            m.views_per_s,
            pct(r.evals.knn.top1),
            pct(r.evals.linear.top1),
            pct(r.evals.linear.top5),
            pct(r.evals.knn_init.top1),
            pct(r.evals.linear_init.top1),
        );
    }
    let _ = writeln!(md);
}

/// Links to the figures.
fn figures_section(md: &mut String, pca_figures: &[(String, u64, String)]) {
    // Figures.
    let _ = writeln!(md, "## Figures\n");
    let _ = writeln!(
        md,
        "![loss](loss.svg)\n\n![k-NN monitor](knn-monitor.svg)\n"
    );
    for (k, seed, name) in pca_figures {
        let _ = writeln!(md, "![PCA {k} seed {seed}]({name})\n");
    }
}

/// The method in words: SimCLR, or MoCo with its momentum, queue and splits.
fn method_words(c: &TrainConfig) -> String {
    let m = &c.method;
    match m.method {
        Method::Simclr => "SimCLR (the two views of the batch as positives and negatives).".into(),
        Method::Moco => format!(
            "MoCo: keys from a momentum encoder and head (m {}) with shuffled batch norm, \
             negatives from a queue of {} keys, {} batch-norm splits.",
            m.moco_momentum, m.queue_size, m.bn_splits
        ),
    }
}

/// How the runs were trained and evaluated, from the first run's configuration.
fn protocol(md: &mut String, runs: &[StudyRun], kernels: &[&str]) {
    let of = |k: &str| runs_of(runs, k);
    // Protocol.
    let _ = writeln!(md, "## Protocol\n");
    if let Some(first) = runs.first() {
        let c = &first.config;
        let _ = writeln!(
            md,
            "Pretraining (identical for every run except the loss and the seed): data `{}`{}, \
             `train` = the training images minus a seeded class-balanced {:.0}% validation split{}, \
             {} width {} (stem {}), projection head {} -> {} (concat-sum doubles the output), \
             batch {} pairs, {} epochs{}, optimiser {} (lr {}, weight decay {}), linear warmup \
             min(10 epochs, 10%) then cosine per step, precision {}, device {}, {} threads. \
             {} {} The k-NN monitor (k {}, t {}) uses at most {} train images as the bank and {} \
             val images as queries.\n",
            c.data.data.display(),
            c.data.format.map(|f| format!(" ({f})")).unwrap_or_default(),
            100.0 * c.data.val_fraction,
            c.data.subset.map(|n| format!(", then a class-balanced seeded subset of {n} images for pretraining")).unwrap_or_default(),
            c.model.arch,
            c.model.width,
            c.model.stem,
            c.model.hidden_dim,
            c.model.out_dim,
            c.optim.batch,
            c.optim.epochs.map(|e| e.to_string()).unwrap_or_else(|| "no".into()),
            c.max_steps.map(|m| format!(" (stopped at step {m})")).unwrap_or_default(),
            c.optim.optimizer,
            c.base_lr(),
            c.optim.weight_decay,
            c.compute_label(),
            c.compute.device,
            c.compute.threads,
            method_words(c),
            match c.data.augment {
                Augment::Auto => "SimCLR augmentations of the data set's preset.",
                Augment::MocoV2 => "lightly's MoCo v2 augmentation (ImageNet normalisation).",
                Augment::MocoV2SimclrViews => {
                    "lightly's MoCo v2 augmentation before 1.4.24 (SimCLR's views, ImageNet \
                     normalisation)."
                }
            },
            c.monitor.knn_k,
            c.monitor.knn_t,
            c.monitor.knn_bank,
            c.monitor.knn_queries
        );
        let _ = writeln!(
            md,
            "Losses (kernel convention K(x, y) = exp(-||x - y||_p^gamma / tau)):\n"
        );
        for k in kernels {
            if let Some(r) = of(k).first() {
                let spec = r
                    .config
                    .loss_spec()
                    .ok()
                    // The same JSON `--loss-json` takes, so a row can be rerun by hand.
                    .map(|s| serde_json::to_string(&s).expect("loss specs serialise"))
                    .unwrap_or_else(|| "?".into());
                let _ = writeln!(md, "- `{k}`: `{spec}`");
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Evaluation (each run's newest checkpoint = the end of its schedule):\n"
        );
        let _ = writeln!(md, "- k-NN: {}.", first.evals.knn.description);
        let _ = writeln!(md, "- Linear: {}.", first.evals.linear.description);
        let _ = writeln!(
            md,
            "- At init: the same network drawn with the run's seed before any step (the trainer's \
             initialisation), evaluated by the same two protocols.\n"
        );
        let _ = writeln!(
            md,
            "The fast probe is not the official protocol (which augments the train images every \
             epoch: `kinfonce eval linear` without `--fast`); see `kinfonce eval linear --help` for \
             the expected gap. The evaluation's `train` split follows the run's seed, so seeds \
             differ in initialisation, data order, augmentations, subset and split alike.\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_curve_keeps_common_points() {
        let a = vec![(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)];
        let b = vec![(0.0, 3.0), (1.0, 5.0)];
        assert_eq!(mean_curve(&[&a, &b]), vec![(0.0, 2.0), (1.0, 4.0)]);
    }
}
