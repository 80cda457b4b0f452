//! The linear probe: multinomial logistic regression on frozen features, trained with SGD
//! and a cosine schedule per epoch (the official protocol).

use crate::error::{Result, TrainError};
use crate::features::{labels_tensor, EvalData, FeatureOptions, FrozenEncoder};
use kinfonce_data::rng::CounterRng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use tch::{Device, Kind, Tensor};

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
