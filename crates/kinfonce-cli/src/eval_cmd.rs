//! `kinfonce eval linear|knn`: offline evaluation of a pretrained encoder on frozen features.

use anyhow::{bail, Context};
use kinfonce_data::Split;
use kinfonce_train::eval::{
    classification, knn_record, linear_augmented_record, linear_fast_record, EvalRecord,
    FeatureSet, KnnConfig, LinearProbe, LinearProtocol, ProbeConfig,
};
use kinfonce_train::features::{
    labels_tensor, load_eval_data, EncoderSource, EvalData, EvalDataOptions, FeatureOptions,
    FrozenEncoder,
};
use kinfonce_train::plots;
use kinfonce_train::tch::{Device, Kind, Tensor};
use kinfonce_train::trainer;
use kinfonce_train::Precision;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub enum EvalCommand {
    /// Linear probe on frozen encoder features (before the projection head).
    ///
    /// The SimCLR protocols train the same classifier: SGD lr 0.3, momentum 0.9, weight decay
    /// 1e-6, cosine annealing per epoch over 100 epochs, batch 256, cross-entropy. They differ
    /// in the images (--protocol, --fast):
    ///
    /// official (default; what the official code's simclr_finetune.py runs): the train images
    /// are augmented afresh every epoch with the full SimCLR augmentation at jitter strength 1.0
    /// (random resized crop 0.08-1, flip, color jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale
    /// p 0.2, no blur) and passed through the frozen encoder, so it costs one feature pass over
    /// `train` per epoch; 20% of the training images are held out for a validation accuracy;
    /// validation and test images are resized to 1.1 x their side and centre-cropped (Resize(35)
    /// + CenterCrop(32) on CIFAR). --epochs shortens the 100 epochs at CPU scale.
    ///
    /// crop-flip: train images augmented by random resized crop + flip only, the run's own
    /// validation split held out, whole test images.
    ///
    /// moco-official (the official MoCo code's classifier, lightly's, as its trainer runs it):
    /// SGD lr 30 without momentum or weight decay, batch 512, cosine over 100 epochs, on every
    /// training image augmented by RandomCrop(side, padding 4) + flip, the last partial batch
    /// dropped; the frozen encoder's batch norm in training mode with the run's splits (its
    /// running statistics move, as under pytorch-lightning); whole test images tested after
    /// every epoch (the record holds each epoch's top-1, the last as top-1 and the best
    /// labelled); ImageNet normalisation throughout (as the MoCo runs of --run-preset train).
    ///
    /// moco-official-eval: the same classifier on eval-mode features, the run's own validation
    /// split held out, every batch kept, tested once at the end.
    ///
    /// --fast: features computed once without augmentation and the same classifier trained on
    /// the cached features (seconds instead of hours on a CPU). Expected gap: the augmented
    /// protocol acts as a regulariser and usually scores the same or up to about 1-2 points of
    /// top-1 higher on CIFAR-sized data for well-trained encoders (the literature's observation
    /// for SimCLR-style encoders; not measured by this tool); the fast mode can score higher for
    /// weak encoders (random init, very short runs), where crops only add noise. Rankings of
    /// encoders under the two modes usually agree; compare numbers only within one mode.
    ///
    /// Splits: fit on `train` (training images minus a seeded validation split: the
    /// protocol's 20% for official, the run's otherwise; not the pretraining --subset), report
    /// on `test` (the official test set).
    Linear(LinearArgs),
    /// Weighted k-NN on L2-normalised frozen encoder features (k = 200, temperature 0.1): a test
    /// image's k most cosine-similar train images vote with weight exp(cos / t).
    Knn(KnnArgs),
}

/// Which encoder, which data, where to compute.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// Run folder written by `kinfonce pretrain` (its newest checkpoint unless --checkpoint).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// A checkpoint folder RUN/checkpoints/step-NNNNNNNN (with --run: that run's
    /// configuration describes the network).
    #[arg(long, value_name = "STEP_DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Evaluate the same network at initialisation (the run's seed, before any step): the
    /// random-init baseline.
    #[arg(long)]
    pub init: bool,
    /// Evaluate a MoCo run's momentum (key) encoder instead of the trained (query) one.
    #[arg(long)]
    pub momentum_encoder: bool,
    /// Data set (any format pretraining reads). [default: the run's own data set]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data layout when detection is not wanted: cifar10, cifar100, mnist, stl10, imagefolder,
    /// tiny-imagenet.
    #[arg(long)]
    pub format: Option<String>,
    /// Device: cpu, cuda, cuda:N. [default: the run's]
    #[arg(long)]
    pub device: Option<String>,
    /// Precision of the encoder's forward pass: auto, f32 or bf16 (auto: bf16 where the
    /// hardware computes it natively, as for pretraining). [default: auto]
    #[arg(long, default_value = "auto")]
    pub precision: Precision,
    /// Channels-last layout: `--channels-last` on, `--channels-last=false` off.
    /// [default: chosen with the precision]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub channels_last: Option<bool>,
    /// Threads for libtorch and the image pipeline (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Images per forward pass (and per probe step). [default: 256; the probe of
    /// moco-official(-eval): 512]
    #[arg(long)]
    pub batch: Option<usize>,
    /// Print the result as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which splits.
#[derive(clap::Args, Debug, Clone)]
pub struct SplitArgs {
    /// Split reported on: test (the official test set) or val (the run's held-out training
    /// images, for data sets without a test split).
    #[arg(long, default_value = "test")]
    pub test_split: String,
    /// Use at most N train images (an evenly spaced selection of the seeded train split).
    #[arg(long, value_name = "N")]
    pub subset_train: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct LinearArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Images and classifier of the probe: official (simclr_finetune.py, the official code's),
    /// crop-flip, moco-official (the official MoCo code's) or moco-official-eval; see above.
    #[arg(
        long,
        default_value = "official",
        value_name = "official|crop-flip|moco-official|moco-official-eval"
    )]
    pub protocol: LinearProtocol,
    /// Fast mode: train on features computed once without augmentation (instead of a
    /// --protocol).
    #[arg(long, conflicts_with = "protocol")]
    pub fast: bool,
    /// Probe epochs (cosine annealing over them).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// SGD learning rate. [default: 0.3; moco-official(-eval): 30]
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum. [default: 0.9; moco-official(-eval): 0]
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (on weight and bias). [default: 1e-6; moco-official(-eval): 0]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Seed of the probe's initialisation, shuffles and augmentations. [default: the run's]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Confusion-matrix figure (SVG). [default: RUN/confusion-linear-PROTOCOL[-init].svg]
    #[arg(long, value_name = "FILE")]
    pub confusion: Option<PathBuf>,
    /// Save the trained probe (safetensors: `weight` [C, d], `bias` [C]).
    #[arg(long, value_name = "FILE")]
    pub save_probe: Option<PathBuf>,
    /// Evaluate a saved probe instead of training one (it must have the data set's number of
    /// classes and the encoder's feature width).
    #[arg(long, value_name = "FILE")]
    pub probe: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct KnnArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Neighbours k.
    #[arg(long, default_value_t = 200)]
    pub k: i64,
    /// Temperature t of the vote weights exp(cos / t).
    #[arg(long, default_value_t = 0.1)]
    pub t: f64,
}

/// A damaged checkpoint met by `eval` or `embed`: name the newest intact one of its run.
pub fn with_intact_checkpoint_help(err: anyhow::Error) -> anyhow::Error {
    use kinfonce_train::error::TrainError;
    let Some(TrainError::Damaged { file, .. }) = err.downcast_ref::<TrainError>() else {
        return err;
    };
    let Some(checkpoints) = file.parent().and_then(Path::parent) else {
        return err;
    };
    match kinfonce_train::checkpoint::newest_intact(checkpoints) {
        Ok(Some(intact)) => anyhow::anyhow!(
            "{err:#}. The newest intact checkpoint is {0}; pass --checkpoint {0} to use it",
            intact.display()
        ),
        _ => err,
    }
}

pub fn run(cmd: EvalCommand) -> anyhow::Result<()> {
    crate::pretrain::ensure_passive_openmp();
    match cmd {
        EvalCommand::Linear(a) => linear(a),
        EvalCommand::Knn(a) => knn(a),
    }
}

pub(crate) fn encoder_source(s: &SourceArgs) -> EncoderSource {
    EncoderSource {
        run_dir: s.run.clone(),
        checkpoint: s.checkpoint.clone(),
        init: s.init,
        momentum: s.momentum_encoder,
    }
}

pub(crate) fn feature_options(s: &SourceArgs, threads: usize) -> FeatureOptions {
    FeatureOptions {
        device: s.device.clone().unwrap_or_default(),
        precision: s.precision,
        channels_last: s.channels_last,
        batch: s.batch.unwrap_or(256).max(1),
        threads,
        ..Default::default()
    }
}

/// The encoder and the evaluation splits of the arguments.
/// `val_fraction`: the share of the training images held out as `val` (`None`: the run's).
fn prepare(
    s: &SourceArgs,
    split: &SplitArgs,
    val_fraction: Option<f64>,
) -> anyhow::Result<(FrozenEncoder, EvalData, FeatureOptions)> {
    if s.init && s.checkpoint.is_some() {
        bail!("--init evaluates the network at initialisation; drop --checkpoint");
    }
    let threads = trainer::configure_threads(s.threads);
    let source = encoder_source(s);
    let config = source.config()?;
    let report_split = match split.test_split.as_str() {
        "test" => Split::Test,
        "val" => Split::Val,
        other => bail!("--test-split {other}: expected test or val"),
    };
    let data_options = EvalDataOptions {
        data: s.data.clone(),
        format: s.format.clone(),
        report_split,
        subset_train: split.subset_train,
        val_fraction,
    };
    eprintln!(
        "reading {}",
        s.data.as_ref().unwrap_or(&config.data.data).display()
    );
    let data = load_eval_data(&config, &data_options)?;
    let options = feature_options(s, threads);
    let encoder = FrozenEncoder::load_with_config(
        &source,
        config,
        &options,
        data.train.height().max(data.train.width()),
        data.train.channels(),
    )?;
    eprintln!(
        "encoder: {} width {} {}, {}-d features; train {} images, {} {} images, {} classes",
        encoder.config.model.arch,
        encoder.config.model.width,
        match &encoder.checkpoint {
            Some(p) => format!(
                "{}from {} (step {})",
                if s.momentum_encoder {
                    "momentum encoder "
                } else {
                    ""
                },
                p.display(),
                encoder.step
            ),
            None => format!("at initialisation (seed {})", encoder.config.compute.seed),
        },
        encoder.feature_dim,
        data.train.len(),
        data.test.len(),
        data.test_split,
        data.classes()
    );
    Ok((encoder, data, options))
}

fn features_with_progress(
    encoder: &FrozenEncoder,
    data: &EvalData,
    options: &FeatureOptions,
) -> anyhow::Result<FeatureSet> {
    let start = Instant::now();
    let mut last = Instant::now();
    let fs = FeatureSet::compute(encoder, data, options, &mut |what, done, total| {
        if done == total || last.elapsed().as_secs_f64() > 5.0 {
            eprintln!("  {what}: {done}/{total}");
            last = Instant::now();
        }
    })?;
    eprintln!("features in {:.1} s", start.elapsed().as_secs_f64());
    Ok(fs)
}

fn print_record(r: &EvalRecord, run: &Path, json: bool) {
    println!(
        "{} on {} ({} train / {} {} images): top-1 {:.2}%, top-5 {:.2}%",
        r.protocol,
        r.data,
        r.n_train,
        r.n_test,
        r.test_split,
        100.0 * r.top1,
        100.0 * r.top5
    );
    if let Some(val) = r.val_top1 {
        println!(
            "validation top-1 (the protocol's held-out training images): {:.2}%",
            100.0 * val
        );
    }
    if let (Some(best), Some(epoch)) = (r.best_test_top1, r.best_epoch) {
        println!(
            "best epoch's test top-1: {:.2}% (epoch {epoch}; chosen on the test split, as the \
             official logs' maximum); the top-1 above is the last epoch's",
            100.0 * best
        );
    }
    println!("protocol: {}", r.description);
    if r.per_class.len() <= 20 {
        for (name, acc) in r.class_names.iter().zip(&r.per_class) {
            println!("  {name:>16}: {:.2}%", 100.0 * acc);
        }
    } else {
        let worst = r.per_class.iter().cloned().fold(f64::INFINITY, f64::min);
        let best = r.per_class.iter().cloned().fold(0.0, f64::max);
        println!(
            "  per-class accuracy from {:.2}% to {:.2}% over {} classes (all in --json)",
            100.0 * worst,
            100.0 * best,
            r.per_class.len()
        );
    }
    if json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        v["run"] = serde_json::json!(run.display().to_string());
        println!("{v}");
    }
}

fn run_folder(s: &SourceArgs) -> anyhow::Result<PathBuf> {
    Ok(encoder_source(s).run_folder()?)
}

fn knn(a: KnnArgs) -> anyhow::Result<()> {
    let config = KnnConfig {
        k: a.k,
        temperature: a.t,
    };
    config.validate()?;
    let (encoder, data, options) = prepare(&a.source, &a.split, None)?;
    let fs = features_with_progress(&encoder, &data, &options)?;
    let r = knn_record(&encoder, &data, &fs, &config)?;
    if let Some(used) = r.knn.filter(|used| used.k != a.k) {
        eprintln!(
            "note: --k {} is above the {} bank images; k = {} used",
            a.k, r.n_train, used.k
        );
    }
    print_record(&r, &run_folder(&a.source)?, a.source.json);
    Ok(())
}

fn read_probe(path: &Path, classes: usize, dim: i64, data: &Path) -> anyhow::Result<LinearProbe> {
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("reading the probe {}", path.display()))?;
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.to_kind(Kind::Float))
            .with_context(|| {
                format!(
                    "{}: no tensor `{name}` (not a saved probe?)",
                    path.display()
                )
            })
    };
    let (w, b) = (get("weight")?, get("bias")?);
    let size = w.size();
    if size.len() != 2 || b.size() != [size[0]] {
        bail!(
            "{}: weight {:?} and bias {:?} are not a linear classifier",
            path.display(),
            size,
            b.size()
        );
    }
    if size[0] as usize != classes {
        bail!(
            "the probe {} has {} classes; the data set {} has {classes}",
            path.display(),
            size[0],
            data.display()
        );
    }
    if size[1] != dim {
        bail!(
            "the probe {} takes {}-d features; this encoder gives {dim}-d features",
            path.display(),
            size[1]
        );
    }
    Ok(LinearProbe::from_parameters(w, b))
}

fn linear(a: LinearArgs) -> anyhow::Result<()> {
    let augmented = !(a.fast || a.probe.is_some());
    let val_fraction = augmented.then(|| a.protocol.val_fraction()).flatten();
    let (encoder, data, options) = prepare(&a.source, &a.split, val_fraction)?;
    let run = run_folder(&a.source)?;
    // The protocol's classifier under the flags (the fast mode trains the SimCLR one).
    let defaults = if augmented {
        a.protocol.probe_defaults()
    } else {
        ProbeConfig::default()
    };
    let probe_config = ProbeConfig {
        epochs: a.epochs,
        batch: a.source.batch.unwrap_or(defaults.batch).max(1),
        lr: a.lr.unwrap_or(defaults.lr),
        momentum: a.momentum.unwrap_or(defaults.momentum),
        weight_decay: a.weight_decay.unwrap_or(defaults.weight_decay),
        seed: a.seed.unwrap_or(encoder.config.compute.seed),
    };
    probe_config.validate()?;
    let mut progress = |epoch: usize, loss: f64| {
        if epoch == 1 || epoch.is_multiple_of(10) || epoch == probe_config.epochs {
            eprintln!(
                "  probe epoch {epoch}/{}: loss {loss:.4}",
                probe_config.epochs
            );
        }
    };
    let (record, probe) = if let Some(path) = &a.probe {
        let probe = read_probe(path, data.classes(), encoder.feature_dim, &data.path)?;
        let n_test = data.test.len();
        let test = encoder.features(&data.test, &data.normalization, &options, &mut |d| {
            if d == n_test {
                eprintln!("  test features: {d}/{n_test}");
            }
        })?;
        let start = Instant::now();
        let c = classification(
            &probe.logits(&test),
            &labels_tensor(&data.test),
            data.classes(),
        );
        let description = format!(
            "the saved linear probe {} applied to frozen encoder features of the `{}` split ({} images), no augmentation",
            path.display(),
            data.test_split,
            c.n
        );
        let r = EvalRecord::base(
            "linear-saved",
            description,
            c,
            &encoder,
            &data,
            0,
            start.elapsed().as_secs_f64(),
        );
        (r, probe)
    } else if a.fast {
        let fs = features_with_progress(&encoder, &data, &options)?;
        linear_fast_record(&encoder, &data, &fs, &probe_config, &mut progress)?
    } else {
        eprintln!(
            "{} protocol: {} epochs of augmented train images through the encoder (use --fast for cached features)",
            a.protocol, probe_config.epochs
        );
        linear_augmented_record(
            &encoder,
            &data,
            a.protocol,
            &probe_config,
            &options,
            &mut progress,
        )?
    };
    if let Some(path) = &a.save_probe {
        Tensor::write_safetensors(
            &[
                ("weight", probe.weight.to_device(Device::Cpu)),
                ("bias", probe.bias.to_device(Device::Cpu)),
            ],
            path,
        )
        .with_context(|| format!("writing the probe {}", path.display()))?;
        eprintln!("probe saved to {}", path.display());
    }
    let figure = a.confusion.clone().unwrap_or_else(|| {
        run.join(format!(
            "confusion-linear-{}{}.svg",
            if a.fast { "fast" } else { a.protocol.name() },
            match (&encoder.checkpoint, a.source.momentum_encoder) {
                (None, _) => "-init",
                (Some(_), true) => "-momentum",
                (Some(_), false) => "",
            }
        ))
    });
    let title = format!(
        "Linear probe ({}) on {}: top-1 {:.2}%",
        record.protocol,
        data.test_split,
        100.0 * record.top1
    );
    std::fs::write(
        &figure,
        plots::confusion_plot(&record.confusion, &record.class_names, &title),
    )
    .with_context(|| format!("writing {}", figure.display()))?;
    eprintln!("confusion matrix: {}", figure.display());
    print_record(&record, &run, a.source.json);
    Ok(())
}
