//! Kernel-vs-kernel studies: evaluation of finished runs with cached results, the metrics of
//! each run folder, statistics over seeds and the study's `report.md` with its figures.
//!
//! A study folder holds `runs/<preset>-seed<S>/` (standard pretraining run folders, each with
//! `eval-knn.json`, `eval-linear.json`, `eval-knn-init.json`, `eval-linear-init.json` and,
//! for the first seed of each kernel, `pca-test.json`), then `report.md`, `loss.svg`,
//! `knn-monitor.svg` and `pca-<preset>.svg`.

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::config::{read_provenance, read_run_config};
use crate::device::parse_device;
use crate::error::{io_err, Result, TrainError};
use crate::eval::{
    knn_record, linear_fast_record, pca_2d, EvalRecord, FeatureSet, KnnConfig, ProbeConfig,
};
use crate::features::{
    eval_source, run_normalization, EncoderSource, EvalData, EvalDataOptions, FeatureOptions,
    FrozenEncoder,
};
use crate::hardware;
use crate::metrics::{read_records, Record};

use kinfonce_data::{DataConfig, DataFormat, Dataset, Split};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The run folder of one (preset, seed) of a study.
pub fn run_dir(out: &Path, preset: &str, seed: u64) -> PathBuf {
    out.join("runs").join(format!("{preset}-seed{seed}"))
}

/// The settings of `existing` (a run folder's config) that differ from `wanted` among the
/// trajectory settings ([`TrainConfig::trajectory`]), as `key: existing -> wanted`.
pub fn trajectory_differences(existing: &TrainConfig, wanted: &TrainConfig) -> Result<Vec<String>> {
    // `auto` asks for what this machine picks; the existing run stores what was picked.
    let mut wanted = wanted.clone();
    wanted.resolve_compute(
        &hardware::target_of(parse_device(&wanted.compute.device)?),
        false,
    )?;
    Ok(existing
        .trajectory_changes(&wanted)?
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// Where a run folder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// No run yet (no config.toml).
    Absent,
    /// A run with no complete checkpoint, or one short of its schedule: resume.
    Unfinished { step: u64, total: u64 },
    /// Its newest checkpoint is at the schedule's last step, or, for a run kept without its
    /// weights (no checkpoint), its `metrics.jsonl` reached that step and its four eval records
    /// are there.
    Finished { step: u64, weights: bool },
}

/// The evaluation records of a run folder (see [`evaluate_run`]).
pub const EVAL_FILES: [&str; 4] = [
    "eval-knn.json",
    "eval-linear.json",
    "eval-knn-init.json",
    "eval-linear-init.json",
];

/// Whether the run folder `dir` holds a checkpoint.
pub fn has_weights(dir: &Path) -> Result<bool> {
    Ok(checkpoint::latest(&dir.join("checkpoints"))?.is_some())
}

/// The number of steps the schedule of `config` runs, given its steps per epoch.
pub fn total_steps(config: &TrainConfig, steps_per_epoch: u64) -> u64 {
    config.schedule_steps(steps_per_epoch).1
}

/// The state of the run in `dir`, from its config.toml (`provenance.steps_per_epoch`) and the
/// newest checkpoint's `state.json` (without a checkpoint: the last step of `metrics.jsonl`).
/// A run that finished without weights but lacks an eval record is an error naming it: it can
/// be neither evaluated nor resumed.
pub fn run_state(dir: &Path) -> Result<RunState> {
    if !dir.join("config.toml").is_file() {
        return Ok(RunState::Absent);
    }
    run_state_with(dir, &read_run_config(dir)?)
}

/// The state of the run in `dir` were it configured as `config` (a resume may move
/// `max_steps`).
pub fn run_state_with(dir: &Path, config: &TrainConfig) -> Result<RunState> {
    let path = dir.join("config.toml");
    if !path.is_file() {
        return Ok(RunState::Absent);
    }
    let spe = read_provenance(dir)?
        .get("steps_per_epoch")
        .and_then(toml::Value::as_integer)
        .ok_or_else(|| {
            TrainError::Config(format!(
                "{}: no provenance.steps_per_epoch (not written by kinfonce pretrain?)",
                path.display()
            ))
        })? as u64;
    let total = total_steps(config, spe);
    if let Some(ck) = checkpoint::latest(&dir.join("checkpoints"))? {
        let step = checkpoint::load_state(&ck)?.step;
        return Ok(if step >= total && step > 0 {
            RunState::Finished {
                step,
                weights: true,
            }
        } else {
            RunState::Unfinished { step, total }
        });
    }
    let metrics = dir.join("metrics.jsonl");
    let logged = if metrics.is_file() {
        read_records(&metrics)?.iter().map(Record::step).max()
    } else {
        None
    };
    match logged {
        Some(step) if step >= total && step > 0 => {
            let missing: Vec<&str> = EVAL_FILES
                .into_iter()
                .filter(|f| !dir.join(f).is_file())
                .collect();
            if !missing.is_empty() {
                return Err(TrainError::Config(format!(
                    "{} finished (step {step}) but holds no weights (no checkpoint) and lacks {}: \
                     it can be neither evaluated nor resumed; restore its checkpoints/ or its \
                     eval records, or move the folder away to train it again",
                    dir.display(),
                    missing.join(", ")
                )));
            }
            Ok(RunState::Finished {
                step,
                weights: false,
            })
        }
        // Stopped before its first checkpoint: nothing to resume from.
        _ => Ok(RunState::Unfinished { step: 0, total }),
    }
}

/// What the metrics of a run folder say.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunMetrics {
    /// Loss of the last step line.
    pub final_loss: f64,
    /// Completed epochs (epoch lines without `partial_epoch`).
    pub epochs: u64,
    /// Steps of the newest checkpoint (without one: of the last metrics line).
    pub steps: u64,
    /// Seconds of training (the newest checkpoint's `elapsed_s`, monitors included; NaN for a
    /// run kept without its checkpoints).
    pub wall_s: f64,
    /// Training views per second (the last epoch line's).
    pub views_per_s: f64,
    /// (epoch, mean loss of that epoch).
    pub loss_curve: Vec<(f64, f64)>,
    /// (epoch, k-NN monitor top-1), epoch 0 = at initialisation.
    pub knn_curve: Vec<(f64, f64)>,
}

/// Reads `metrics.jsonl` and the newest checkpoint's state of a run folder.
pub fn read_metrics(dir: &Path) -> Result<RunMetrics> {
    let mut m = RunMetrics {
        final_loss: f64::NAN,
        wall_s: f64::NAN,
        ..Default::default()
    };
    for record in read_records(&dir.join("metrics.jsonl"))? {
        m.steps = m.steps.max(record.step());
        if let Some((epoch, acc)) = record.knn() {
            m.knn_curve.push((epoch as f64, acc));
        }
        match record {
            Record::Step { loss, .. } => m.final_loss = loss,
            Record::Epoch(e) => {
                m.loss_curve.push((e.epoch as f64, e.loss));
                m.views_per_s = e.views_per_s;
                if !e.partial_epoch {
                    m.epochs = m.epochs.max(e.epoch);
                }
            }
            Record::Init { .. } => {}
        }
    }
    if let Some(ck) = checkpoint::latest(&dir.join("checkpoints"))? {
        let state = checkpoint::load_state(&ck)?;
        m.steps = state.step;
        m.wall_s = state.elapsed_s;
        if m.final_loss.is_nan() {
            m.final_loss = state.last_loss;
        }
    }
    Ok(m)
}

/// Mean, sample standard deviation (n - 1; 0 for a single value) and the 95% interval of the
/// mean, Student t over the n values: mean ± t_{0.975, n-1} · std / sqrt(n) (NaN bounds below
/// two values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
    pub lo: f64,
    pub hi: f64,
}

pub fn stats(xs: &[f64]) -> Stats {
    let n = xs.len();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std = match n {
        0 => f64::NAN,
        1 => 0.0,
        _ => (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt(),
    };
    let half = if n > 1 {
        t_quantile_975(n as u64 - 1) * std / (n as f64).sqrt()
    } else {
        f64::NAN
    };
    Stats {
        mean,
        std,
        n,
        lo: mean - half,
        hi: mean + half,
    }
}

/// P(|T| < t) for Student's t with `df` degrees of freedom, as a function of
/// theta = atan(t / sqrt(df)): the finite series of Abramowitz & Stegun 26.7.3 (odd df:
/// 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2·4/(3·5) cos^4 + ...))) and 26.7.4 (even df:
/// sin (1 + 1/2 cos^2 + 1·3/(2·4) cos^4 + ...)), each up to the cos^(df-2) term.
fn t_two_sided_mass(theta: f64, df: u64) -> f64 {
    let (sin, cos) = theta.sin_cos();
    let c2 = cos * cos;
    let (mut term, mut sum) = (1.0, 1.0);
    if df % 2 == 1 {
        if df == 1 {
            return theta * std::f64::consts::FRAC_2_PI;
        }
        for k in 1..=(df - 3) / 2 {
            term *= c2 * (2 * k) as f64 / (2 * k + 1) as f64;
            sum += term;
        }
        std::f64::consts::FRAC_2_PI * (theta + sin * cos * sum)
    } else {
        for k in 1..=(df - 2) / 2 {
            term *= c2 * (2 * k - 1) as f64 / (2 * k) as f64;
            sum += term;
        }
        sin * sum
    }
}

/// The 0.975 quantile of Student's t with `df` >= 1 degrees of freedom (the half-width factor
/// of a two-sided 95% interval), by bisection on theta to machine precision.
pub fn t_quantile_975(df: u64) -> f64 {
    assert!(df >= 1, "Student t needs at least one degree of freedom");
    let (mut lo, mut hi) = (0.0, std::f64::consts::FRAC_PI_2);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_two_sided_mass(mid, df) < 0.95 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (df as f64).sqrt() * (0.5 * (lo + hi)).tan()
}

/// Per-seed differences a(s) - b(s) over the seeds both sides have, with their statistics:
/// a paired comparison, so what a seed shares (initialisation, data order, subset, split)
/// cancels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    pub seeds: Vec<u64>,
    pub differences: Vec<f64>,
    pub stats: Stats,
}

/// Pairs `a` and `b`, lists of (seed, value), by seed.
pub fn paired(a: &[(u64, f64)], b: &[(u64, f64)]) -> Paired {
    let (seeds, differences): (Vec<u64>, Vec<f64>) = a
        .iter()
        .filter_map(|&(s, x)| b.iter().find(|p| p.0 == s).map(|&(_, y)| (s, x - y)))
        .unzip();
    let stats = stats(&differences);
    Paired {
        seeds,
        differences,
        stats,
    }
}

/// A 2-D PCA projection of test embeddings (a seeded, evenly spaced sample).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcaRecord {
    pub points: Vec<(f64, f64)>,
    pub labels: Vec<usize>,
    pub class_names: Vec<String>,
    /// Fraction of the variance of the sample on each axis.
    pub explained: [f64; 2],
}

/// PCA of at most `max_points` rows of `features` (evenly spaced).
pub fn pca_record(
    features: &Tensor,
    labels: &[u32],
    class_names: &[String],
    max_points: usize,
) -> PcaRecord {
    let n = features.size()[0] as usize;
    let m = n.min(max_points.max(2));
    let idx: Vec<i64> = (0..m).map(|i| (i * n / m) as i64).collect();
    let sample = features.index_select(0, &Tensor::from_slice(&idx));
    let (points, explained) = pca_2d(&sample);
    PcaRecord {
        points,
        labels: idx.iter().map(|&i| labels[i as usize] as usize).collect(),
        class_names: class_names.to_vec(),
        explained,
    }
}

/// The data sets read once per (path, format) and cut per run (each seed has its own split).
#[derive(Default)]
pub struct DataCache {
    sets: HashMap<(PathBuf, String), (DataFormat, Dataset, Option<Dataset>)>,
}

impl DataCache {
    /// The evaluation splits of the run `config` (its data set, its seed's split).
    pub fn eval_data(
        &mut self,
        config: &TrainConfig,
        options: &EvalDataOptions,
    ) -> Result<EvalData> {
        let (path, format) =
            eval_source(config, options.data.as_deref(), options.format.as_deref())?;
        let format_name = format.map(|f| f.name().to_string()).unwrap_or_default();
        let mut dc = DataConfig::new(&path);
        dc.format = format;
        dc.val_fraction = config.data.val_fraction;
        dc.seed = config.compute.seed;
        dc.folder = config.folder_options();
        let key = (path.clone(), format_name);
        if !self.sets.contains_key(&key) {
            let data_err = |e: kinfonce_data::DataError| TrainError::Data(e.to_string());
            let format = dc.resolved_format().map_err(data_err)?;
            let official = dc
                .read_official(true, options.report_split == Split::Test)
                .map_err(data_err)?;
            let train = official.train.ok_or_else(|| {
                TrainError::Data(format!("{}: no training images", path.display()))
            })?;
            self.sets
                .insert(key.clone(), (format, train, official.test));
        }
        let (format, train, test) = &self.sets[&key];
        EvalData::from_official(
            &dc,
            *format,
            train,
            test.clone(),
            run_normalization(config, *format),
            options,
        )
    }
}

/// The four cached evaluations of a run.
#[derive(Debug, Clone)]
pub struct RunEvals {
    pub knn: EvalRecord,
    pub linear: EvalRecord,
    pub knn_init: EvalRecord,
    pub linear_init: EvalRecord,
}

/// Settings of a study's evaluations.
#[derive(Debug, Clone, Default)]
pub struct StudyEvalOptions {
    pub features: FeatureOptions,
    pub data: EvalDataOptions,
    pub knn: KnnConfig,
    /// The probe (its seed is replaced by each run's seed).
    pub probe: ProbeConfig,
    /// Write `pca-test.json` for this run.
    pub pca: bool,
    /// Test points in the PCA figure. Default (0) 2000.
    pub pca_points: usize,
}

fn read_record(path: &Path) -> Option<EvalRecord> {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("records serialise");
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, text).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Baselines at initialisation already computed in this study, keyed by everything that
/// determines them (the encoder at initialisation depends on arch, width, stem, seed and the
/// data, not on the loss).
pub type InitCache = HashMap<String, (EvalRecord, EvalRecord)>;

fn init_key(config: &TrainConfig, options: &StudyEvalOptions) -> String {
    format!(
        "{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{:?}|{:?}|{}",
        config.model.arch,
        config.model.width,
        config.model.stem,
        config.compute.seed,
        config.data.val_fraction,
        options.data.data.as_ref().unwrap_or(&config.data.data),
        options.data.format,
        config.compute.precision,
        config.channels_last(),
        options.data.subset_train,
        options.probe,
        options.knn.k
    )
}

/// Evaluates a finished run (k-NN and the fast probe, trained and at initialisation), reading
/// each result from the run folder when it is there and writing it when computed.
/// `progress` receives one-line status messages.
pub fn evaluate_run(
    dir: &Path,
    data: &mut DataCache,
    init_cache: &mut InitCache,
    options: &StudyEvalOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RunEvals> {
    let paths = EVAL_FILES.map(|f| dir.join(f));
    let pca_path = dir.join("pca-test.json");
    let mut cached: Vec<Option<EvalRecord>> = paths.iter().map(|p| read_record(p)).collect();
    let config = read_run_config(dir)?;
    let key = init_key(&config, options);
    if cached[2].is_none() || cached[3].is_none() {
        if let Some((k, l)) = init_cache.get(&key) {
            progress("random-init baseline: same network and seed as an earlier run, reused");
            write_json(&paths[2], k)?;
            write_json(&paths[3], l)?;
            cached[2] = Some(k.clone());
            cached[3] = Some(l.clone());
        }
    }
    // A run kept without weights is evaluated already (see [`run_state`]); it has no PCA.
    let need_pca = options.pca && !pca_path.is_file() && has_weights(dir)?;
    let probe = ProbeConfig {
        seed: config.compute.seed,
        ..options.probe
    };
    let mut eval_data: Option<EvalData> = None;
    for (trained, slots) in [(true, [0usize, 1]), (false, [2, 3])] {
        let missing = cached[slots[0]].is_none() || cached[slots[1]].is_none();
        if !missing && (!trained || !need_pca) {
            continue;
        }
        if eval_data.is_none() {
            eval_data = Some(data.eval_data(&config, &options.data)?);
        }
        let ed = eval_data.as_ref().expect("loaded");
        let source = EncoderSource {
            run_dir: Some(dir.to_path_buf()),
            checkpoint: None,
            init: !trained,
            momentum: false,
        };
        let encoder = FrozenEncoder::load_with_config(
            &source,
            config.clone(),
            &options.features,
            ed.train.height().max(ed.train.width()),
            ed.train.channels(),
        )?;
        let what = if trained {
            "trained"
        } else {
            "at initialisation"
        };
        if !missing {
            // Only the PCA figure is missing: test features suffice.
            progress(&format!("test features ({what}) for the PCA figure"));
            let test =
                encoder.features(&ed.test, &ed.normalization, &options.features, &mut |_| {})?;
            let pca = pca_record(
                &test,
                ed.test.labels(),
                ed.test.class_names(),
                pca_points(options),
            );
            write_json(&pca_path, &pca)?;
            continue;
        }
        progress(&format!(
            "features ({what}) of {} train + {} {} images",
            ed.train.len(),
            ed.test.len(),
            ed.test_split
        ));
        let fs_ = FeatureSet::compute(&encoder, ed, &options.features, &mut |_, _, _| {})?;
        if trained && need_pca {
            let pca = pca_record(
                &fs_.test,
                ed.test.labels(),
                ed.test.class_names(),
                pca_points(options),
            );
            write_json(&pca_path, &pca)?;
        }
        if cached[slots[0]].is_none() {
            let r = knn_record(&encoder, ed, &fs_, &options.knn)?;
            progress(&format!("k-NN ({what}): top-1 {:.2}%", 100.0 * r.top1));
            write_json(&paths[slots[0]], &r)?;
            cached[slots[0]] = Some(r);
        }
        if cached[slots[1]].is_none() {
            let (r, _) = linear_fast_record(&encoder, ed, &fs_, &probe, &mut |_, _| {})?;
            progress(&format!(
                "fast linear probe ({what}): top-1 {:.2}%, top-5 {:.2}%",
                100.0 * r.top1,
                100.0 * r.top5
            ));
            write_json(&paths[slots[1]], &r)?;
            cached[slots[1]] = Some(r);
        }
    }
    let [knn, linear, knn_init, linear_init]: [EvalRecord; 4] = cached
        .into_iter()
        .map(|r| r.expect("every record computed or cached"))
        .collect::<Vec<_>>()
        .try_into()
        .expect("four records");
    init_cache.insert(key, (knn_init.clone(), linear_init.clone()));
    Ok(RunEvals {
        knn,
        linear,
        knn_init,
        linear_init,
    })
}

fn pca_points(options: &StudyEvalOptions) -> usize {
    if options.pca_points == 0 {
        2000
    } else {
        options.pca_points
    }
}

/// One run of a study, evaluated.
#[derive(Debug, Clone)]
pub struct StudyRun {
    pub preset: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub evals: RunEvals,
    pub metrics: RunMetrics,
}

/// What the report states besides the runs.
#[derive(Debug, Clone, Default)]
pub struct StudyInfo {
    /// The command line that reproduces the study.
    pub command: String,
    /// Machine description lines (CPU, threads, device, versions).
    pub machine: Vec<(String, String)>,
    /// Wall time of this invocation, seconds.
    pub wall_s: f64,
    /// Kernels in the order given.
    pub kernels: Vec<String>,
    pub seeds: Vec<u64>,
    /// The kernel every other kernel is compared to, seed by seed.
    pub baseline: String,
    /// The same comparison at a second horizon, and how the gaps move between the two.
    pub horizon_b: Option<Horizon>,
}

pub(crate) fn runs_of<'a>(runs: &'a [StudyRun], preset: &str) -> Vec<&'a StudyRun> {
    runs.iter().filter(|r| r.preset == preset).collect()
}

/// One kernel's results over its seeds: the report's table, the CLI's summary and its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct KernelStats {
    pub seeds: usize,
    pub knn_top1: Stats,
    pub knn_top1_init: Stats,
    pub linear_top1: Stats,
    pub linear_top5: Stats,
    pub linear_top1_init: Stats,
    pub final_loss: Stats,
}

/// The statistics of `preset`'s runs; `None` when it has none.
pub fn kernel_stats(runs: &[StudyRun], preset: &str) -> Option<KernelStats> {
    let of = runs_of(runs, preset);
    let st = |f: &dyn Fn(&StudyRun) -> f64| stats(&of.iter().map(|r| f(r)).collect::<Vec<_>>());
    (!of.is_empty()).then(|| KernelStats {
        seeds: of.len(),
        knn_top1: st(&|r| r.evals.knn.top1),
        knn_top1_init: st(&|r| r.evals.knn_init.top1),
        linear_top1: st(&|r| r.evals.linear.top1),
        linear_top5: st(&|r| r.evals.linear.top5),
        linear_top1_init: st(&|r| r.evals.linear_init.top1),
        final_loss: st(&|r| r.metrics.final_loss),
    })
}

/// The accuracies kernels are compared on: (JSON key, label, the value of a run).
pub type Accuracy = (&'static str, &'static str, fn(&StudyRun) -> f64);

pub const ACCURACIES: [Accuracy; 2] = [
    ("knn_top1", "k-NN top-1", |r| r.evals.knn.top1),
    ("linear_top1", "linear top-1", |r| r.evals.linear.top1),
];

/// (seed, value) of each of `preset`'s runs.
pub fn by_seed(runs: &[StudyRun], preset: &str, value: fn(&StudyRun) -> f64) -> Vec<(u64, f64)> {
    runs_of(runs, preset)
        .into_iter()
        .map(|r| (r.seed, value(r)))
        .collect()
}

/// Per kernel and accuracy key, paired differences over seeds (see [`gaps`], [`gap_changes`]).
pub type Gaps = BTreeMap<String, BTreeMap<String, Paired>>;

/// Each kernel's gap to `baseline` (kernel - baseline, paired by seed) on each accuracy;
/// kernels without runs and the baseline itself are left out.
pub fn gaps(runs: &[StudyRun], kernels: &[String], baseline: &str) -> Gaps {
    kernels
        .iter()
        .filter(|k| *k != baseline && !runs_of(runs, k).is_empty())
        .map(|k| {
            let per_accuracy = ACCURACIES
                .iter()
                .map(|&(key, _, value)| {
                    let gap = paired(&by_seed(runs, k, value), &by_seed(runs, baseline, value));
                    (key.to_string(), gap)
                })
                .collect();
            (k.clone(), per_accuracy)
        })
        .collect()
}

/// How each gap moves from horizon A to horizon B: gap_B(s) - gap_A(s), paired by seed (a
/// difference of differences), for the kernels and accuracies both horizons have.
pub fn gap_changes(a: &Gaps, b: &Gaps) -> Gaps {
    let pairs = |p: &Paired| -> Vec<(u64, f64)> {
        p.seeds
            .iter()
            .copied()
            .zip(p.differences.iter().copied())
            .collect()
    };
    b.iter()
        .filter_map(|(k, by_key)| {
            let in_a = a.get(k)?;
            let changes = by_key
                .iter()
                .filter_map(|(key, gap_b)| {
                    let gap_a = in_a.get(key)?;
                    Some((key.clone(), paired(&pairs(gap_b), &pairs(gap_a))))
                })
                .collect();
            Some((k.clone(), changes))
        })
        .collect()
}

/// A second horizon: the finished, evaluated runs of another study folder (the same kernels
/// and seeds under a longer schedule).
#[derive(Debug, Clone)]
pub struct Horizon {
    pub dir: PathBuf,
    pub runs: Vec<StudyRun>,
}

/// The run (preset, seed) of the study folder `out` as it stands: `None` when absent; an
/// error naming the folder when it is unfinished or lacks an eval record (this reads, never
/// trains or evaluates).
pub fn read_evaluated_run(out: &Path, preset: &str, seed: u64) -> Result<Option<StudyRun>> {
    let dir = run_dir(out, preset, seed);
    match run_state(&dir)? {
        RunState::Absent => return Ok(None),
        RunState::Unfinished { step, total } => {
            return Err(TrainError::Config(format!(
                "{} is not finished (step {step} of {total}); finish it with the `kinfonce \
                 compare` of its study",
                dir.display()
            )))
        }
        RunState::Finished { .. } => {}
    }
    let [knn, linear, knn_init, linear_init] = EVAL_FILES.map(|f| read_record(&dir.join(f)));
    let missing = |r: Option<EvalRecord>, f: &str| {
        r.ok_or_else(|| {
            TrainError::Config(format!(
                "{}: no readable {f}; evaluate it with the `kinfonce compare` of its study",
                dir.display()
            ))
        })
    };
    let evals = RunEvals {
        knn: missing(knn, EVAL_FILES[0])?,
        linear: missing(linear, EVAL_FILES[1])?,
        knn_init: missing(knn_init, EVAL_FILES[2])?,
        linear_init: missing(linear_init, EVAL_FILES[3])?,
    };
    Ok(Some(StudyRun {
        preset: preset.to_string(),
        seed,
        config: read_run_config(&dir)?,
        metrics: read_metrics(&dir)?,
        dir,
        evals,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_closed_forms_and_tables() {
        // df 1 (Cauchy): tan(pi (0.975 - 1/2)); df 2: t = (2p - 1) sqrt(2 / (4 p (1 - p))).
        let cauchy = (std::f64::consts::PI * 0.475).tan();
        let two = 0.95 * (2.0f64 / (4.0 * 0.975 * 0.025)).sqrt();
        assert!((t_quantile_975(1) - cauchy).abs() < 1e-9);
        assert!((t_quantile_975(2) - two).abs() < 1e-12);
        // Printed tables (e.g. NIST/SEMATECH 1.3.6.7.2) to their 3 decimals, and the normal
        // limit 1.959964.
        for (df, t) in [
            (3, 3.182),
            (4, 2.776),
            (9, 2.262),
            (29, 2.045),
            (100, 1.984),
        ] {
            assert!((t_quantile_975(df) - t).abs() < 5e-4, "df {df}");
        }
        assert!((t_quantile_975(100_000) - 1.959964).abs() < 1e-4);
    }

    #[test]
    fn intervals_and_paired_differences_by_hand() {
        // Kernel a and baseline b over seeds; seed 3 has no baseline, so it is left out.
        // Per-seed differences (points): 1, 2, 6 -> mean 3; deviations -2, -1, 3; squares
        // 4 + 1 + 9 = 14; variance 14 / 2 = 7; std sqrt 7 = 2.645751; half-width
        // t_{0.975,2} sqrt(7 / 3) = 4.302653 * 1.527525 = 6.572410 -> [-3.572410, 9.572410].
        let a = [(0, 51.0), (1, 52.0), (2, 56.0), (3, 90.0)];
        let b = [(2, 50.0), (0, 50.0), (1, 50.0)];
        let p = paired(&a, &b);
        assert_eq!(p.seeds, vec![0, 1, 2]);
        assert_eq!(p.differences, vec![1.0, 2.0, 6.0]);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-5;
        assert!(close(p.stats.mean, 3.0) && close(p.stats.std, 2.645751));
        assert!(close(p.stats.lo, -3.572410) && close(p.stats.hi, 9.572410));
        // Below two values there is no interval; the mean and std stay.
        let one = stats(&[0.4]);
        assert_eq!((one.mean, one.std, one.n), (0.4, 0.0, 1));
        assert!(one.lo.is_nan() && one.hi.is_nan());
        assert!(stats(&[]).mean.is_nan());
    }

    #[test]
    fn gap_change_is_a_difference_of_differences_by_hand() {
        let gaps = |d: [f64; 3]| -> Gaps {
            let p = paired(
                &[(0, d[0]), (1, d[1]), (2, d[2])],
                &[(0, 0.0), (1, 0.0), (2, 0.0)],
            );
            BTreeMap::from([(
                "k".to_string(),
                BTreeMap::from([("knn_top1".to_string(), p)]),
            )])
        };
        // Gap at A: 1, 2, 6; at B: 2, 2, 9. Change per seed 1, 0, 3 -> mean 4/3; deviations
        // -1/3, -4/3, 5/3; squares sum 42/9; variance 21/9 = 7/3; half-width
        // 4.302653 * sqrt(7/9) = 4.302653 * 0.881917 = 3.794580.
        let change = &gap_changes(&gaps([1.0, 2.0, 6.0]), &gaps([2.0, 2.0, 9.0]))["k"]["knn_top1"];
        assert_eq!(change.differences, vec![1.0, 0.0, 3.0]);
        let close = |x: f64, y: f64| (x - y).abs() < 1e-5;
        assert!(close(change.stats.mean, 4.0 / 3.0));
        assert!(close(change.stats.hi - change.stats.mean, 3.794580));
    }

    #[test]
    fn schedule_totals_follow_the_trainer() {
        let mut c = TrainConfig::default();
        assert_eq!(total_steps(&c, 7), 70);
        c.optim.epochs = Some(3);
        assert_eq!(total_steps(&c, 7), 21);
        c.max_steps = Some(5);
        assert_eq!(total_steps(&c, 7), 5);
        c.optim.epochs = None;
        assert_eq!(total_steps(&c, 7), 5);
    }
}
