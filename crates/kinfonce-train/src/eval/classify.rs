//! Classification from scores (top-1, top-5, per class, confusion) and the weighted k-NN classifier.

use crate::error::{Result, TrainError};
use crate::monitor;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Weighted k-NN settings. Defaults: k = 200, temperature 0.1 (Wu et al. 2018, InstDisc, as
/// solo-learn uses them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnConfig {
    pub k: i64,
    pub temperature: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 200,
            temperature: 0.1,
        }
    }
}

impl KnnConfig {
    pub fn validate(&self) -> Result<()> {
        if self.k < 1 || self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err(TrainError::Config(format!(
                "k-NN: k = {}, t = {}: expected k >= 1 and t > 0",
                self.k, self.temperature
            )));
        }
        Ok(())
    }
}

/// Accuracy figures of a classifier on labelled queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Fraction of queries whose top-scored class is right.
    pub top1: f64,
    /// Fraction whose right class is among the 5 top-scored (all classes when fewer than 5).
    pub top5: f64,
    /// Accuracy per true class (NaN-free: a class without queries gets 0 and count 0).
    pub per_class: Vec<f64>,
    /// Queries per true class.
    pub per_class_count: Vec<u64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Number of queries.
    pub n: usize,
}

/// Scores the predictions `scores` (`[M, C]`, larger is better) against `labels` (`[M]`).
pub fn classification(scores: &Tensor, labels: &Tensor, classes: usize) -> Classification {
    let _guard = tch::no_grad_guard();
    let scores = scores.to_device(Device::Cpu).to_kind(Kind::Float);
    let labels = labels.to_device(Device::Cpu).to_kind(Kind::Int64);
    let m = scores.size()[0] as usize;
    let mut confusion = vec![vec![0u64; classes]; classes];
    if m == 0 {
        return Classification {
            top1: 0.0,
            top5: 0.0,
            per_class: vec![0.0; classes],
            per_class_count: vec![0; classes],
            confusion,
            n: 0,
        };
    }
    let kk = (classes as i64).min(5);
    let (_, top) = scores.topk(kk, 1, true, true);
    let top = Vec::<i64>::try_from(top.contiguous().flatten(0, -1)).unwrap_or_default();
    let truth = Vec::<i64>::try_from(labels).unwrap_or_default();
    let (mut hit1, mut hit5) = (0usize, 0usize);
    for (i, &t) in truth.iter().enumerate() {
        let row = &top[i * kk as usize..(i + 1) * kk as usize];
        let predicted = row[0];
        hit1 += usize::from(predicted == t);
        hit5 += usize::from(row.contains(&t));
        if (t as usize) < classes && (predicted as usize) < classes {
            confusion[t as usize][predicted as usize] += 1;
        }
    }
    let per_class_count: Vec<u64> = confusion.iter().map(|r| r.iter().sum()).collect();
    let per_class = (0..classes)
        .map(|c| {
            if per_class_count[c] == 0 {
                0.0
            } else {
                confusion[c][c] as f64 / per_class_count[c] as f64
            }
        })
        .collect();
    Classification {
        top1: hit1 as f64 / m as f64,
        top5: hit5 as f64 / m as f64,
        per_class,
        per_class_count,
        confusion,
        n: m,
    }
}

/// Weighted k-NN of `queries` against the labelled `bank` ([`monitor::knn_scores`]).
///
/// # Shapes
/// `bank` `[N, d]`, `bank_labels` `[N]`, `queries` `[M, d]`, `query_labels` `[M]`.
pub fn knn_classify(
    bank: &Tensor,
    bank_labels: &Tensor,
    queries: &Tensor,
    query_labels: &Tensor,
    classes: usize,
    config: &KnnConfig,
) -> Result<Classification> {
    config.validate()?;
    if bank.size()[0] == 0 {
        return Err(TrainError::Data("k-NN: the train split is empty".into()));
    }
    let scores = monitor::knn_scores(
        bank,
        bank_labels,
        queries,
        config.k,
        config.temperature,
        classes as i64,
    );
    Ok(classification(&scores, query_labels, classes))
}
