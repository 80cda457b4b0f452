//! The human-facing outputs of a run folder: `metrics.csv` (from metrics.jsonl), `loss.svg`
//! and `report.md`.

use crate::config::TrainConfig;
use crate::error::{io_err, Result};
use crate::metrics::{read_records, Record};
use crate::plots::{self, Series};
use crate::summary::Summary;
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

const COLUMNS: [&str; 13] = [
    "kind",
    "step",
    "epoch",
    "loss",
    "lr",
    "views_per_s",
    "knn_top1",
    "online_top1",
    "online_val_top1",
    "alignment",
    "uniformity",
    "effective_rank",
    "partial_epoch",
];

fn read_lines(run_dir: &Path) -> Result<Vec<Record>> {
    read_records(&run_dir.join("metrics.jsonl"))
}

/// metrics.csv: one row per metrics.jsonl record, empty cells for absent fields.
pub fn write_csv(run_dir: &Path) -> Result<()> {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for record in read_lines(run_dir)? {
        let line = serde_json::to_value(&record).unwrap_or_default();
        let cells: Vec<String> = COLUMNS
            .iter()
            .map(|c| match &line[*c] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    let path = run_dir.join("metrics.csv");
    fs::write(&path, out).map_err(io_err(&path))
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

/// metrics.csv, loss.svg and report.md of the run.
pub fn write_outputs(run_dir: &Path, config: &TrainConfig, summary: &Summary) -> Result<()> {
    write_csv(run_dir)?;
    let lines = read_lines(run_dir)?;
    let loss_points: Vec<(f64, f64)> = lines
        .iter()
        .filter_map(|r| match r {
            Record::Step { step, loss, .. } => Some((*step as f64, *loss)),
            _ => None,
        })
        .collect();
    let svg = plots::line_plot(
        &[Series {
            name: "loss".into(),
            points: loss_points,
        }],
        "Training loss",
        "step",
        "loss",
    );
    let path = run_dir.join("loss.svg");
    fs::write(&path, svg).map_err(io_err(&path))?;
    let knn: Vec<(u64, f64)> = lines.iter().filter_map(Record::knn).collect();
    let mut md = String::new();
    let _ = writeln!(md, "# Pretraining run\n");
    let _ = writeln!(
        md,
        "{} width {} on `{}`, preset `{}`, batch {} pairs, optimizer {}, precision {}, device {}.\n",
        config.model.arch,
        config.model.width,
        config.data.data.display(),
        config.loss.preset,
        config.optim.batch,
        config.optim.optimizer,
        config.compute_label(),
        config.compute.device
    );
    // Where it ran and why in this precision, from the provenance the run folder recorded.
    let provenance = fs::read_to_string(run_dir.join("config.toml"))
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .and_then(|t| t.get("provenance").and_then(|p| p.as_table()).cloned())
        .unwrap_or_default();
    let _ = writeln!(md, "| | value |\n|---|---|");
    for key in ["cpu", "compute"] {
        if let Some(v) = provenance.get(key).and_then(|v| v.as_str()) {
            let _ = writeln!(md, "| {key} | {v} |");
        }
    }
    let _ = writeln!(md, "| steps | {} |", summary.steps);
    let _ = writeln!(md, "| epochs completed | {} |", summary.epochs_completed);
    let _ = writeln!(
        md,
        "| first / final loss | {} / {:.4} |",
        fmt_opt(summary.first_loss),
        summary.final_loss
    );
    let _ = writeln!(
        md,
        "| k-NN top-1 at initialisation | {} |",
        fmt_opt(summary.knn_top1_init)
    );
    let _ = writeln!(md, "| k-NN top-1 (last) | {} |", fmt_opt(summary.knn_top1));
    let _ = writeln!(
        md,
        "| online probe top-1, training views / val (last epoch) | {} / {} |",
        fmt_opt(summary.online_top1),
        fmt_opt(summary.online_val_top1)
    );
    let _ = writeln!(md, "| training views/s | {:.1} |", summary.views_per_s);
    let _ = writeln!(md, "| wall time (s) | {:.1} |", summary.wall_s);
    let _ = writeln!(md, "| interrupted | {} |", summary.interrupted);
    if !knn.is_empty() {
        let _ = writeln!(
            md,
            "\n## k-NN monitor (k = {}, t = {})\n\n| epoch | knn_top1 |\n|---|---|",
            config.monitor.knn_k, config.monitor.knn_t
        );
        for (e, a) in knn {
            let _ = writeln!(md, "| {e} | {a:.4} |");
        }
    }
    let _ = writeln!(md, "\n![loss](loss.svg)\n\nFiles: `config.toml`, `metrics.jsonl`, `metrics.csv`, `checkpoints/`.");
    let path = run_dir.join("report.md");
    fs::write(&path, md).map_err(io_err(&path))
}
