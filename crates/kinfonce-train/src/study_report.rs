//! A study's `report.md` and its figures (`loss.svg`, `knn-monitor.svg`, `knn-by-seed.svg`,
//! `linear-by-seed.svg`, `pca-<preset>.svg`), written from the run folders of `kinfonce
//! compare`, one section per function.

use crate::compare::{
    by_seed, gap_changes, gaps, kernel_stats, runs_of, Paired, PcaRecord, Stats, StudyInfo,
    StudyRun, ACCURACIES,
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

/// Mean ± std [95% interval] over seeds.
fn pm_ci(s: &Stats) -> String {
    if s.n < 2 {
        pm(s)
    } else {
        format!("{} [{}, {}]", pm(s), pct(s.lo), pct(s.hi))
    }
}

/// In points: "+0.42 [-0.31, +1.15]".
fn points(s: &Stats) -> String {
    let p = |x: f64| format!("{:+.2}", 100.0 * x);
    if s.n < 2 {
        p(s.mean)
    } else {
        format!("{} [{}, {}]", p(s.mean), p(s.lo), p(s.hi))
    }
}

/// What a paired interval says: a difference (`above` or `below` 0) when it excludes 0.
fn reading(p: &Paired, above: &str, below: &str) -> String {
    let s = &p.stats;
    let per_seed: Vec<String> = p
        .differences
        .iter()
        .map(|d| format!("{:+.2}", 100.0 * d))
        .collect();
    let verdict = if s.n < 2 {
        "cannot tell: fewer than 2 paired seeds".to_string()
    } else if s.lo > 0.0 || s.hi < 0.0 {
        format!(
            "**{}** (the interval excludes 0)",
            if s.mean > 0.0 { above } else { below }
        )
    } else {
        "no difference resolved (the interval holds 0)".to_string()
    };
    format!(
        "{} points over {} seeds (per seed {}): {verdict}",
        points(s),
        s.n,
        per_seed.join(", ")
    )
}

/// "N epochs" (or "N steps") of a study's schedule, from its first run.
fn horizon_name(runs: &[StudyRun]) -> String {
    runs.first()
        .map(|r| match (r.config.max_steps, r.config.optim.epochs) {
            (Some(s), _) => format!("{s} steps"),
            (None, Some(e)) => format!("{e} epochs"),
            (None, None) => "the default schedule".into(),
        })
        .unwrap_or_default()
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
    let pca_figures = write_figures(out, runs, info, &kernels)?;
    let mut md = String::new();
    header(&mut md, runs, info, &kernels);
    let title = match &info.horizon_b {
        Some(_) => format!(" at {}", horizon_name(runs)),
        None => String::new(),
    };
    results_table(&mut md, runs, &kernels, &title);
    paired_differences(&mut md, runs, info, &kernels);
    second_horizon(&mut md, runs, info, &kernels);
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
    info: &StudyInfo,
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
    // Each kernel's accuracies by seed; the second horizon's as their own lines.
    let horizons: Vec<(String, &[StudyRun])> = match &info.horizon_b {
        None => vec![(String::new(), runs)],
        Some(h) => vec![(horizon_name(runs), runs), (horizon_name(&h.runs), &h.runs)],
    };
    for (file, label, value) in [
        ("knn-by-seed.svg", ACCURACIES[0].1, ACCURACIES[0].2),
        ("linear-by-seed.svg", ACCURACIES[1].1, ACCURACIES[1].2),
    ] {
        let mut series = Vec::new();
        for (name, hruns) in &horizons {
            for k in kernels {
                let points: Vec<(f64, f64)> = by_seed(hruns, k, value)
                    .into_iter()
                    .map(|(s, v)| (s as f64, 100.0 * v))
                    .collect();
                if !points.is_empty() {
                    series.push(Series {
                        name: if name.is_empty() {
                            k.to_string()
                        } else {
                            format!("{k}, {name}")
                        },
                        points,
                    });
                }
            }
        }
        write(
            file,
            plots::seed_plot(
                &series,
                &format!("{label} by seed (test)"),
                "seed",
                &format!("{label} (%)"),
            ),
        )?;
    }
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
    // Runs kept without their checkpoints have lost their training time.
    let timed: Vec<f64> = runs
        .iter()
        .map(|r| r.metrics.wall_s)
        .filter(|t| t.is_finite())
        .collect();
    let untimed = match runs.len() - timed.len() {
        0 => String::new(),
        n => format!(" (not counting {n} kept without checkpoints)"),
    };
    let _ = writeln!(
        md,
        "| pretraining time, all runs | {:.0} s{untimed} |\n| this invocation (wall) | {:.0} s |\n",
        timed.iter().sum::<f64>(),
        info.wall_s
    );
}

/// Mean ± std [95% interval] over seeds per kernel; `title` names the horizon when there are
/// two.
fn results_table(md: &mut String, runs: &[StudyRun], kernels: &[&str], title: &str) {
    let _ = writeln!(
        md,
        "## Results{title} (top-1 in %: mean ± sample std over seeds [95% interval of the mean, \
         Student t over seeds: mean ± t_0.975,n-1 · std / √n])\n"
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
            pm_ci(&s.knn_top1),
            pm(&s.knn_top1_init),
            pm_ci(&s.linear_top1),
            pm(&s.linear_top5),
            pm(&s.linear_top1_init),
            s.final_loss.mean,
        );
    }
    let _ = writeln!(md);
}

/// Each kernel against the baseline, seed by seed, with the interval of the mean difference.
fn paired_differences(md: &mut String, runs: &[StudyRun], info: &StudyInfo, kernels: &[&str]) {
    let baseline = &info.baseline;
    let _ = writeln!(md, "## Paired differences against {baseline}\n");
    let _ = writeln!(
        md,
        "Per seed, kernel minus {baseline} (same seed: same initialisation, data order, subset \
         and split), in points of top-1; the mean difference with its 95% interval (Student t \
         over the paired seeds). A kernel differs from {baseline} when the interval excludes 0.\n"
    );
    if runs_of(runs, baseline).is_empty() {
        let _ = writeln!(md, "({baseline} has no finished run in this study.)\n");
        return;
    }
    let names: Vec<String> = kernels.iter().map(|k| k.to_string()).collect();
    for (k, by_key) in gaps(runs, &names, baseline) {
        for (key, label, _) in ACCURACIES {
            let _ = writeln!(
                md,
                "- {k} − {baseline}, {label}: {}.",
                reading(&by_key[key], &format!("{k} higher"), &format!("{k} lower"))
            );
        }
    }
    let _ = writeln!(md);
}

/// The second horizon's table, its gaps, and how each gap moves from the first horizon.
fn second_horizon(md: &mut String, runs: &[StudyRun], info: &StudyInfo, kernels: &[&str]) {
    let Some(h) = &info.horizon_b else {
        return;
    };
    let (a, b) = (horizon_name(runs), horizon_name(&h.runs));
    let baseline = &info.baseline;
    let _ = writeln!(md, "## Second horizon: {b} against {a}\n");
    let _ = writeln!(
        md,
        "The runs of `{}` (read as they stand: finished and evaluated by that study's own \
         `kinfonce compare`), the same kernels and seeds under the longer schedule.\n",
        h.dir.display()
    );
    results_table(md, &h.runs, kernels, &format!(" at {b}"));
    let names: Vec<String> = kernels.iter().map(|k| k.to_string()).collect();
    let (gaps_a, gaps_b) = (
        gaps(runs, &names, baseline),
        gaps(&h.runs, &names, baseline),
    );
    let _ = writeln!(
        md,
        "Gap to {baseline} at {b}, and its change from {a} (gap at {b} minus gap at {a}, per \
         seed: a difference of differences, with its 95% Student t interval over the seeds both \
         horizons have). With few seeds the interval is wide: its sign shows a direction, not a \
         powered answer.\n"
    );
    let changes = gap_changes(&gaps_a, &gaps_b);
    for (k, by_key) in &gaps_b {
        for (key, label, _) in ACCURACIES {
            let _ = writeln!(
                md,
                "- {k} − {baseline} at {b}, {label}: {}.",
                reading(&by_key[key], &format!("{k} higher"), &format!("{k} lower"))
            );
            if let Some(change) = changes.get(k).and_then(|c| c.get(key)) {
                let _ = writeln!(
                    md,
                    "  - change of the gap from {a} to {b}: {}.",
                    reading(
                        change,
                        &format!("the gap moves in favour of {k}"),
                        &format!("the gap moves in favour of {baseline}")
                    )
                );
            }
        }
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
            "| `{}` | {} | {} | {:.4} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.dir.strip_prefix(out).unwrap_or(&r.dir).display(),
            m.epochs,
            m.steps,
            m.final_loss,
            if m.wall_s.is_finite() {
                format!("{:.0}", m.wall_s)
            } else {
                "n/a (no checkpoint)".into()
            },
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
        "![k-NN by seed](knn-by-seed.svg)\n\n![linear by seed](linear-by-seed.svg)\n\n\
         ![loss](loss.svg)\n\n![k-NN monitor](knn-monitor.svg)\n"
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
