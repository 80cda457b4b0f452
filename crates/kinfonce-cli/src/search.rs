//! `kinfonce search`: kernel hyperparameter search on Optuna, as the official
//! `random_search.py` (random search, ASHA early stopping on the validation monitor).
//!
//! This side checks the arguments and the space file (each mistake one line, before any trial),
//! writes the resolved search to DIR/search.json and runs the Python driver
//! (`search_driver.py`, embedded in the binary) with the project's Python; the driver runs the
//! trials as `kinfonce pretrain` runs in DIR/trials/NNN and writes DIR/trials.json. Then this
//! side evaluates the best trial once on the test split and writes DIR/report.md with its
//! figures, from the trials' own records.

use anyhow::{bail, Context};
use kinfonce_train::metrics::{read_records, Record};
use kinfonce_train::plots::{line_plot, scatter_plot, Series};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const DRIVER: &str = include_str!("search_driver.py");

/// kinfonce's pruner: successive halving per epoch, the grace period a tenth of the run. (The
/// official ASHA's `grace_period=20, max_t=200` count reports, which `ssl_online.py` sends once
/// per validation batch: they are not epochs; docs/search.md.)
const GRACE_FRACTION: f64 = 0.1;
const REDUCTION_FACTOR: u64 = 2;

/// Search kernel hyperparameters: random search with successive-halving early stopping.
///
/// Each trial is a `kinfonce pretrain` run in DIR/trials/NNN with the sampled parameters, the
/// family's preset, --epochs MAX_EPOCHS and the pretrain flags given after `--` (data, subset,
/// width, batch, seed, ...). Its per-epoch validation monitor (--metric) is reported to the
/// pruner, which stops trials that fall behind at each rung (grace period MAX_EPOCHS / 10
/// epochs, reduction factor 2; the official ASHA counts validation batches instead, see
/// docs/search.md). Parameters are drawn by Optuna's random
/// sampler seeded from (--seed, trial number), so a trial retried after a crash gets the same
/// ones. Stopped or killed, the same command continues the study: finished trials are kept,
/// unfinished ones resume from their checkpoints (or start again without one). Several searches
/// (on one machine or many) share a study through --storage. At the end DIR/report.md holds
/// the best configuration, its test-split k-NN score (evaluated once), every trial and figures.
///
/// Space file (TOML): one table per parameter, `[NAME] low = .., high = .., log = true|false`
/// or `[NAME] choices = [..]`. Parameters: lr, tau, gamma, gamma2, lambda, mu, weight_decay,
/// momentum, probe_lr (the `kinfonce pretrain` flags of the same names).
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Search folder: trials/, the study database, trials.json, report.md and figures.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Trials of the study in all (a restarted search runs only the missing ones).
    #[arg(long, value_name = "N")]
    pub trials: usize,
    /// Loss family: origin (one exp kernel, gamma and tau), sum (official `sum`:
    /// lambda L(gamma) + (1 - lambda) L(2)), product (official `product`: Concatenation Sum).
    #[arg(long, default_value = "origin", value_parser = ["origin", "sum", "product"])]
    pub family: String,
    /// Space file (TOML, above). [default: the official space of the family: lr log-uniform
    /// (adam 1e-4..1e-2, lars 1e-2..10, sgd 1e-3..1), tau log-uniform 0.01..1, gamma from
    /// {0.5, 1}, and for sum and product lambda uniform 0..1]
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Optimiser of every trial (sets the default learning-rate range).
    #[arg(long, default_value = "adam", value_parser = ["adam", "lars", "sgd"])]
    pub optimizer: String,
    /// Epochs of a trial that is never stopped (the pruner's grace period is a tenth of it).
    #[arg(long, default_value_t = 200)]
    pub max_epochs: u64,
    /// Per-epoch validation monitor maximised: knn_top1 (k-NN on val) or online_val_top1 (the
    /// online probe on val, the official search's metric).
    #[arg(long, default_value = "knn_top1", value_parser = ["knn_top1", "online_val_top1"])]
    pub metric: String,
    /// Trials run at once on this machine (at most the core count); the cores are split
    /// between them.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub parallel: usize,
    /// Start no trial after this many seconds (running ones finish).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Study storage: a database URL (sqlite:///PATH, postgresql://..., mysql://...) or
    /// journal:PATH (Optuna's journal file). Searches sharing it work on one study.
    /// [default: sqlite:///DIR/study.db]
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// Study name in the storage.
    #[arg(long, default_value = "kinfonce-search")]
    pub study_name: String,
    /// Seed of the parameter draws (each trial's from this seed and its number).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Python with Optuna. [default: $KINFONCE_PYTHON, else the project's .venv beside the
    /// binary, else python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Flags given to every trial's `kinfonce pretrain` (after `--`), e.g. `-- --data
    /// cifar-10-binary.tar.gz --subset 5000 --width 16`.
    #[arg(last = true, value_name = "PRETRAIN FLAGS")]
    pub pretrain: Vec<String>,
}

/// One searched parameter: a float range (uniform or log-uniform) or a list of choices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    pub name: String,
    pub flag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    pub log: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<f64>>,
}

/// The parameters a space may name: `kinfonce pretrain` float flags.
const PARAMS: [&str; 9] = [
    "lr",
    "tau",
    "gamma",
    "gamma2",
    "lambda",
    "mu",
    "weight_decay",
    "momentum",
    "probe_lr",
];

/// Pretrain flags the search sets itself, so a trial's flags cannot name them.
const SEARCH_FLAGS: [&str; 8] = [
    "--out",
    "--resume",
    "--epochs",
    "--max-steps",
    "--threads",
    "--preset",
    "--optimizer",
    "--json",
];

fn range(name: &str, low: f64, high: f64, log: bool) -> Param {
    Param {
        name: name.into(),
        flag: flag_of(name),
        low: Some(low),
        high: Some(high),
        log,
        choices: None,
    }
}

fn flag_of(name: &str) -> String {
    format!("--{}", name.replace('_', "-"))
}

/// The official space (`random_search.py`'s defaults) with the learning-rate range of the
/// optimiser: its loguniform(1e-2, 10) fits LARS; Adam wants 1e-4..1e-2.
pub fn default_space(family: &str, optimizer: &str) -> Vec<Param> {
    let (lr_low, lr_high) = match optimizer {
        "lars" => (1e-2, 10.0),
        "sgd" => (1e-3, 1.0),
        _ => (1e-4, 1e-2),
    };
    let mut space = vec![
        range("lr", lr_low, lr_high, true),
        range("tau", 1e-2, 1.0, true),
        Param {
            name: "gamma".into(),
            flag: "--gamma".into(),
            low: None,
            high: None,
            log: false,
            choices: Some(vec![0.5, 1.0]),
        },
    ];
    if family != "origin" {
        space.push(range("lambda", 0.0, 1.0, false));
    }
    space
}

/// The loss preset of a family (its kernel settings are what the search replaces).
fn preset_of(family: &str) -> &'static str {
    match family {
        "sum" => "sum-of-losses",
        "product" => "concat-sum",
        _ => "laplacian",
    }
}

/// Reads and checks a space file: every mistake is one line naming the file and parameter.
pub fn read_space(path: &Path) -> anyhow::Result<Vec<Param>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the space file {}", path.display()))?;
    parse_space(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn parse_space(text: &str) -> Result<Vec<Param>, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    if table.is_empty() {
        return Err("no parameter to search".into());
    }
    let mut space = Vec::new();
    for (name, value) in &table {
        if !PARAMS.contains(&name.as_str()) {
            return Err(format!(
                "unknown parameter `{name}` (known: {})",
                PARAMS.join(", ")
            ));
        }
        let fields = value
            .as_table()
            .ok_or_else(|| format!("parameter `{name}`: expected a table ([{name}])"))?;
        let number = |key: &str| -> Result<Option<f64>, String> {
            match fields.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .map(Some)
                    .ok_or_else(|| format!("parameter `{name}`: `{key}` must be a number")),
            }
        };
        for key in fields.keys() {
            if !["low", "high", "log", "choices"].contains(&key.as_str()) {
                return Err(format!(
                    "parameter `{name}`: unknown key `{key}` (low, high, log or choices)"
                ));
            }
        }
        if let Some(choices) = fields.get("choices") {
            if fields.len() > 1 {
                return Err(format!(
                    "parameter `{name}`: `choices` goes alone, without low, high or log"
                ));
            }
            let values = choices
                .as_array()
                .ok_or_else(|| format!("parameter `{name}`: `choices` must be a list"))?
                .iter()
                .map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
                .collect::<Option<Vec<f64>>>()
                .ok_or_else(|| format!("parameter `{name}`: choices must be numbers"))?;
            if values.is_empty() {
                return Err(format!("parameter `{name}`: empty list of choices"));
            }
            space.push(Param {
                name: name.clone(),
                flag: flag_of(name),
                low: None,
                high: None,
                log: false,
                choices: Some(values),
            });
            continue;
        }
        let (Some(low), Some(high)) = (number("low")?, number("high")?) else {
            return Err(format!(
                "parameter `{name}`: give `low` and `high` (or `choices`)"
            ));
        };
        let log = match fields.get("log") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| format!("parameter `{name}`: `log` must be true or false"))?,
        };
        if !(low.is_finite() && high.is_finite()) || low >= high {
            return Err(format!(
                "parameter `{name}`: empty range [{low}, {high}] (low must be below high)"
            ));
        }
        if log && low <= 0.0 {
            return Err(format!(
                "parameter `{name}`: a log range must lie above 0, got [{low}, {high}]"
            ));
        }
        space.push(range(name, low, high, log));
    }
    Ok(space)
}

/// The grace period: a tenth of the run in epochs (at least 1).
pub fn grace_epochs(max_epochs: u64) -> u64 {
    ((max_epochs as f64 * GRACE_FRACTION).round() as u64).max(1)
}

/// The Python that runs the driver: --python, $KINFONCE_PYTHON, the project's `.venv` in a
/// folder above the binary, else `python3`.
fn python(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("KINFONCE_PYTHON") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let venv = dir.join(".venv/bin/python");
            if venv.exists() {
                return venv;
            }
        }
    }
    PathBuf::from("python3")
}

/// What makes two searches the same study: a restarted search must match it.
#[derive(Serialize)]
struct Trajectory<'a> {
    family: &'a str,
    optimizer: &'a str,
    space: &'a [Param],
    max_epochs: u64,
    grace_epochs: u64,
    reduction_factor: u64,
    metric: &'a str,
    seed: u64,
    pretrain_args: &'a [String],
}

pub fn run(a: SearchArgs) -> anyhow::Result<()> {
    let space = match &a.space {
        Some(path) => read_space(path)?,
        None => default_space(&a.family, &a.optimizer),
    };
    if a.trials == 0 {
        bail!("--trials must be at least 1");
    }
    if a.max_epochs == 0 {
        bail!("--max-epochs must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.parallel == 0 || a.parallel > cores {
        bail!(
            "--parallel {} must be between 1 and this machine's {cores} cores",
            a.parallel
        );
    }
    if let Some(t) = a.timeout {
        if t.is_nan() || t <= 0.0 {
            bail!("--timeout must be a positive number of seconds, got {t}");
        }
    }
    for arg in &a.pretrain {
        let flag = arg.split('=').next().unwrap_or_default();
        if SEARCH_FLAGS.contains(&flag) {
            bail!(
                "pretrain flag {flag} after `--`: the search sets it (see kinfonce search --help)"
            );
        }
        if let Some(p) = space.iter().find(|p| p.flag == flag) {
            bail!(
                "pretrain flag {flag} after `--`: `{}` is a searched parameter",
                p.name
            );
        }
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create the search folder {}", a.out.display()))?;
    let out = a
        .out
        .canonicalize()
        .with_context(|| format!("cannot open the search folder {}", a.out.display()))?;
    let storage = a
        .storage
        .clone()
        .unwrap_or_else(|| format!("sqlite:///{}", out.join("study.db").display()));
    let grace = grace_epochs(a.max_epochs);
    let mut pretrain_args = vec![
        "--preset".to_string(),
        preset_of(&a.family).to_string(),
        "--optimizer".to_string(),
        a.optimizer.clone(),
    ];
    pretrain_args.extend(a.pretrain.iter().cloned());
    let trajectory = Trajectory {
        family: &a.family,
        optimizer: &a.optimizer,
        space: &space,
        max_epochs: a.max_epochs,
        grace_epochs: grace,
        reduction_factor: REDUCTION_FACTOR,
        metric: &a.metric,
        seed: a.seed,
        pretrain_args: &a.pretrain,
    };
    let binary = std::env::current_exe().context("cannot locate the kinfonce binary")?;
    let spec = serde_json::json!({
        "binary": binary,
        "out": out,
        "storage": storage,
        "study_name": a.study_name,
        "trials": a.trials,
        "parallel": a.parallel,
        "threads_per_trial": (cores / a.parallel).max(1),
        "timeout_s": a.timeout,
        "max_epochs": a.max_epochs,
        "grace_epochs": grace,
        "reduction_factor": REDUCTION_FACTOR,
        "metric": a.metric,
        "seed": a.seed,
        "space": space,
        "pretrain_args": pretrain_args,
        "trajectory": trajectory,
    });
    let spec_path = out.join("search.json");
    std::fs::write(&spec_path, serde_json::to_string_pretty(&spec)? + "\n")
        .with_context(|| format!("cannot write {}", spec_path.display()))?;

    let python = python(a.python.as_deref());
    eprintln!(
        "search: {} trials of `{}` ({}), {} at once, grace {grace} of {} epochs, study in {storage}",
        a.trials,
        a.family,
        space
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        a.parallel,
        a.max_epochs
    );
    let mut driver = Command::new(&python);
    driver.arg("-c").arg(DRIVER).arg(&spec_path);
    // Killed, this command takes the driver with it: SIGTERM makes the driver stop its trials
    // after their current step, with a checkpoint, for the next search to resume.
    dies_with_this_process(&mut driver);
    let status = driver.status().with_context(|| {
        format!(
            "cannot run {} (give the Python with Optuna by --python or $KINFONCE_PYTHON)",
            python.display()
        )
    })?;
    match status.code() {
        Some(0) => {}
        // The driver already said why on one line.
        Some(code) => std::process::exit(code),
        None => bail!("the search driver ({}) was killed", python.display()),
    }
    write_report(&out, &a, &space)
}

/// The child gets SIGTERM when this process dies (Linux's parent-death signal), so a killed
/// search leaves nothing running.
fn dies_with_this_process(child: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        child.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// One row of the driver's DIR/trials.json.
#[derive(Debug, Clone, Deserialize)]
pub struct TrialRow {
    pub number: u64,
    pub state: String,
    pub params: BTreeMap<String, f64>,
    pub value: Option<f64>,
    pub intermediate: BTreeMap<String, f64>,
    pub folder: Option<String>,
}

#[derive(Deserialize)]
struct TrialsFile {
    trials: Vec<TrialRow>,
}

/// A trial's score: its final monitor when complete, its last reported one when stopped.
fn score(t: &TrialRow) -> Option<f64> {
    t.value.or_else(|| last_intermediate(t).map(|(_, v)| v))
}

fn last_intermediate(t: &TrialRow) -> Option<(u64, f64)> {
    t.intermediate
        .iter()
        .filter_map(|(k, v)| Some((k.parse::<u64>().ok()?, *v)))
        .max_by_key(|(k, _)| *k)
}

/// The monitor per epoch of a trial, from its own metrics.jsonl.
fn monitor_curve(folder: &Path, metric: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let records = read_records(&folder.join("metrics.jsonl"))?;
    Ok(records
        .iter()
        .filter_map(|r| match r {
            Record::Epoch(e) => {
                let v = if metric == "online_val_top1" {
                    e.online_val_top1
                } else {
                    e.knn_top1
                };
                v.map(|v| (e.epoch as f64, v))
            }
            _ => None,
        })
        .collect())
}

/// The best trial's test-split k-NN result, evaluated once and kept in DIR/best-test.json.
fn test_score(out: &Path, best: &TrialRow, threads: usize) -> anyhow::Result<Value> {
    let cache = out.join("best-test.json");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        let v: Value = serde_json::from_str(&text)?;
        if v["trial"].as_u64() == Some(best.number) {
            return Ok(v["result"].clone());
        }
    }
    let folder = out.join(best.folder.as_deref().unwrap_or_default());
    eprintln!(
        "search: evaluating the best trial {} on the test split",
        best.number
    );
    let mut eval = Command::new(std::env::current_exe()?);
    eval.args(["eval", "knn", "--json", "--threads", &threads.to_string()])
        .arg("--run")
        .arg(&folder)
        .stderr(std::process::Stdio::inherit());
    dies_with_this_process(&mut eval);
    let output = eval.output().context("cannot run kinfonce eval knn")?;
    if !output.status.success() {
        bail!(
            "kinfonce eval knn --run {} failed (exit {:?})",
            folder.display(),
            output.status.code()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .context("kinfonce eval knn printed no JSON")?;
    let cached = serde_json::json!({"trial": best.number, "result": result});
    std::fs::write(&cache, serde_json::to_string_pretty(&cached)? + "\n")?;
    Ok(result)
}

fn fmt_param(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// DIR/report.md and its figures, from trials.json and the trials' own metrics.
fn write_report(out: &Path, a: &SearchArgs, space: &[Param]) -> anyhow::Result<()> {
    let path = out.join("trials.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let trials: TrialsFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a trials file", path.display()))?;
    let trials = trials.trials;
    let best = trials
        .iter()
        .filter(|t| t.state == "complete" && t.value.is_some())
        .max_by(|x, y| {
            x.value
                .partial_cmp(&y.value)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut md = String::new();
    let count = |s: &str| trials.iter().filter(|t| t.state == s).count();
    writeln!(md, "# Search: the `{}` family\n", a.family)?;
    writeln!(
        md,
        "{} trials ({} complete, {} stopped early, {} failed, {} running), random search \
         (Optuna's RandomSampler, seed {} and the trial number), successive halving on \
         `{}` on the validation split (grace {} of {} epochs, reduction factor {}), optimiser \
         {}, loss preset `{}`.\n",
        trials.len(),
        count("complete"),
        count("pruned"),
        count("fail"),
        count("running"),
        a.seed,
        a.metric,
        grace_epochs(a.max_epochs),
        a.max_epochs,
        REDUCTION_FACTOR,
        a.optimizer,
        preset_of(&a.family),
    )?;
    if !a.pretrain.is_empty() {
        writeln!(
            md,
            "Pretrain flags of every trial: `{}`\n",
            a.pretrain.join(" ")
        )?;
    }
    writeln!(md, "## Best configuration\n")?;
    match best {
        Some(b) if b.folder.is_none() => writeln!(
            md,
            "Trial {:03} (`{}` {:.4}) ran in another search's folder: its test score is in that \
             search's report.\n",
            b.number,
            a.metric,
            b.value.unwrap_or(f64::NAN)
        )?,
        Some(b) => {
            let result = test_score(out, b, cores)?;
            let params: Vec<String> = b
                .params
                .iter()
                .map(|(k, v)| format!("{k} = {}", fmt_param(*v)))
                .collect();
            writeln!(
                md,
                "Trial {:03}: {}; `{}` {:.4} on the validation split after {} epochs.\n",
                b.number,
                params.join(", "),
                a.metric,
                b.value.unwrap_or(f64::NAN),
                a.max_epochs
            )?;
            let top1 = result["top1"]
                .as_f64()
                .context("kinfonce eval knn's result has no top1")?;
            writeln!(
                md,
                "Test split ({} images), weighted k-NN (`kinfonce eval knn`, evaluated once): \
                 top-1 {top1:.4}.\n",
                result["n_test"]
            )?;
        }
        None => writeln!(md, "No trial completed.\n")?,
    }

    writeln!(md, "## Trials\n")?;
    let names: Vec<&str> = space.iter().map(|p| p.name.as_str()).collect();
    writeln!(
        md,
        "| trial | state | epochs | {} | {} |",
        names.join(" | "),
        a.metric
    )?;
    writeln!(md, "|---|---|---|{}---|", "---|".repeat(names.len()))?;
    let mut ladder = Vec::new();
    for t in &trials {
        let epochs = last_intermediate(t).map_or(0, |(e, _)| e);
        let values: Vec<String> = names
            .iter()
            .map(|n| t.params.get(*n).map_or("".into(), |v| fmt_param(*v)))
            .collect();
        writeln!(
            md,
            "| {:03} | {} | {} | {} | {} |",
            t.number,
            t.state,
            epochs,
            values.join(" | "),
            score(t).map_or("".into(), |s| format!("{s:.4}"))
        )?;
        if let Some(folder) = &t.folder {
            let curve = monitor_curve(&out.join(folder), &a.metric).unwrap_or_default();
            // A stopped trial ends where the pruner stopped it (the run may log a little more).
            let curve = curve
                .into_iter()
                .filter(|(e, _)| *e <= epochs as f64)
                .collect();
            ladder.push(Series {
                name: format!("{:03} {}", t.number, t.state),
                points: curve,
            });
        }
    }
    writeln!(
        md,
        "\nScore: the final `{}` of a complete trial, the last one reported of a stopped trial.\n",
        a.metric
    )?;

    writeln!(md, "## Figures\n")?;
    let svg = line_plot(
        &ladder,
        "The pruning ladder: each trial's validation monitor per epoch",
        "epoch",
        &a.metric,
    );
    std::fs::write(out.join("ladder.svg"), svg)?;
    writeln!(md, "![the pruning ladder](ladder.svg)\n")?;
    let states = ["complete".to_string(), "stopped early".to_string()];
    for p in space {
        let mut points = Vec::new();
        let mut classes = Vec::new();
        for t in &trials {
            if let (Some(v), Some(s)) = (t.params.get(&p.name), score(t)) {
                points.push((if p.log { v.log10() } else { *v }, s));
                classes.push(usize::from(t.state != "complete"));
            }
        }
        let x_label = if p.log {
            format!("log10 {}", p.name)
        } else {
            p.name.clone()
        };
        let svg = scatter_plot(
            &points,
            &classes,
            &states,
            &format!("Score against {}", p.name),
            &x_label,
            &a.metric,
        );
        let file = format!("score-vs-{}.svg", p.name);
        std::fs::write(out.join(&file), svg)?;
        writeln!(md, "![score against {}]({file})\n", p.name)?;
    }
    std::fs::write(out.join("report.md"), md)?;
    eprintln!("search: report in {}", out.join("report.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_space_file_names_each_mistake() {
        let err = |text: &str| parse_space(text).unwrap_err();
        assert!(err("[lrr]\nlow = 1\nhigh = 2").contains("unknown parameter `lrr`"));
        assert!(err("[tau]\nlow = 0.5\nhigh = 0.5").contains("`tau`: empty range"));
        assert!(err("[tau]\nlow = 0.0\nhigh = 1.0\nlog = true").contains("above 0"));
        assert!(err("[gamma]\nchoices = []").contains("empty list"));
        let space =
            parse_space("[gamma]\nchoices = [0.5, 1]\n[lr]\nlow = 1e-4\nhigh = 1e-2\nlog = true")
                .unwrap();
        assert_eq!(space.len(), 2);
        assert_eq!(space[1].flag, "--lr");
    }

    #[test]
    fn the_grace_period_is_a_tenth_of_the_run() {
        assert_eq!(grace_epochs(200), 20);
        assert_eq!(grace_epochs(40), 4);
        assert_eq!(grace_epochs(4), 1);
    }
}
