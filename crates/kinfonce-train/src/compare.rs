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
use std::collections::HashMap;
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
    /// Its newest checkpoint is at the schedule's last step.
    Finished { step: u64 },
}

/// The number of steps the schedule of `config` runs, given its steps per epoch.
pub fn total_steps(config: &TrainConfig, steps_per_epoch: u64) -> u64 {
    config.schedule_steps(steps_per_epoch).1
}

/// The state of the run in `dir`, from its config.toml (`provenance.steps_per_epoch`) and the
/// newest checkpoint's `state.json`.
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
    let step = match checkpoint::latest(&dir.join("checkpoints"))? {
        Some(ck) => checkpoint::load_state(&ck)?.step,
        None => 0,
    };
    Ok(if step >= total && step > 0 {
        RunState::Finished { step }
    } else {
        RunState::Unfinished { step, total }
    })
}

/// What the metrics of a run folder say.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunMetrics {
    /// Loss of the last step line.
    pub final_loss: f64,
    /// Completed epochs (epoch lines without `partial_epoch`).
    pub epochs: u64,
    /// Steps of the newest checkpoint.
    pub steps: u64,
    /// Seconds of training (the newest checkpoint's `elapsed_s`, monitors included).
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
        ..Default::default()
    };
    for record in read_records(&dir.join("metrics.jsonl"))? {
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

/// Mean and sample standard deviation (n - 1; 0 for a single value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

pub fn stats(xs: &[f64]) -> Stats {
    let n = xs.len();
    if n == 0 {
        return Stats {
            mean: f64::NAN,
            std: f64::NAN,
            n,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Stats { mean, std, n }
}

/// The verdict of the spread rule: the difference of means counts as larger than the seed
/// noise when |mean_a - mean_b| > std_a + std_b (sample standard deviations over seeds).
pub fn exceeds_spread(a: &Stats, b: &Stats) -> Option<bool> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    Some((a.mean - b.mean).abs() > a.std + b.std)
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
    let paths = [
        dir.join("eval-knn.json"),
        dir.join("eval-linear.json"),
        dir.join("eval-knn-init.json"),
        dir.join("eval-linear-init.json"),
    ];
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
    let need_pca = options.pca && !pca_path.is_file();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_spread_rule_by_hand() {
        let a = stats(&[0.5, 0.6, 0.7]);
        assert!((a.mean - 0.6).abs() < 1e-12);
        assert!((a.std - 0.1).abs() < 1e-12);
        let b = stats(&[0.3, 0.3, 0.3]);
        // |0.6 - 0.3| = 0.3 > 0.1 + 0: exceeds.
        assert_eq!(exceeds_spread(&a, &b), Some(true));
        let c = stats(&[0.55, 0.65]);
        assert_eq!(exceeds_spread(&a, &c), Some(false));
        assert_eq!(exceeds_spread(&a, &stats(&[0.1])), None);
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
