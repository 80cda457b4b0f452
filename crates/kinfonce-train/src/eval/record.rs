//! The record of one evaluation (`eval-*.json`, `eval --json`) and the protocols that make it:
//! k-NN, the fast probe on cached features, the augmented (official) probe.

use super::classify::{classification, knn_classify, Classification, KnnConfig};
use super::probe::{train_probe, FeatureSet, LinearProbe, ProbeConfig};
use crate::error::{Result, TrainError};
use crate::features::{EvalData, FeatureOptions, FrozenEncoder};
use crate::hardware::Precision;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::Tensor;

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
    let record = ProbeRun {
        protocol: "linear-fast",
        what: "fast linear probe",
        how: "features computed once without augmentation (cached)",
        n_train: features.train.size()[0] as usize,
        final_loss: last,
        start,
    }
    .record(
        &probe,
        (&features.test, &features.test_labels),
        config,
        encoder,
        data,
    );
    Ok((record, probe))
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
    let record = ProbeRun {
        protocol: "linear",
        what: "official linear protocol",
        how: "train images augmented afresh every epoch (random resized crop scale 0.08-1, ratio 3/4-4/3, bilinear, + horizontal flip p 0.5), test images not augmented",
        n_train: data.train.len(),
        final_loss: last,
        start,
    }
    .record(&probe, (test_features, test_labels), config, encoder, data);
    Ok((record, probe))
}

/// A trained probe's run, described for its record.
struct ProbeRun {
    protocol: &'static str,
    what: &'static str,
    how: &'static str,
    n_train: usize,
    final_loss: f64,
    start: Instant,
}

impl ProbeRun {
    /// The probe's record: its classification of the (features, labels) test set.
    fn record(
        self,
        probe: &LinearProbe,
        (test_features, test_labels): (&Tensor, &Tensor),
        config: &ProbeConfig,
        encoder: &FrozenEncoder,
        data: &EvalData,
    ) -> EvalRecord {
        let c = classification(&probe.logits(test_features), test_labels, data.classes());
        let description = format!(
            "{}: {}; {}; {}",
            self.what,
            probe_words(config),
            self.how,
            split_words(data, self.n_train, c.n)
        );
        let mut r = EvalRecord::base(
            self.protocol,
            description,
            c,
            encoder,
            data,
            self.n_train,
            self.start.elapsed().as_secs_f64(),
        );
        r.probe = Some(*config);
        r.probe_final_loss = Some(self.final_loss);
        r
    }
}
