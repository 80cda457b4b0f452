//! The lab's output contract: every experiment yields a report with `experiment`, `params` and
//! `claims`, each claim `{"name", "predicted", "measured", "tolerance", "holds"}` (plus the
//! relation checked and a note), printable as a table, as one JSON line and as markdown.

use serde::Serialize;
use std::path::PathBuf;

/// How a measured value is compared with its prediction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// |measured - predicted| <= tolerance.
    Equal,
    /// measured <= predicted + tolerance.
    AtMost,
    /// measured >= predicted - tolerance.
    AtLeast,
    /// No finite prediction (e.g. q = 0): the measured quantity must keep growing.
    Grows,
}

/// One prediction checked against one measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Claim {
    /// Stable machine name (scripts key on it).
    pub name: String,
    /// The closed-form prediction; `None` (JSON null) when there is no finite one.
    pub predicted: Option<f64>,
    /// The measured value.
    pub measured: f64,
    /// Allowed deviation (see `relation`).
    pub tolerance: f64,
    /// Whether the measurement agrees with the prediction.
    pub holds: bool,
    /// The comparison made.
    pub relation: Relation,
    /// One line saying what is predicted and why.
    pub note: String,
}

impl Claim {
    /// A claim |measured - predicted| <= tolerance.
    pub fn equal(name: &str, predicted: f64, measured: f64, tolerance: f64, note: &str) -> Self {
        let holds = (measured - predicted).abs() <= tolerance;
        Self::build(
            name,
            Some(predicted),
            measured,
            tolerance,
            holds,
            Relation::Equal,
            note,
        )
    }

    /// A claim measured <= predicted + tolerance.
    pub fn at_most(name: &str, predicted: f64, measured: f64, tolerance: f64, note: &str) -> Self {
        let holds = measured <= predicted + tolerance;
        Self::build(
            name,
            Some(predicted),
            measured,
            tolerance,
            holds,
            Relation::AtMost,
            note,
        )
    }

    /// A claim measured >= predicted - tolerance.
    pub fn at_least(name: &str, predicted: f64, measured: f64, tolerance: f64, note: &str) -> Self {
        let holds = measured >= predicted - tolerance;
        Self::build(
            name,
            Some(predicted),
            measured,
            tolerance,
            holds,
            Relation::AtLeast,
            note,
        )
    }

    /// A claim with prediction null: `holds` says whether the quantity kept growing.
    pub fn grows(name: &str, measured: f64, grew: bool, note: &str) -> Self {
        Self::build(name, None, measured, 0.0, grew, Relation::Grows, note)
    }

    fn build(
        name: &str,
        predicted: Option<f64>,
        measured: f64,
        tolerance: f64,
        holds: bool,
        relation: Relation,
        note: &str,
    ) -> Self {
        Self {
            name: name.to_string(),
            predicted,
            measured,
            tolerance,
            holds: holds && measured.is_finite(),
            relation,
            note: note.to_string(),
        }
    }
}

/// What an experiment produced.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Experiment name (`planted`, `mrf`, ...).
    pub experiment: String,
    /// The parameters it ran with, including the kernel convention.
    pub params: serde_json::Value,
    /// The checked claims.
    pub claims: Vec<Claim>,
    /// Plots written (SVG and PNG), if an output folder was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plots: Vec<PathBuf>,
    /// Further measurements worth printing (curves, timings), free-form.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Report {
    /// True when every claim holds.
    pub fn all_hold(&self) -> bool {
        self.claims.iter().all(|c| c.holds)
    }

    /// The report as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("reports serialise")
    }

    /// A human-readable table: one line per claim.
    pub fn to_text(&self) -> String {
        let mut s = format!("== {} ==\n", self.experiment);
        if let Some(conv) = self
            .params
            .get("kernel_convention")
            .and_then(|v| v.as_str())
        {
            s.push_str(&format!("kernel: {conv}\n"));
        }
        s.push_str(&format!(
            "{:<34} {:>15} {:>15} {:>11} {:>6}\n",
            "claim", "predicted", "measured", "tolerance", "holds"
        ));
        for c in &self.claims {
            s.push_str(&format!(
                "{:<34} {:>15} {:>15} {:>11} {:>6}\n",
                c.name,
                fmt_pred(c),
                fmt_num(c.measured),
                fmt_num(c.tolerance),
                if c.holds { "yes" } else { "NO" }
            ));
        }
        for p in &self.plots {
            s.push_str(&format!("plot: {}\n", p.display()));
        }
        s
    }

    /// A markdown section: parameters, the claims table and the plots (paths relative to `base`).
    pub fn to_markdown(&self, base: &std::path::Path) -> String {
        let mut s = format!("## `{}`\n\n", self.experiment);
        s.push_str(&format!("Parameters: `{}`\n\n", self.params));
        s.push_str("| claim | predicted | measured | tolerance | relation | agrees | what |\n|---|---|---|---|---|---|---|\n");
        for c in &self.claims {
            s.push_str(&format!(
                "| `{}` | {} | {} | {} | {:?} | {} | {} |\n",
                c.name,
                fmt_pred(c),
                fmt_num(c.measured),
                fmt_num(c.tolerance),
                c.relation,
                if c.holds { "yes" } else { "**no**" },
                c.note.replace('|', "\\|")
            ));
        }
        s.push('\n');
        for p in self
            .plots
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
        {
            let rel = p.strip_prefix(base).unwrap_or(p);
            s.push_str(&format!("![{}]({})\n\n", rel.display(), rel.display()));
        }
        s
    }
}

fn fmt_pred(c: &Claim) -> String {
    match c.predicted {
        Some(v) => fmt_num(v),
        None => "null".into(),
    }
}

/// Compact number formatting: fixed for moderate magnitudes, scientific otherwise.
pub fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e-3 && v.abs() < 1e6 {
        format!("{v:.6}")
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_compare_as_documented() {
        assert!(Claim::equal("a", 1.0, 1.0005, 1e-3, "").holds);
        assert!(!Claim::equal("a", 1.0, 1.002, 1e-3, "").holds);
        assert!(Claim::at_most("b", 0.0, -5.0, 0.0, "").holds);
        assert!(!Claim::at_least("c", 0.0, -1e-3, 1e-9, "").holds);
        assert!(!Claim::equal("d", 1.0, f64::NAN, 1.0, "").holds);
        let r = Report {
            experiment: "x".into(),
            params: serde_json::json!({"n": 3}),
            claims: vec![Claim::grows("g", 2.0, true, "")],
            plots: vec![],
            details: serde_json::Value::Null,
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(v["claims"][0]["predicted"], serde_json::Value::Null);
        assert_eq!(v["claims"][0]["holds"], true);
        assert!(!r.to_json_line().contains('\n'));
    }
}
