//! The record of one evaluation (`eval-*.json`, `eval --json`) and the protocols that make it:
//! k-NN, the fast probe on cached features, the probes on augmented images (the official
//! protocol and crop-flip).

use super::classify::{classification, knn_classify, Classification, KnnConfig};
use super::probe::{train_probe, FeatureSet, LinearProbe, ProbeConfig};
use crate::error::{Result, TrainError};
use crate::features::{labels_tensor, EvalData, FeatureOptions, FrozenEncoder};
use crate::hardware::Precision;
use kinfonce_data::{AugmentConfig, Normalization};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::Tensor;

/// One evaluation's result: what `--json` prints and what `compare` caches as
/// `eval-knn.json` / `eval-linear.json` in a run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// `knn`, `linear-fast`, `linear-official` or `linear-crop-flip` (`linear` in records of
    /// earlier versions: the crop-flip protocol).
    pub protocol: String,
    /// The protocol in words (splits, sizes, hyperparameters).
    pub description: String,
    pub top1: f64,
    pub top5: f64,
    /// Top-1 on the protocol's own validation split (the official linear protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_top1: Option<f64>,
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
    /// k-NN settings (k-NN only); `k` is the k used: the k asked for, at most the bank's size.
    pub knn: Option<KnnConfig>,
    /// The k asked for (k-NN only); above the bank's size it is not the k used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_asked: Option<i64>,
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
    /// The test top-1 after each epoch (`moco-official`, as the official trainer logs `val_acc`
    /// on the test images every epoch); `top1` is the last of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_test_top1: Option<Vec<f64>>,
    /// The best of `epoch_test_top1` and its epoch (1-based): the official logs' maximum, which
    /// is chosen on the test split and so is no unbiased estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_test_top1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
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
            val_top1: None,
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
            k_asked: None,
            probe: None,
            probe_final_loss: None,
            seconds,
            precision: Some(encoder.precision),
            channels_last: Some(encoder.channels_last),
            epoch_test_top1: None,
            best_test_top1: None,
            best_epoch: None,
        }
    }
}

fn split_words(data: &EvalData, n_train: usize, n_test: usize) -> String {
    format!(
        "fit on `train` ({n_train} images: the training images minus a seeded {:.0}% validation split), report on `{}` ({n_test} images{})",
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
    asked: &KnnConfig,
) -> Result<EvalRecord> {
    let start = Instant::now();
    let n_train = features.train.size()[0] as usize;
    // A k above the bank votes with every bank image: the record says which k voted.
    let used = KnnConfig {
        k: asked.k.min(n_train as i64).max(1),
        ..*asked
    };
    let config = &used;
    let c = knn_classify(
        &features.train.to_device(encoder.device),
        &features.train_labels,
        &features.test.to_device(encoder.device),
        &features.test_labels,
        data.classes(),
        config,
    )?;
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
    r.knn = Some(used);
    r.k_asked = Some(asked.k);
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

/// The linear probes trained on images augmented afresh every epoch and passed through the
/// frozen encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinearProtocol {
    /// The official code's `simclr_finetune.py` (pl_bolts' `SimCLRFinetuneTransform`): train
    /// on the full SimCLR augmentation at jitter strength 1.0 without blur, validate and test on
    /// Resize(int(1.1 side)) + CenterCrop(side); 20% of the training images held out for the
    /// validation accuracy (pl_bolts' `val_split`), the test split reported.
    #[default]
    Official,
    /// Random resized crop + horizontal flip for training, whole test images; the run's own
    /// validation split held out.
    CropFlip,
    /// The official MoCo code's classifier as its trainer runs it (`moco/moco.py` under
    /// pytorch-lightning 1.8.6): RandomCrop(side, padding 4) + flip for training, whole test
    /// images, ImageNet normalisation throughout; SGD lr 30 without momentum or weight decay,
    /// batch 512 ([`LinearProtocol::probe_defaults`]); every training image, the last partial
    /// batch dropped; the frozen encoder's batch norm in training mode while the classifier
    /// trains (Lightning puts the whole model in train mode: batch statistics by the run's
    /// splits, the running statistics updated), the test top-1 after every epoch with the
    /// running statistics as they then are.
    MocoOfficial,
    /// The same classifier on eval-mode features (the running statistics fixed), the run's own
    /// validation split held out, every batch kept, the test top-1 after the last epoch.
    MocoOfficialEval,
}

impl LinearProtocol {
    pub fn name(self) -> &'static str {
        match self {
            LinearProtocol::Official => "official",
            LinearProtocol::CropFlip => "crop-flip",
            LinearProtocol::MocoOfficial => "moco-official",
            LinearProtocol::MocoOfficialEval => "moco-official-eval",
        }
    }

    /// The classifier's training settings the protocol prescribes (flags may override them).
    pub fn probe_defaults(self) -> ProbeConfig {
        match self {
            LinearProtocol::MocoOfficial | LinearProtocol::MocoOfficialEval => ProbeConfig {
                batch: 512,
                lr: 30.0,
                momentum: 0.0,
                weight_decay: 0.0,
                ..ProbeConfig::default()
            },
            _ => ProbeConfig::default(),
        }
    }

    /// The normalisation of every image the probe sees: ImageNet's for moco-official, else
    /// `run` (the run's own).
    pub fn normalization(self, run: &Normalization) -> Normalization {
        match self {
            LinearProtocol::MocoOfficial | LinearProtocol::MocoOfficialEval => {
                Normalization::imagenet()
            }
            _ => run.clone(),
        }
    }

    /// The training images' augmentation for images of side `side`.
    pub fn train_augment(self, side: usize, normalization: &Normalization) -> AugmentConfig {
        match self {
            LinearProtocol::Official => {
                AugmentConfig::simclr(side, 1.0, false, normalization.clone())
            }
            LinearProtocol::CropFlip
            | LinearProtocol::MocoOfficial
            | LinearProtocol::MocoOfficialEval => {
                let mut crop_flip =
                    AugmentConfig::simclr(side, 0.0, false, self.normalization(normalization));
                crop_flip.jitter_p = 0.0;
                crop_flip.grayscale_p = 0.0;
                if self != LinearProtocol::CropFlip {
                    crop_flip.pad_crop = Some(4);
                }
                crop_flip
            }
        }
    }

    /// Validation and test images resized to 1.1 x the side and centre-cropped.
    pub fn center_crop(self) -> bool {
        self == LinearProtocol::Official
    }

    /// The fraction of the training images the protocol holds out (`None`: the run's
    /// validation split); `official` reports its validation accuracy.
    pub fn val_fraction(self) -> Option<f64> {
        match self {
            LinearProtocol::Official => Some(0.2),
            LinearProtocol::MocoOfficial => Some(0.0),
            LinearProtocol::CropFlip | LinearProtocol::MocoOfficialEval => None,
        }
    }

    /// The encoder's batch norm in training mode while the classifier trains (the official
    /// MoCo trainer's), which also drops the last partial batch (split statistics need whole
    /// batches) and tests after every epoch.
    pub fn train_mode_encoder(self) -> bool {
        self == LinearProtocol::MocoOfficial
    }

    fn how(self) -> &'static str {
        match self {
            LinearProtocol::Official => {
                "train images augmented afresh every epoch as the official simclr_finetune.py (random resized crop scale 0.08-1, ratio 3/4-4/3, horizontal flip p 0.5, color jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale p 0.2, no blur); validation and test images resized to 1.1 x their side and centre-cropped"
            }
            LinearProtocol::CropFlip => {
                "train images augmented afresh every epoch (random resized crop scale 0.08-1, ratio 3/4-4/3, bilinear, + horizontal flip p 0.5), test images not augmented"
            }
            LinearProtocol::MocoOfficial => {
                "every train image augmented afresh every epoch as the official MoCo code's classifier (RandomCrop with padding 4 + horizontal flip p 0.5), last partial batch dropped, the encoder's batch norm in training mode with the run's splits (running statistics updated) as pytorch-lightning runs it, test images not augmented and tested after every epoch, ImageNet normalisation"
            }
            LinearProtocol::MocoOfficialEval => {
                "train images augmented afresh every epoch as the official MoCo code's classifier (RandomCrop with padding 4 + horizontal flip p 0.5), eval-mode encoder, test images not augmented, ImageNet normalisation"
            }
        }
    }

    /// The record's protocol name and a short description.
    fn what(self) -> (&'static str, &'static str) {
        match self {
            LinearProtocol::Official => (
                "linear-official",
                "official linear protocol (simclr_finetune.py)",
            ),
            LinearProtocol::CropFlip => ("linear-crop-flip", "crop-flip linear protocol"),
            LinearProtocol::MocoOfficial => (
                "linear-moco-official",
                "official MoCo linear protocol (lightly's classifier, as its trainer runs it)",
            ),
            LinearProtocol::MocoOfficialEval => (
                "linear-moco-official-eval",
                "official MoCo linear protocol on eval-mode features",
            ),
        }
    }
}

impl std::fmt::Display for LinearProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LinearProtocol {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "official" => Ok(LinearProtocol::Official),
            "crop-flip" => Ok(LinearProtocol::CropFlip),
            "moco-official" => Ok(LinearProtocol::MocoOfficial),
            "moco-official-eval" => Ok(LinearProtocol::MocoOfficialEval),
            other => Err(format!(
                "unknown protocol `{other}`: expected official, crop-flip, moco-official or \
                 moco-official-eval"
            )),
        }
    }
}

/// A linear probe trained by `protocol`: every epoch the train images are augmented afresh,
/// passed through the frozen encoder, and the classifier takes an SGD step per batch. Reports
/// the top-1 on `data.test` and, for protocols with a validation split, on `data.val`.
pub fn linear_augmented_record(
    encoder: &FrozenEncoder,
    data: &EvalData,
    protocol: LinearProtocol,
    config: &ProbeConfig,
    options: &FeatureOptions,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(EvalRecord, LinearProbe)> {
    config.validate()?;
    let start = Instant::now();
    let feature_options = FeatureOptions {
        batch: config.batch,
        center_crop: protocol.center_crop(),
        ..options.clone()
    };
    let side = data.train.height().max(data.train.width());
    let train_mode = protocol.train_mode_encoder();
    let splits = encoder.bn_splits();
    if train_mode && (!config.batch.is_multiple_of(splits) || config.batch > data.train.len()) {
        return Err(TrainError::Config(format!(
            "--batch {} with --protocol {protocol}: expected a multiple of the run's bn_splits \
             ({splits}) and at most the {} training images (the last partial batch is dropped)",
            config.batch,
            data.train.len()
        )));
    }
    let loader = encoder.augmented_loader(
        &data.train,
        protocol.train_augment(side, &data.normalization),
        &feature_options,
        config.seed,
        train_mode,
    )?;
    let mut probe = LinearProbe::new(
        encoder.feature_dim as usize,
        data.classes(),
        config.seed,
        encoder.device,
    );
    let normalization = protocol.normalization(&data.normalization);
    let features_of = |set: &std::sync::Arc<kinfonce_data::Dataset>| -> Result<(Tensor, Tensor)> {
        let features = encoder.features(set, &normalization, &feature_options, &mut |_| {})?;
        Ok((features, labels_tensor(set)))
    };
    let mut epoch_test_top1 = Vec::new();
    let mut last = f64::NAN;
    for epoch in 0..config.epochs {
        let lr = config.lr_at(epoch);
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in loader.epoch(epoch as u64) {
            let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
            let x = encoder.input(
                batch.as_f32().expect("f32 batches"),
                batch.shape,
                batch.layout,
            );
            let f = if train_mode {
                encoder.forward_train(&x, splits)
            } else {
                encoder.forward(&x)
            };
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
        if train_mode {
            // The running statistics moved this epoch: test as the official validation loop.
            let (features, labels) = features_of(&data.test)?;
            epoch_test_top1
                .push(classification(&probe.logits(&features), &labels, data.classes()).top1);
        }
        progress(epoch + 1, last);
    }
    let val_top1 = match protocol.val_fraction() {
        Some(_) if !data.val.is_empty() => {
            let (features, labels) = features_of(&data.val)?;
            Some(classification(&probe.logits(&features), &labels, data.classes()).top1)
        }
        _ => None,
    };
    let (test_features, test_labels) = features_of(&data.test)?;
    let (name, what) = protocol.what();
    let mut record = ProbeRun {
        protocol: name,
        what,
        how: protocol.how(),
        n_train: data.train.len(),
        final_loss: last,
        start,
    }
    .record(
        &probe,
        (&test_features, &test_labels),
        config,
        encoder,
        data,
    );
    record.val_top1 = val_top1;
    if let Some((best_epoch, &best)) = epoch_test_top1
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
    {
        record.best_test_top1 = Some(best);
        record.best_epoch = Some(best_epoch + 1);
        record.epoch_test_top1 = Some(epoch_test_top1);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kinfonce_data::{augment_view, ColorJitter, ImageShape, Layout, Scratch, ViewKey};

    #[test]
    fn the_moco_protocol_is_the_official_moco_classifier() {
        let moco = LinearProtocol::MocoOfficial;
        let augment = moco.train_augment(32, &Normalization::cifar10());
        assert_eq!(
            (augment.pad_crop, augment.size, augment.flip_p),
            (Some(4), 32, 0.5)
        );
        assert_eq!((augment.jitter_p, augment.grayscale_p), (0.0, 0.0));
        assert!(augment.blur.is_none());
        assert_eq!(augment.normalization, Normalization::imagenet());
        assert_eq!(
            moco.normalization(&Normalization::cifar10()),
            Normalization::imagenet()
        );
        let probe = moco.probe_defaults();
        assert_eq!(
            (
                probe.lr,
                probe.momentum,
                probe.weight_decay,
                probe.batch,
                probe.epochs
            ),
            (30.0, 0.0, 0.0, 512, 100)
        );
        assert!(!moco.center_crop());
        // As the official trainer: every training image, the encoder's batch norm training.
        assert_eq!(moco.val_fraction(), Some(0.0));
        assert!(moco.train_mode_encoder());
        assert_eq!("moco-official".parse(), Ok(moco));
        let eval = LinearProtocol::MocoOfficialEval;
        assert_eq!(eval.probe_defaults(), moco.probe_defaults());
        assert_eq!(eval.train_augment(32, &Normalization::cifar10()), augment);
        assert!(eval.val_fraction().is_none() && !eval.train_mode_encoder());
        assert_eq!("moco-official-eval".parse(), Ok(eval));
        assert_eq!(
            LinearProtocol::Official.probe_defaults(),
            ProbeConfig::default()
        );
    }

    #[test]
    fn the_official_protocol_is_simclr_finetune_transform() {
        let norm = Normalization::cifar10();
        let official = LinearProtocol::Official.train_augment(32, &norm);
        assert_eq!(official.jitter, ColorJitter::simclr(1.0));
        assert_eq!(
            (official.jitter.brightness, official.jitter.hue),
            (0.8, 0.2)
        );
        assert_eq!((official.jitter_p, official.grayscale_p), (0.8, 0.2));
        assert_eq!((official.crop_scale, official.flip_p), ((0.08, 1.0), 0.5));
        assert!(official.blur.is_none());
        assert!(LinearProtocol::Official.center_crop());
        assert_eq!(LinearProtocol::Official.val_fraction(), Some(0.2));
        let crop_flip = LinearProtocol::CropFlip.train_augment(32, &norm);
        assert_eq!((crop_flip.jitter_p, crop_flip.grayscale_p), (0.0, 0.0));
        assert!(!LinearProtocol::CropFlip.center_crop());
        assert_eq!("crop-flip".parse(), Ok(LinearProtocol::CropFlip));
        assert!("fast"
            .parse::<LinearProtocol>()
            .unwrap_err()
            .contains("official"));

        // What the pipeline draws follows those settings: jitter on about 80% of the views,
        // grayscale on about 20%, brightness factors over strength 1.0's [0.2, 1.8].
        let image: Vec<u8> = (0..32 * 32 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let shape = ImageShape {
            height: 32,
            width: 32,
            channels: 3,
        };
        let (mut jittered, mut gray, mut brightness) = (0, 0, Vec::new());
        let mut out = vec![0.0f32; 3 * 32 * 32];
        let n = 2000;
        for index in 0..n {
            let key = ViewKey {
                seed: 0,
                epoch: 0,
                index,
                view: 0,
            };
            let params = augment_view(
                &official,
                &image,
                shape,
                key,
                Layout::Nchw,
                &mut out,
                &mut Scratch::default(),
            );
            if let Some((_, factors)) = params.jitter {
                jittered += 1;
                brightness.push(factors[0]);
            }
            gray += usize::from(params.grayscale);
        }
        let share = |k: usize| k as f64 / n as f64;
        assert!((share(jittered) - 0.8).abs() < 0.03, "{jittered}");
        assert!((share(gray) - 0.2).abs() < 0.03, "{gray}");
        let (lo, hi) = brightness
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &b| (l.min(b), h.max(b)));
        assert!(
            (0.2..0.25).contains(&lo) && hi <= 1.8 && hi > 1.75,
            "{lo} {hi}"
        );
    }
}
