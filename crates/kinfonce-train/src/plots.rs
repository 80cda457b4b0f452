//! Standalone SVG figures of the evaluation and comparison reports: line plots with one line
//! per series, 2-D scatter plots coloured by class, and confusion-matrix heat maps. Plain SVG
//! text, no fonts or renderer needed; every figure has a title, axis labels and a legend.

use std::fmt::Write as _;

/// Ten distinguishable colours (matplotlib's tab10), cycled.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The colour of series / class `i`.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn sx(&self, x: f64) -> f64 {
        self.left
            + (x - self.x0) / (self.x1 - self.x0).max(1e-12) * (self.w - self.left - self.right)
    }
    fn sy(&self, y: f64) -> f64 {
        self.h
            - self.bottom
            - (y - self.y0) / (self.y1 - self.y0).max(1e-12) * (self.h - self.top - self.bottom)
    }
}

fn bounds<'a>(points: impl Iterator<Item = &'a (f64, f64)>) -> Option<(f64, f64, f64, f64)> {
    let mut b: Option<(f64, f64, f64, f64)> = None;
    for &(x, y) in points {
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        b = Some(match b {
            None => (x, x, y, y),
            Some((a, c, d, e)) => (a.min(x), c.max(x), d.min(y), e.max(y)),
        });
    }
    b
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn header(w: f64, h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        escape(title)
    )
}

fn axes(svg: &mut String, f: &Frame, x_label: &str, y_label: &str) {
    let (l, b) = (f.left, f.h - f.bottom);
    let _ = writeln!(
        svg,
        "<rect x=\"{l}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>",
        f.top,
        f.w - f.left - f.right,
        f.h - f.top - f.bottom
    );
    for i in 0..=4 {
        let t = i as f64 / 4.0;
        let xv = f.x0 + t * (f.x1 - f.x0);
        let yv = f.y0 + t * (f.y1 - f.y0);
        let (px, py) = (f.sx(xv), f.sy(yv));
        let _ = writeln!(
            svg,
            "<line x1=\"{px:.1}\" y1=\"{b}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"black\"/>\
             <text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <line x1=\"{}\" y1=\"{py:.1}\" x2=\"{l}\" y2=\"{py:.1}\" stroke=\"black\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            b + 4.0,
            b + 17.0,
            tick_label(xv),
            l - 4.0,
            l - 6.0,
            py + 4.0,
            tick_label(yv)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{}</text>",
        (f.left + f.w - f.right) / 2.0,
        f.h - 12.0,
        escape(x_label),
        (f.top + f.h - f.bottom) / 2.0,
        (f.top + f.h - f.bottom) / 2.0,
        escape(y_label)
    );
}

fn legend(svg: &mut String, f: &Frame, names: &[String], marker_line: bool) {
    let x = f.w - f.right + 12.0;
    for (i, name) in names.iter().enumerate() {
        let y = f.top + 8.0 + 18.0 * i as f64;
        if marker_line {
            let _ = write!(
                svg,
                "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"/>",
                x + 18.0,
                colour(i)
            );
        } else {
            let _ = write!(
                svg,
                "<circle cx=\"{}\" cy=\"{y}\" r=\"4\" fill=\"{}\"/>",
                x + 9.0,
                colour(i)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            x + 24.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// One line per series, a legend on the right. Non-finite points are skipped.
pub fn line_plot(series: &[Series], title: &str, x_label: &str, y_label: &str) -> String {
    let mut f = Frame {
        w: 760.0,
        h: 440.0,
        left: 70.0,
        right: 170.0,
        top: 40.0,
        bottom: 50.0,
        x0: 0.0,
        x1: 1.0,
        y0: 0.0,
        y1: 1.0,
    };
    let mut svg = header(f.w, f.h, title);
    if let Some((x0, x1, y0, y1)) = bounds(series.iter().flat_map(|s| s.points.iter())) {
        let pad = 0.04 * (y1 - y0).max(1e-9);
        (f.x0, f.x1, f.y0, f.y1) = (x0, x1.max(x0 + 1e-9), y0 - pad, y1 + pad);
    }
    axes(&mut svg, &f, x_label, y_label);
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", f.sx(x), f.sy(y)))
            .collect();
        if pts.len() == 1 {
            let _ = writeln!(
                svg,
                "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"/>",
                pts[0].split(',').next().unwrap_or("0"),
                pts[0].split(',').nth(1).unwrap_or("0"),
                colour(i)
            );
        } else if !pts.is_empty() {
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
                colour(i),
                pts.join(" ")
            );
        }
    }
    let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    legend(&mut svg, &f, &names, true);
    svg.push_str("</svg>\n");
    svg
}

/// A scatter plot of 2-D points coloured by class (`classes[i]` indexes `class_names`).
pub fn scatter_plot(
    points: &[(f64, f64)],
    classes: &[usize],
    class_names: &[String],
    title: &str,
    x_label: &str,
    y_label: &str,
) -> String {
    let mut f = Frame {
        w: 640.0,
        h: 520.0,
        left: 70.0,
        right: 150.0,
        top: 40.0,
        bottom: 50.0,
        x0: 0.0,
        x1: 1.0,
        y0: 0.0,
        y1: 1.0,
    };
    let mut svg = header(f.w, f.h, title);
    if let Some((x0, x1, y0, y1)) = bounds(points.iter()) {
        (f.x0, f.x1, f.y0, f.y1) = (x0, x1.max(x0 + 1e-9), y0, y1.max(y0 + 1e-9));
    }
    axes(&mut svg, &f, x_label, y_label);
    for (p, &c) in points.iter().zip(classes) {
        if p.0.is_finite() && p.1.is_finite() {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{}\" fill-opacity=\"0.7\"/>",
                f.sx(p.0),
                f.sy(p.1),
                colour(c)
            );
        }
    }
    legend(&mut svg, &f, class_names, false);
    svg.push_str("</svg>\n");
    svg
}

/// A confusion-matrix heat map: rows are true classes, columns predictions, each cell shaded
/// by its fraction of the row and labelled with its count.
pub fn confusion_plot(confusion: &[Vec<u64>], class_names: &[String], title: &str) -> String {
    let c = confusion.len();
    let cell = if c <= 12 {
        40.0
    } else {
        (480.0 / c as f64).max(3.0)
    };
    let left = 130.0;
    let top = 60.0;
    let w = left + cell * c as f64 + 30.0;
    let h = top + cell * c as f64 + 120.0;
    let mut svg = header(w, h, title);
    for (i, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (j, &v) in row.iter().enumerate() {
            let frac = if total == 0 {
                0.0
            } else {
                v as f64 / total as f64
            };
            let shade = (255.0 * (1.0 - frac)).round() as u8;
            let (x, y) = (left + cell * j as f64, top + cell * i as f64);
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"rgb({shade},{shade},255)\" stroke=\"#ddd\"><title>true {} / predicted {}: {v}</title></rect>",
                escape(class_names.get(i).map(String::as_str).unwrap_or("?")),
                escape(class_names.get(j).map(String::as_str).unwrap_or("?"))
            );
            if c <= 12 {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{}\">{v}</text>",
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0,
                    if frac > 0.5 { "white" } else { "black" }
                );
            }
            svg.push('\n');
        }
    }
    if c <= 40 {
        for (i, name) in class_names.iter().enumerate().take(c) {
            let y = top + cell * i as f64 + cell / 2.0 + 4.0;
            let x = left + cell * i as f64 + cell / 2.0;
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\">{}</text>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" transform=\"rotate(60 {x:.1} {:.1})\">{}</text>",
                left - 6.0,
                escape(name),
                top + cell * c as f64 + 12.0,
                top + cell * c as f64 + 12.0,
                escape(name)
            );
        }
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">predicted class (columns); true class (rows); shade = fraction of the row</text>",
        w / 2.0,
        h - 10.0
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_hold_their_marks() {
        let s = vec![
            Series {
                name: "a<b".into(),
                points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, f64::NAN)],
            },
            Series {
                name: "c".into(),
                points: vec![(0.0, 2.0), (2.0, 1.0)],
            },
        ];
        let svg = line_plot(&s, "loss", "epoch", "loss");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b"));
        assert!(!svg.contains("NaN"));
        let sc = scatter_plot(
            &[(0.0, 0.0), (1.0, 1.0), (0.5, 0.2)],
            &[0, 1, 1],
            &["x".into(), "y".into()],
            "pca",
            "pc1",
            "pc2",
        );
        assert_eq!(sc.matches("r=\"2\"").count(), 3);
        let cm = confusion_plot(&[vec![3, 1], vec![0, 4]], &["x".into(), "y".into()], "cm");
        assert_eq!(cm.matches("<rect x=").count(), 4);
        assert!(cm.contains(">4</text>"));
    }
}
