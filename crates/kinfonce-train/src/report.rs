//! The human-facing outputs of a run folder: `metrics.csv` (from metrics.jsonl), `loss.svg`
//! and `report.md`.

use crate::config::TrainConfig;
use crate::error::{io_err, Result};
use crate::metrics::{read_records, Record};
use crate::trainer::Summary;
use serde_json::Value;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

const COLUMNS: [&str; 12] = [
    "kind",
    "step",
    "epoch",
    "loss",
    "lr",
    "views_per_s",
    "knn_top1",
    "online_top1",
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

/// A line plot of (x, y) points as a standalone SVG with axes and min/max labels.
pub fn line_plot_svg(points: &[(f64, f64)], title: &str, x_label: &str, y_label: &str) -> String {
    let (w, h, m) = (640.0, 400.0, 60.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        w / 2.0
    );
    if points.is_empty() {
        svg.push_str("</svg>\n");
        return svg;
    }
    let (x0, x1) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let sx = |x: f64| m + (x - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * m);
    let sy = |y: f64| h - m - (y - y0) / (y1 - y0).max(1e-12) * (h - 2.0 * m);
    let _ = writeln!(
        svg,
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>",
        h - m,
        w - m,
        h - m,
        h - m
    );
    let _ = writeln!(
        svg,
        "<text x=\"{m}\" y=\"{}\" text-anchor=\"middle\">{x0}</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x1}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x_label}</text>",
        h - m + 16.0,
        w - m,
        h - m + 16.0,
        w / 2.0,
        h - 16.0
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{y0:.4}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{y1:.4}</text>\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">{y_label}</text>",
        m - 4.0,
        h - m,
        m - 4.0,
        m + 4.0,
        h / 2.0,
        h / 2.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
        .collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>",
        path.join(" ")
    );
    svg.push_str("</svg>\n");
    svg
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
    let svg = line_plot_svg(&loss_points, "Training loss", "step", "loss");
    let path = run_dir.join("loss.svg");
    fs::write(&path, svg).map_err(io_err(&path))?;
    let knn: Vec<(u64, f64)> = lines.iter().filter_map(Record::knn).collect();
    let mut md = String::new();
    let _ = writeln!(md, "# Pretraining run\n");
    let _ = writeln!(
        md,
        "{} width {} on `{}`, preset `{}`, batch {} pairs, optimizer {}, precision {}, device {}.\n",
        config.arch,
        config.width,
        config.data.display(),
        config.preset,
        config.batch,
        config.optimizer,
        config.compute_label(),
        config.device
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
        "| online probe top-1 (last epoch) | {} |",
        fmt_opt(summary.online_top1)
    );
    let _ = writeln!(md, "| training views/s | {:.1} |", summary.views_per_s);
    let _ = writeln!(md, "| wall time (s) | {:.1} |", summary.wall_s);
    let _ = writeln!(md, "| interrupted | {} |", summary.interrupted);
    if !knn.is_empty() {
        let _ = writeln!(
            md,
            "\n## k-NN monitor (k = {}, t = {})\n\n| epoch | knn_top1 |\n|---|---|",
            config.knn_k, config.knn_t
        );
        for (e, a) in knn {
            let _ = writeln!(md, "| {e} | {a:.4} |");
        }
    }
    let _ = writeln!(md, "\n![loss](loss.svg)\n\nFiles: `config.toml`, `metrics.jsonl`, `metrics.csv`, `checkpoints/`.");
    let path = run_dir.join("report.md");
    fs::write(&path, md).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_point_per_input() {
        let svg = line_plot_svg(&[(0.0, 2.0), (1.0, 1.5), (2.0, 1.0)], "t", "x", "y");
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 3);
        // The first point sits at the top-left of the plot area, the last at the bottom-right.
        assert!(
            points.starts_with("60.0,60.0") && points.ends_with("580.0,340.0"),
            "{points}"
        );
    }
}
