//! SVG figures of the evaluation and comparison reports, drawn with plotters: line plots with
//! one line per series, 2-D scatter plots coloured by class, and confusion-matrix heat maps.
//! Every figure has a title, axis labels and a legend; plotters escapes the text.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Ten distinguishable colours (matplotlib's tab10), cycled.
pub const PALETTE: [RGBColor; 10] = [
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

/// The colour of series / class `i`.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

type Drawn = Result<(), String>;

const FONT: &str = "sans-serif";
/// Width of the legend strip right of the plot, so the legend never hides a curve.
const LEGEND_W: u32 = 170;

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// The padded range of the finite values; (0, 1) when there are none, and a unit-wide band
/// around a single value, since plotters cannot map an empty range.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        0.04 * (hi - lo)
    } else {
        0.5 * lo.abs().max(1.0)
    };
    (lo - pad, hi + pad)
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        // 4.5 rather than 4.500
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Renders a figure to SVG text. A drawing error (say, no usable font on the machine) gives
/// a figure saying so instead of failing the report that asked for it.
fn render(size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Drawn) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match drawn {
        Ok(()) => svg,
        Err(e) => {
            let note = format!("figure not drawn: {e}")
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">\
                 <text x=\"10\" y=\"20\">{note}</text></svg>\n",
                size.0, size.1
            )
        }
    }
}

enum Marker {
    Line,
    Dot,
}

/// Legend entries down the strip `area`; those that do not fit are counted instead.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: &[String],
    marker: Marker,
) -> Drawn {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let style = TextStyle::from((FONT, 15)).pos(Pos::new(HPos::Left, VPos::Center));
    let fit = ((area.dim_in_pixel().1 as i32 - 60) / 18).max(1) as usize;
    for (i, name) in names.iter().enumerate() {
        let y = 50 + 18 * i as i32;
        if i + 1 == fit && names.len() > fit {
            let more = format!("… {} more", names.len() - i);
            area.draw(&Text::new(more, (12, y), style.clone()))
                .map_err(err)?;
            break;
        }
        let c = colour(i);
        match marker {
            Marker::Line => area.draw(&Rectangle::new([(12, y - 1), (30, y + 1)], c.filled())),
            Marker::Dot => area.draw(&Circle::new((21, y), 4, c.filled())),
        }
        .map_err(err)?;
        area.draw(&Text::new(name.as_str(), (36, y), style.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// One line per series, a legend on the right. Non-finite points are skipped; a series with
/// a single finite point is drawn as a dot.
pub fn line_plot(series: &[Series], title: &str, x_label: &str, y_label: &str) -> String {
    render((760, 440), |root| {
        draw_lines(root, series, title, x_label, y_label, false)
    })
}

/// As [`line_plot`], with a dot on every point: values by seed, where each point is a run.
pub fn seed_plot(series: &[Series], title: &str, x_label: &str, y_label: &str) -> String {
    render((760, 440), |root| {
        draw_lines(root, series, title, x_label, y_label, true)
    })
}

/// A figure's plot area and legend strip.
type Parts<DB> = (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>);

/// A white figure with `title` on top, cut into the plot and a legend strip `legend_w` wide on
/// its right.
fn frame<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    legend_w: u32,
) -> Result<Parts<DB>, String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FONT, 22)).map_err(err)?;
    Ok(root.split_horizontally(root.dim_in_pixel().0 - legend_w))
}

/// Numeric x and y axes over the given ranges, with their labels and a grid.
fn axes<'a, DB: DrawingBackend>(
    plot: &DrawingArea<DB, Shift>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    x_label: &str,
    y_label: &str,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut chart = ChartBuilder::on(plot)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series],
    title: &str,
    x_label: &str,
    y_label: &str,
    dots: bool,
) -> Drawn {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let (plot, side) = frame(root, title, LEGEND_W)?;
    let all = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().filter(|p| finite(p)))
    };
    let (x0, x1) = range(all().map(|p| p.0));
    let (y0, y1) = range(all().map(|p| p.1));
    let mut chart = axes(&plot, (x0, x1), (y0, y1), x_label, y_label)?;
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(finite).collect();
        let c = colour(i);
        match pts.as_slice() {
            [] => {}
            [p] => {
                chart
                    .draw_series([Circle::new(*p, 3, c.filled())])
                    .map_err(err)?;
            }
            _ => {
                if dots {
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                        .map_err(err)?;
                }
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                    .map_err(err)?;
            }
        }
    }
    if all().next().is_none() {
        no_data(&plot)?;
    }
    let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    legend(&side, &names, Marker::Line)
}

/// A note in the middle of an otherwise empty figure, so it does not read as a drawing bug.
fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> Drawn {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(
        "no finite data",
        (w as i32 / 2, h as i32 / 2),
        style,
    ))
    .map_err(|e| e.to_string())
}

/// A scatter plot of 2-D points coloured by class (`classes[i]` indexes `class_names`).
/// Non-finite points are skipped.
pub fn scatter_plot(
    points: &[(f64, f64)],
    classes: &[usize],
    class_names: &[String],
    title: &str,
    x_label: &str,
    y_label: &str,
) -> String {
    render((640, 520), |root| {
        draw_scatter(root, points, classes, class_names, title, x_label, y_label)
    })
}

fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: &[(f64, f64)],
    classes: &[usize],
    class_names: &[String],
    title: &str,
    x_label: &str,
    y_label: &str,
) -> Drawn {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let (plot, side) = frame(root, title, LEGEND_W - 20)?;
    let (x0, x1) = range(points.iter().filter(|p| finite(p)).map(|p| p.0));
    let (y0, y1) = range(points.iter().filter(|p| finite(p)).map(|p| p.1));
    let mut chart = axes(&plot, (x0, x1), (y0, y1), x_label, y_label)?;
    chart
        .draw_series(
            points
                .iter()
                .zip(classes)
                .filter(|(p, _)| finite(p))
                .map(|(&p, &c)| Circle::new(p, 2, colour(c).mix(0.7).filled())),
        )
        .map_err(err)?;
    if !points.iter().any(finite) {
        no_data(&plot)?;
    }
    legend(&side, class_names, Marker::Dot)
}

/// A confusion-matrix heat map: rows are true classes, columns predictions, each cell shaded
/// by its fraction of the row and labelled with its count (when the cells are big enough).
pub fn confusion_plot(confusion: &[Vec<u64>], class_names: &[String], title: &str) -> String {
    render(confusion_size(confusion.len()), |root| {
        draw_confusion(root, confusion, class_names, title)
    })
}

/// Room for the class names beside and (rotated) below the grid.
const NAMES_W: u32 = 120;

fn confusion_size(c: usize) -> (u32, u32) {
    let cell = if c <= 12 { 40 } else { (480 / c as u32).max(3) };
    (
        NAMES_W + 60 + cell * c as u32,
        140 + NAMES_W + cell * c as u32,
    )
}

fn draw_confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    confusion: &[Vec<u64>],
    class_names: &[String],
    title: &str,
) -> Drawn {
    let c = confusion.len();
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    if c == 0 {
        let root = root.titled(title, (FONT, 22)).map_err(err)?;
        return no_data(&root);
    }
    let last = c as u32 - 1;
    let name = |k: u32| class_names.get(k as usize).cloned().unwrap_or("?".into());
    // plotters' y axis grows upwards; row 0 goes on top as in the printed matrix.
    let row_at = |i: u32| last - i;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(10)
        .x_label_area_size(NAMES_W + 30)
        .y_label_area_size(NAMES_W)
        .build_cartesian_2d((0..last).into_segmented(), (0..last).into_segmented())
        .map_err(err)?;
    let label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(k) if *k <= last => name(row_at(*k)),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        // The column names are drawn below, rotated: plotters centres rotated tick labels
        // on the tick, which would push them into the grid.
        .x_labels(c.min(40))
        .x_label_formatter(&|_| String::new())
        .y_labels(c.min(40))
        .y_label_formatter(&|v| label(v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .x_desc("predicted class (shade = fraction of the row)")
        .y_desc("true class")
        .draw()
        .map_err(err)?;
    for (i, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        let y = row_at(i as u32);
        for (j, &v) in row.iter().enumerate().take(c) {
            let frac = if total == 0 {
                0.0
            } else {
                v as f64 / total as f64
            };
            let shade = (255.0 * (1.0 - frac)).round() as u8;
            let x = j as u32;
            chart
                .draw_series([Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    RGBColor(shade, shade, 255).filled(),
                )])
                .map_err(err)?;
            if c <= 12 {
                let ink = if frac > 0.5 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 14))
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series([Text::new(
                        v.to_string(),
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        style,
                    )])
                    .map_err(err)?;
            }
        }
    }
    if c <= 40 {
        let style = TextStyle::from((FONT, 14))
            .transform(FontTransform::Rotate90)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for j in 0..c as u32 {
            let (x, y) = chart.backend_coord(&(SegmentValue::CenterOf(j), SegmentValue::Exact(0)));
            root.draw(&Text::new(name(j), (x, y + 8), style.clone()))
                .map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polylines_in(svg: &str, c: RGBColor) -> usize {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2);
        svg.lines()
            .filter(|l| l.contains("<polyline") && l.contains(&stroke))
            .count()
    }

    #[test]
    fn loss_curve_has_its_title_and_one_line_per_series() {
        let s = vec![
            Series {
                name: "alpha".into(),
                points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.4)],
            },
            Series {
                name: "beta".into(),
                points: vec![(0.0, 2.0), (2.0, 1.0)],
            },
        ];
        let svg = line_plot(&s, "Training loss", "step", "loss");
        std::fs::write(std::env::temp_dir().join("kinfonce-loss-test.svg"), &svg).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in ["Training loss", "step", "loss", "alpha", "beta"] {
            assert!(
                svg.contains(&format!("\n{text}\n</text>")),
                "{text} missing"
            );
        }
        assert_eq!(polylines_in(&svg, colour(0)), 1);
        assert_eq!(polylines_in(&svg, colour(1)), 1);
    }

    #[test]
    fn text_is_escaped() {
        let s = [Series {
            name: "a<b".into(),
            points: vec![(0.0, 1.0), (1.0, 2.0)],
        }];
        let svg = line_plot(&s, "<b>&\"", "x & y", "<y>");
        assert!(svg.contains("&lt;b&gt;&amp;&quot;"), "{svg}");
        assert!(svg.contains("a&lt;b") && svg.contains("x &amp; y"));
        assert!(!svg.contains("<b>") && !svg.contains("<y>") && !svg.contains("a<b"));
        // Every `<` left opens a tag, so the text is XML-like.
        assert!(svg
            .match_indices('<')
            .all(|(i, _)| svg[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')));
        let cm = confusion_plot(&[vec![1, 0], vec![0, 1]], &["<x>".into(), "y".into()], "&");
        assert!(cm.contains("&lt;x&gt;") && !cm.contains("<x>"));
    }

    #[test]
    fn empty_single_point_and_nan_do_not_panic() {
        let nan = Series {
            name: "nan".into(),
            points: vec![
                (0.0, f64::NAN),
                (f64::INFINITY, 1.0),
                (1.0, 2.0),
                (2.0, 1.5),
            ],
        };
        let svg = line_plot(&[nan], "t", "x", "y");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(polylines_in(&svg, colour(0)), 1);

        let one = Series {
            name: "one".into(),
            points: vec![(3.0, 3.0), (4.0, f64::NAN)],
        };
        let svg = line_plot(&[one], "t", "x", "y");
        assert_eq!(polylines_in(&svg, colour(0)), 0);
        assert!(svg.contains("<circle"), "{svg}");

        for svg in [
            line_plot(&[], "empty", "x", "y"),
            line_plot(
                &[Series {
                    name: "e".into(),
                    points: vec![(f64::NAN, f64::NAN)],
                }],
                "empty",
                "x",
                "y",
            ),
            scatter_plot(&[], &[], &[], "empty", "x", "y"),
            confusion_plot(&[], &[], "empty"),
        ] {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("no finite data"), "{svg}");
        }
    }

    #[test]
    fn scatter_and_confusion_hold_their_marks() {
        let sc = scatter_plot(
            &[(0.0, 0.0), (1.0, 1.0), (0.5, 0.2), (f64::NAN, 0.0)],
            &[0, 1, 1, 0],
            &["x".into(), "y".into()],
            "pca",
            "pc1",
            "pc2",
        );
        // Three finite points plus the two legend dots.
        assert_eq!(sc.matches("<circle").count(), 5, "{sc}");
        let cm = confusion_plot(&[vec![3, 1], vec![0, 4]], &["x".into(), "y".into()], "cm");
        assert!(cm.contains("cm"));
        for count in ["3", "1", "0", "4"] {
            assert!(
                cm.contains(&format!("\n{count}\n</text>")),
                "{count} missing"
            );
        }
        let one = confusion_plot(&[vec![5]], &["only".into()], "one class");
        assert!(one.contains("\nonly\n</text>") && one.contains("\n5\n</text>"));
        // Full rows are dark blue, empty cells white.
        assert!(cm.contains("fill=\"#0000FF\"") && cm.contains("fill=\"#FFFFFF\""));
    }
}
