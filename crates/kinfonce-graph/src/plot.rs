//! Plots (plotters): line charts and scatter panels, each written as SVG and PNG.

use crate::error::{GraphError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One named curve.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points in order.
    pub points: Vec<(f64, f64)>,
    /// Draw as a dashed reference line (a prediction) instead of a measured curve.
    pub dashed: bool,
}

impl Series {
    /// A measured curve.
    pub fn line(name: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            dashed: false,
        }
    }

    /// A predicted reference curve (dashed).
    pub fn prediction(name: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            dashed: true,
        }
    }
}

/// A line chart.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title on top.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The curves.
    pub series: Vec<Series>,
}

/// A panel of 2-D points coloured by label.
#[derive(Clone, Debug)]
pub struct ScatterPanel {
    /// Panel caption.
    pub title: String,
    /// (x, y, label) points.
    pub points: Vec<(f64, f64, usize)>,
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> GraphError {
    GraphError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return if log { (0.1, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        if hi <= lo * 1.0001 {
            return (lo / 2.0, hi * 2.0);
        }
        return (lo / 1.2, hi * 1.2);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1.0)
    };
    (lo - pad, hi + pad)
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &LineChart,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x0, x1) = range(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0)),
        chart.log_x,
    );
    let (y0, y1) = range(
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1)),
        chart.log_y,
    );
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! body {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label.as_str())
                .y_desc(chart.y_label.as_str())
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, s) in chart.series.iter().enumerate() {
                let c = color(i);
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|p| {
                        p.0.is_finite()
                            && p.1.is_finite()
                            && (!chart.log_x || p.0 > 0.0)
                            && (!chart.log_y || p.1 > 0.0)
                    })
                    .collect();
                if s.dashed {
                    ctx.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, c.stroke_width(2)))
                        .map_err(|e| e.to_string())?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                        });
                } else {
                    ctx.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                        .map_err(|e| e.to_string())?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                        });
                    ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(|e| e.to_string())?;
                }
            }
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    match (chart.log_x, chart.log_y) {
        (false, false) => body!(builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?),
        (true, false) => body!(builder
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|e| e.to_string())?),
        (false, true) => body!(builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(|e| e.to_string())?),
        (true, true) => body!(builder
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|e| e.to_string())?),
    }
    root.present().map_err(|e| e.to_string())
}

fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[ScatterPanel],
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let cols = panels.len().clamp(1, 4);
    let rows = panels.len().div_ceil(cols).max(1);
    let areas = root.split_evenly((rows, cols));
    for (area, panel) in areas.iter().zip(panels) {
        let (x0, x1) = range(panel.points.iter().map(|p| p.0), false);
        let (y0, y1) = range(panel.points.iter().map(|p| p.1), false);
        let mut ctx = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(45)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        ctx.configure_mesh()
            .x_labels(4)
            .y_labels(4)
            .draw()
            .map_err(|e| e.to_string())?;
        ctx.draw_series(
            panel
                .points
                .iter()
                .map(|&(x, y, l)| Circle::new((x, y), 4, color(l).filled())),
        )
        .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Writes `stem.svg` and `stem.png` in `dir`; returns both paths.
pub fn write_line_chart(dir: &Path, stem: &str, chart: &LineChart) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| GraphError::Io {
        path: dir.to_path_buf(),
        cause: source,
    })?;
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    draw_lines(
        &SVGBackend::new(&svg, (800, 500)).into_drawing_area(),
        chart,
    )
    .map_err(|e| plot_err(&svg, e))?;
    draw_lines(
        &BitMapBackend::new(&png, (800, 500)).into_drawing_area(),
        chart,
    )
    .map_err(|e| plot_err(&png, e))?;
    Ok(vec![svg, png])
}

/// Writes scatter panels (coloured by label) as `stem.svg` and `stem.png` in `dir`.
pub fn write_scatter(
    dir: &Path,
    stem: &str,
    title: &str,
    panels: &[ScatterPanel],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| GraphError::Io {
        path: dir.to_path_buf(),
        cause: source,
    })?;
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let cols = panels.len().clamp(1, 4) as u32;
    let rows = panels.len().div_ceil(4).max(1) as u32;
    let size = (300 * cols, 300 * rows + 40);
    draw_scatter(
        &SVGBackend::new(&svg, size).into_drawing_area(),
        title,
        panels,
    )
    .map_err(|e| plot_err(&svg, e))?;
    draw_scatter(
        &BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        panels,
    )
    .map_err(|e| plot_err(&png, e))?;
    Ok(vec![svg, png])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written() {
        let dir = std::env::temp_dir().join(format!("kinfonce-plot-test-{}", std::process::id()));
        let chart = LineChart {
            title: "test".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            log_y: false,
            series: vec![
                Series::line("a", vec![(1.0, 1.0), (10.0, 2.0)]),
                Series::prediction("b", vec![(1.0, 1.5), (10.0, 1.5)]),
            ],
        };
        let paths = write_line_chart(&dir, "line", &chart).unwrap();
        let panels = vec![ScatterPanel {
            title: "p".into(),
            points: vec![(0.0, 0.0, 0), (1.0, 1.0, 1)],
        }];
        let more = write_scatter(&dir, "scatter", "t", &panels).unwrap();
        for p in paths.iter().chain(&more) {
            assert!(std::fs::metadata(p).unwrap().len() > 500, "{}", p.display());
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
