//! The one record type of a run's `metrics.jsonl`: the trainer writes it, and every reader
//! (the report, `compare`, resume) reads it back through [`read_records`]. One JSON object per
//! line, tagged by `kind` (format in docs/run-folder.md). Lines written before the tag existed
//! (no `kind`) are read by their fields.

use crate::error::{io_err, Result, TrainError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// The k-NN monitor of the network at initialisation, before the first step (epoch 0).
    Init {
        step: u64,
        epoch: u64,
        lr: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        knn_top1: Option<f64>,
    },
    /// Every `log_every` steps: that step's loss and the views/s since the last step record.
    Step {
        step: u64,
        /// The epoch in progress (0-based).
        epoch: u64,
        loss: f64,
        lr: f64,
        views_per_s: f64,
    },
    /// The end of an epoch, or of the last, partial one.
    Epoch(EpochRecord),
}

/// What an epoch record holds: the epoch's mean loss and its monitors.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochRecord {
    pub step: u64,
    /// Epochs completed with this one (1-based).
    pub epoch: u64,
    /// Mean loss of the epoch's steps in this invocation.
    pub loss: f64,
    pub lr: f64,
    /// Training views per second of this invocation so far.
    pub views_per_s: f64,
    /// The run stopped inside this epoch (its schedule ended there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial_epoch: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_top1: Option<f64>,
    /// The online probe's top-1 on the epoch's training views (pl_bolts' `online_train_acc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_top1: Option<f64>,
    /// The online probe's top-1 on the val queries (pl_bolts' `online_val_acc`), with the
    /// k-NN monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_val_top1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uniformity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_rank: Option<f64>,
}

impl Record {
    /// The training step the record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            Record::Init { step, .. } | Record::Step { step, .. } => *step,
            Record::Epoch(e) => e.step,
        }
    }

    /// The k-NN monitor's top-1 and its epoch, when the record carries one.
    pub fn knn(&self) -> Option<(u64, f64)> {
        match self {
            Record::Init {
                epoch, knn_top1, ..
            } => knn_top1.map(|a| (*epoch, a)),
            Record::Epoch(e) => e.knn_top1.map(|a| (e.epoch, a)),
            Record::Step { .. } => None,
        }
    }

    /// The record as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a metrics record serialises")
    }

    /// Parses one line, tagged or in the untagged form of earlier versions.
    pub fn from_line(line: &str) -> std::result::Result<Record, String> {
        let mut v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let obj = v.as_object_mut().ok_or("not a JSON object")?;
        if !obj.contains_key("kind") {
            // Untagged lines: epoch lines carry monitors (alignment follows every epoch's last
            // step), the line at initialisation has no loss, the rest are step lines.
            let kind = if ["partial_epoch", "alignment", "online_top1"]
                .iter()
                .any(|k| obj.contains_key(*k))
            {
                "epoch"
            } else if !obj.contains_key("loss") {
                "init"
            } else {
                "step"
            };
            obj.insert("kind".into(), kind.into());
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
}

/// Every record of a `metrics.jsonl`. A bad line is an error naming the file and line, except
/// a last line cut short by a crash (no newline), which is left out.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_records(&text).map_err(|(line, message)| {
        TrainError::Data(format!("{}: line {line}: {message}", path.display()))
    })
}

/// [`read_records`] on a text; errors carry the 1-based line number.
pub fn parse_records(text: &str) -> std::result::Result<Vec<Record>, (usize, String)> {
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match Record::from_line(line) {
            Ok(r) => records.push(r),
            Err(_) if torn_tail && i + 1 == lines.len() => {}
            Err(e) => return Err((i + 1, e)),
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as versions before the `kind` tag wrote them.
    const UNTAGGED: &str = r#"{"epoch":0,"knn_top1":0.2,"lr":1e-4,"step":0}
{"epoch":0,"loss":5.1,"lr":0.0005,"step":10,"views_per_s":700.5}
{"alignment":0.4,"effective_rank":30.2,"epoch":1,"knn_top1":0.25,"loss":4.9,"lr":0.001,"online_top1":0.3,"step":15,"uniformity":-2.1,"views_per_s":690.0}
{"alignment":0.3,"effective_rank":31.0,"epoch":2,"loss":4.7,"lr":0.0,"partial_epoch":true,"step":20,"uniformity":-2.5,"views_per_s":680.0}
"#;

    #[test]
    fn untagged_lines_of_earlier_versions_read_as_the_right_records() {
        let r = parse_records(UNTAGGED).unwrap();
        assert_eq!(r.len(), 4);
        assert!(matches!(r[0], Record::Init { knn_top1: Some(a), .. } if a == 0.2));
        assert!(matches!(r[1], Record::Step { step: 10, loss, .. } if loss == 5.1));
        let Record::Epoch(e) = &r[2] else {
            panic!("{:?}", r[2])
        };
        assert_eq!(
            (e.epoch, e.knn_top1, e.partial_epoch),
            (1, Some(0.25), false)
        );
        let Record::Epoch(e) = &r[3] else {
            panic!("{:?}", r[3])
        };
        assert!(e.partial_epoch && e.knn_top1.is_none());
        assert_eq!(
            r.iter().map(Record::step).collect::<Vec<_>>(),
            [0, 10, 15, 20]
        );
    }

    #[test]
    fn records_round_trip_through_their_tagged_lines() {
        for r in parse_records(UNTAGGED).unwrap() {
            let line = r.to_line();
            assert!(line.starts_with("{\"kind\":"), "{line}");
            assert_eq!(Record::from_line(&line).unwrap(), r);
        }
    }

    #[test]
    fn a_bad_line_is_named_and_a_torn_last_line_is_left_out() {
        let (line, msg) = parse_records("{\"kind\":\"step\"}\n{}\n").unwrap_err();
        assert_eq!(line, 1, "{msg}");
        let torn = format!("{UNTAGGED}{{\"kind\":\"step\",\"st");
        assert_eq!(parse_records(&torn).unwrap().len(), 4);
    }
}
