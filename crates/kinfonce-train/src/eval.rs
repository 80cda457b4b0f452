//! Offline evaluation on frozen features: the weighted k-NN classifier and the linear probe
//! (multinomial logistic regression trained with SGD, the official code's protocol), with
//! top-1 / top-5, per-class accuracy and the confusion matrix.

use crate::error::{Result, TrainError};
use crate::features::{labels_tensor, EvalData, FeatureOptions, FrozenEncoder};
use crate::hardware::Precision;
use crate::monitor;
use kinfonce_data::rng::CounterRng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Weighted k-NN settings. Defaults: k = 200, temperature 0.1 (Wu et al. 2018, the official
/// monitors).
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

/// Linear-probe settings. Defaults are the official protocol: SGD, lr 0.3, momentum 0.9,
/// weight decay 1e-6 (on weight and bias, as torch.optim.SGD), cosine annealing per epoch
/// (torch's CosineAnnealingLR, T_max = epochs, eta_min = 0) over 100 epochs, batch 256,
/// cross-entropy, PyTorch's default Linear initialisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Seed of the initialisation and the shuffles.
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            epochs: 100,
            batch: 256,
            lr: 0.3,
            momentum: 0.9,
            weight_decay: 1e-6,
            seed: 0,
        }
    }
}

impl ProbeConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch == 0 {
            return Err(TrainError::Config(format!(
                "linear probe: epochs = {}, batch = {}: expected at least 1",
                self.epochs, self.batch
            )));
        }
        if !(self.lr > 0.0 && self.momentum >= 0.0 && self.weight_decay >= 0.0) {
            return Err(TrainError::Config(format!(
                "linear probe: lr = {}, momentum = {}, weight decay = {}: expected lr > 0, momentum >= 0, weight decay >= 0",
                self.lr, self.momentum, self.weight_decay
            )));
        }
        Ok(())
    }

    /// The learning rate of epoch `epoch` (0-based): lr (1 + cos(pi epoch / epochs)) / 2.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        0.5 * self.lr * (1.0 + (PI * epoch as f64 / self.epochs as f64).cos())
    }
}

/// A linear classifier logits = x W^T + b trained by SGD with momentum (torch.optim.SGD's
/// update: g = grad + wd p; buf = momentum buf + g (buf = g at the first step); p -= lr buf).
///
/// The gradient is the closed form of the mean cross-entropy over a batch of B:
/// dL/dlogits = (softmax(logits) - onehot(y)) / B, dL/dW = dlogits^T x, dL/db = sum_rows dlogits.
///
/// # Shapes
/// `weight` `[C, d]`, `bias` `[C]`, inputs `[B, d]` f32, labels `[B]` int64.
#[derive(Debug)]
pub struct LinearProbe {
    pub weight: Tensor,
    pub bias: Tensor,
    weight_buf: Option<Tensor>,
    bias_buf: Option<Tensor>,
}

impl LinearProbe {
    /// PyTorch's default initialisation, U(-1/sqrt(d), 1/sqrt(d)) for weight and bias, drawn
    /// from a seeded counter-based stream.
    pub fn new(dim: usize, classes: usize, seed: u64, device: Device) -> LinearProbe {
        let mut rng = CounterRng::new(&[seed, 0x50_524f_4245]);
        let bound = 1.0 / (dim.max(1) as f64).sqrt();
        let mut draw =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-bound, bound) as f32).collect() };
        let weight = Tensor::from_slice(&draw(classes * dim))
            .view([classes as i64, dim as i64])
            .to_device(device);
        let bias = Tensor::from_slice(&draw(classes)).to_device(device);
        LinearProbe {
            weight,
            bias,
            weight_buf: None,
            bias_buf: None,
        }
    }

    /// A probe with the given parameters (a saved probe).
    pub fn from_parameters(weight: Tensor, bias: Tensor) -> LinearProbe {
        LinearProbe {
            weight,
            bias,
            weight_buf: None,
            bias_buf: None,
        }
    }

    pub fn classes(&self) -> usize {
        self.weight.size()[0] as usize
    }

    pub fn dim(&self) -> usize {
        self.weight.size()[1] as usize
    }

    /// Logits `[B, C]`.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        x.to_kind(Kind::Float)
            .to_device(self.weight.device())
            .linear(&self.weight, Some(&self.bias))
    }

    /// One SGD step on the batch; returns its mean cross-entropy before the step.
    pub fn sgd_step(
        &mut self,
        x: &Tensor,
        labels: &Tensor,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> f64 {
        let _guard = tch::no_grad_guard();
        let x = x.to_kind(Kind::Float).to_device(self.weight.device());
        let labels = labels.to_device(self.weight.device()).to_kind(Kind::Int64);
        let b = x.size()[0];
        let logits = x.linear(&self.weight, Some(&self.bias));
        let log_p = logits.log_softmax(1, Kind::Float);
        let loss = -f64::try_from(
            log_p
                .gather(1, &labels.unsqueeze(1), false)
                .mean(Kind::Float),
        )
        .unwrap_or(f64::NAN);
        let onehot = log_p
            .zeros_like()
            .scatter_value(1, &labels.unsqueeze(1), 1.0);
        let dlogits = (log_p.exp() - onehot) / b as f64;
        let gw = dlogits.tr().matmul(&x) + &self.weight * weight_decay;
        let gb = dlogits.sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
            + &self.bias * weight_decay;
        let update = |buf: &mut Option<Tensor>, g: Tensor| -> Tensor {
            let next = match buf.take() {
                Some(prev) if momentum > 0.0 => prev * momentum + g,
                _ => g,
            };
            *buf = Some(next.shallow_clone());
            next
        };
        let dw = update(&mut self.weight_buf, gw);
        let db = update(&mut self.bias_buf, gb);
        self.weight = &self.weight - dw * lr;
        self.bias = &self.bias - db * lr;
        loss
    }

    /// True when every parameter is finite.
    pub fn is_finite(&self) -> bool {
        let finite = |t: &Tensor| bool::try_from(t.isfinite().all()).unwrap_or(false);
        finite(&self.weight) && finite(&self.bias)
    }
}

/// The order of the training rows in epoch `epoch` (seeded Fisher-Yates).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    CounterRng::new(&[seed, epoch, 0x5348_5546]).shuffle(&mut order);
    order
}

/// Trains a probe on cached features (the fast protocol): `config.epochs` passes over a
/// seeded shuffle of the rows in batches of `config.batch` (the last batch kept), the
/// learning rate annealed per epoch. `progress(epoch, mean loss)` is called after each epoch.
///
/// # Shapes
/// `features` `[N, d]` f32, `labels` `[N]` int64.
pub fn train_probe(
    features: &Tensor,
    labels: &Tensor,
    classes: usize,
    config: &ProbeConfig,
    device: Device,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<LinearProbe> {
    config.validate()?;
    let n = features.size()[0] as usize;
    if n == 0 {
        return Err(TrainError::Data(
            "linear probe: the train split is empty".into(),
        ));
    }
    let x = features.to_kind(Kind::Float).to_device(device);
    let y = labels.to_kind(Kind::Int64).to_device(device);
    let mut probe = LinearProbe::new(features.size()[1] as usize, classes, config.seed, device);
    for epoch in 0..config.epochs {
        let lr = config.lr_at(epoch);
        let order =
            Tensor::from_slice(&epoch_permutation(n, config.seed, epoch as u64)).to_device(device);
        let (mut sum, mut batches) = (0.0, 0usize);
        let mut start = 0;
        while start < n {
            let len = config.batch.min(n - start) as i64;
            let idx = order.narrow(0, start as i64, len);
            sum += probe.sgd_step(
                &x.index_select(0, &idx),
                &y.index_select(0, &idx),
                lr,
                config.momentum,
                config.weight_decay,
            );
            batches += 1;
            start += len as usize;
        }
        let mean = sum / batches as f64;
        if !mean.is_finite() || !probe.is_finite() {
            return Err(TrainError::Config(format!(
                "the linear probe diverged in epoch {} (loss {mean}); lower --lr (now {})",
                epoch + 1,
                config.lr
            )));
        }
        progress(epoch + 1, mean);
    }
    Ok(probe)
}

/// The features an evaluation needs: `train` (fit) and the report split.
pub struct FeatureSet {
    /// f32 `[N_train, d]`, CPU.
    pub train: Tensor,
    /// int64 `[N_train]`.
    pub train_labels: Tensor,
    /// f32 `[N_test, d]`, CPU.
    pub test: Tensor,
    /// int64 `[N_test]`.
    pub test_labels: Tensor,
}

impl FeatureSet {
    /// Features of both splits of `data` (no augmentation). `progress(what, done, total)`.
    pub fn compute(
        encoder: &FrozenEncoder,
        data: &EvalData,
        options: &FeatureOptions,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<FeatureSet> {
        let n_train = data.train.len();
        let train = encoder.features(&data.train, &data.normalization, options, &mut |d| {
            progress("train features", d, n_train)
        })?;
        let n_test = data.test.len();
        let test = encoder.features(&data.test, &data.normalization, options, &mut |d| {
            progress("test features", d, n_test)
        })?;
        Ok(FeatureSet {
            train,
            train_labels: labels_tensor(&data.train),
            test,
            test_labels: labels_tensor(&data.test),
        })
    }
}

/// One evaluation's result: what `--json` prints and what `compare` caches as
/// `eval-knn.json` / `eval-linear.json` in a run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// `knn`, `linear-fast` or `linear` (the augmented official protocol).
    pub protocol: String,
    /// The protocol in words (splits, sizes, hyperparameters).
    pub description: String,
    pub top1: f64,
    pub top5: f64,
    pub n_train: usize,
    pub n_test: usize,
    /// Accuracy per class of the report split, in class order.
    pub per_class: Vec<f64>,
    pub class_names: Vec<String>,
    /// `confusion[true][predicted]` on the report split.
    pub confusion: Vec<Vec<u64>>,
    pub feature_dim: i64,
    /// True for the network at initialisation (random-init baseline).
    pub init: bool,
    /// Checkpoint evaluated (absent at initialisation) and its training step.
    pub checkpoint: Option<String>,
    pub step: u64,
    /// Data set path and the split reported on.
    pub data: String,
    pub test_split: String,
    /// k-NN settings (k-NN only).
    pub knn: Option<KnnConfig>,
    /// Probe settings (linear only) and its final training loss.
    pub probe: Option<ProbeConfig>,
    pub probe_final_loss: Option<f64>,
    /// Seconds of the classifier (features excluded).
    pub seconds: f64,
    /// Precision and layout of the encoder's forward pass (absent in records of older versions).
    #[serde(default)]
    pub precision: Option<Precision>,
    #[serde(default)]
    pub channels_last: Option<bool>,
}

impl EvalRecord {
    /// A record of `protocol` from its classification result, without k-NN or probe settings.
    pub fn base(
        protocol: &str,
        description: String,
        c: Classification,
        encoder: &FrozenEncoder,
        data: &EvalData,
        n_train: usize,
        seconds: f64,
    ) -> EvalRecord {
        EvalRecord {
            protocol: protocol.into(),
            description,
            top1: c.top1,
            top5: c.top5,
            n_train,
            n_test: c.n,
            per_class: c.per_class,
            class_names: data.train.class_names().to_vec(),
            confusion: c.confusion,
            feature_dim: encoder.feature_dim,
            init: encoder.checkpoint.is_none(),
            checkpoint: encoder.checkpoint.as_ref().map(|p| p.display().to_string()),
            step: encoder.step,
            data: data.path.display().to_string(),
            test_split: data.test_split.to_string(),
            knn: None,
            probe: None,
            probe_final_loss: None,
            seconds,
            precision: Some(encoder.precision),
            channels_last: Some(encoder.channels_last),
        }
    }
}

fn split_words(data: &EvalData, n_train: usize, n_test: usize) -> String {
    format!(
        "fit on `train` ({n_train} images: the training images minus the run's seeded {:.0}% validation split), report on `{}` ({n_test} images{})",
        100.0 * data.val_fraction,
        data.test_split,
        if data.test_split == kinfonce_data::Split::Test {
            ", the official test set"
        } else {
            ", the held-out validation split"
        }
    )
}

/// Weighted k-NN on cached features.
pub fn knn_record(
    encoder: &FrozenEncoder,
    data: &EvalData,
    features: &FeatureSet,
    config: &KnnConfig,
) -> Result<EvalRecord> {
    let start = Instant::now();
    let c = knn_classify(
        &features.train.to_device(encoder.device),
        &features.train_labels,
        &features.test.to_device(encoder.device),
        &features.test_labels,
        data.classes(),
        config,
    )?;
    let n_train = features.train.size()[0] as usize;
    let description = format!(
        "weighted k-NN (k = {}, temperature {}) on L2-normalised encoder features (before the projection head), votes exp(cos / t); {}; no augmentation",
        config.k,
        config.temperature,
        split_words(data, n_train, c.n)
    );
    let mut r = EvalRecord::base(
        "knn",
        description,
        c,
        encoder,
        data,
        n_train,
        start.elapsed().as_secs_f64(),
    );
    r.knn = Some(*config);
    Ok(r)
}

fn probe_words(config: &ProbeConfig) -> String {
    format!(
        "linear classifier on frozen encoder features (before the projection head), cross-entropy, SGD lr {} momentum {} weight decay {}, cosine annealing per epoch over {} epochs, batch {}, seed {}",
        config.lr, config.momentum, config.weight_decay, config.epochs, config.batch, config.seed
    )
}

/// The fast linear probe: features computed once without augmentation, the classifier
/// trained on them.
pub fn linear_fast_record(
    encoder: &FrozenEncoder,
    data: &EvalData,
    features: &FeatureSet,
    config: &ProbeConfig,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(EvalRecord, LinearProbe)> {
    let start = Instant::now();
    let mut last = f64::NAN;
    let probe = train_probe(
        &features.train,
        &features.train_labels,
        data.classes(),
        config,
        encoder.device,
        &mut |e, l| {
            last = l;
            progress(e, l)
        },
    )?;
    let c = classification(
        &probe.logits(&features.test),
        &features.test_labels,
        data.classes(),
    );
    let n_train = features.train.size()[0] as usize;
    let description = format!(
        "fast linear probe: {}; features computed once without augmentation (cached); {}",
        probe_words(config),
        split_words(data, n_train, c.n)
    );
    let mut r = EvalRecord::base(
        "linear-fast",
        description,
        c,
        encoder,
        data,
        n_train,
        start.elapsed().as_secs_f64(),
    );
    r.probe = Some(*config);
    r.probe_final_loss = Some(last);
    Ok((r, probe))
}

/// The official linear protocol: every epoch the train images are augmented afresh (random
/// resized crop, scale 0.08-1, ratio 3/4-4/3, + horizontal flip), passed through the frozen
/// encoder, and the classifier takes an SGD step per batch; test features without augmentation.
pub fn linear_augmented_record(
    encoder: &FrozenEncoder,
    data: &EvalData,
    test_features: &Tensor,
    test_labels: &Tensor,
    config: &ProbeConfig,
    options: &FeatureOptions,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(EvalRecord, LinearProbe)> {
    config.validate()?;
    let start = Instant::now();
    let feature_options = FeatureOptions {
        batch: config.batch,
        ..options.clone()
    };
    let loader = encoder.augmented_loader(
        &data.train,
        &data.normalization,
        &feature_options,
        config.seed,
    )?;
    let mut probe = LinearProbe::new(
        encoder.feature_dim as usize,
        data.classes(),
        config.seed,
        encoder.device,
    );
    let mut last = f64::NAN;
    for epoch in 0..config.epochs {
        let lr = config.lr_at(epoch);
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in loader.epoch(epoch as u64) {
            let x = encoder.input(
                batch.as_f32().expect("f32 batches"),
                batch.shape,
                batch.layout,
            );
            let f = encoder.forward(&x);
            let y = Tensor::from_slice(&batch.row_labels());
            sum += probe.sgd_step(&f, &y, lr, config.momentum, config.weight_decay);
            n += 1;
        }
        last = sum / n.max(1) as f64;
        if !last.is_finite() || !probe.is_finite() {
            return Err(TrainError::Config(format!(
                "the linear probe diverged in epoch {} (loss {last}); lower --lr (now {})",
                epoch + 1,
                config.lr
            )));
        }
        progress(epoch + 1, last);
    }
    let c = classification(&probe.logits(test_features), test_labels, data.classes());
    let n_train = data.train.len();
    let description = format!(
        "official linear protocol: {}; train images augmented afresh every epoch (random resized crop scale 0.08-1, ratio 3/4-4/3, bilinear, + horizontal flip p 0.5), test images not augmented; {}",
        probe_words(config),
        split_words(data, n_train, c.n)
    );
    let mut r = EvalRecord::base(
        "linear",
        description,
        c,
        encoder,
        data,
        n_train,
        start.elapsed().as_secs_f64(),
    );
    r.probe = Some(*config);
    r.probe_final_loss = Some(last);
    Ok((r, probe))
}

/// The first two principal components of `x` (`[N, d]`): centred rows projected on the top
/// two right singular vectors, each axis signed so that its largest loading is positive.
/// Returns the coordinates and the fraction of variance each axis explains.
pub fn pca_2d(x: &Tensor) -> (Vec<(f64, f64)>, [f64; 2]) {
    let _guard = tch::no_grad_guard();
    let x = x.to_device(Device::Cpu).to_kind(Kind::Double);
    let n = x.size()[0];
    if n < 2 || x.size()[1] < 2 {
        return (vec![(0.0, 0.0); n as usize], [0.0, 0.0]);
    }
    let centred = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
    let (_, s, v) = centred.svd(true, true);
    let mut axes = v.narrow(1, 0, 2);
    for j in 0..2 {
        let col = axes.select(1, j);
        let i = i64::try_from(col.abs().argmax(0, false)).unwrap_or(0);
        if col.double_value(&[i]) < 0.0 {
            let _ = axes.select(1, j).g_mul_scalar_(-1.0);
        }
    }
    axes = axes.contiguous();
    let coords = centred.matmul(&axes);
    let flat = Vec::<f64>::try_from(coords.contiguous().flatten(0, -1)).unwrap_or_default();
    let points = flat.chunks(2).map(|c| (c[0], c[1])).collect();
    let var = s.square();
    let total = f64::try_from(var.sum(Kind::Double))
        .unwrap_or(1.0)
        .max(1e-300);
    let v0 = f64::try_from(var.get(0)).unwrap_or(0.0) / total;
    let v1 = f64::try_from(var.get(1)).unwrap_or(0.0) / total;
    (points, [v0, v1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_counts_by_hand() {
        // 3 classes, 4 queries: scores rows pick 0, 1, 1, 2; truth 0, 1, 2, 2.
        let scores = Tensor::from_slice(&[
            3.0f32, 2.0, 1.0, //
            0.0, 5.0, 1.0, //
            0.0, 2.0, 1.0, //
            0.0, 1.0, 2.0,
        ])
        .view([4, 3]);
        let labels = Tensor::from_slice(&[0i64, 1, 2, 2]);
        let c = classification(&scores, &labels, 3);
        assert_eq!(c.top1, 0.75);
        // With 3 classes, top-5 covers every class.
        assert_eq!(c.top5, 1.0);
        assert_eq!(c.per_class, vec![1.0, 1.0, 0.5]);
        assert_eq!(c.per_class_count, vec![1, 1, 2]);
        assert_eq!(
            c.confusion,
            vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]
        );
    }

    #[test]
    fn cosine_schedule_per_epoch() {
        let c = ProbeConfig {
            epochs: 4,
            ..ProbeConfig::default()
        };
        assert!((c.lr_at(0) - 0.3).abs() < 1e-15);
        assert!((c.lr_at(2) - 0.15).abs() < 1e-15);
        assert!((c.lr_at(4)).abs() < 1e-15);
    }
}
