//! `kinfonce bench loss`: the fused loss against the PyTorch reference, side by side.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use kinfonce_loss::{simclr, Kernel, LossSpec, MatRef};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Forward + backward of the SimCLR-paired exponential-kernel loss on random unit vectors:
    /// median time and peak extra memory, with the PyTorch reference in the same invocation.
    #[command(after_help = "\
Peak extra memory is measured as the reference script does: the process's peak resident
memory (getrusage) minus its resident memory just before the first call.
Run on a quiet machine: ratios taken while other work loads the cores are noise.

Example (the issue's acceptance figures):
  kinfonce bench loss --batch 4096 --dim 128 --reference .venv/bin/python --json")]
    Loss(BenchLossArgs),
    /// Every reader (CIFAR batches and archives, MNIST IDX, JPEG and PNG folders, edge lists,
    /// loss cases, checkpoints, config.toml) fed mutated bytes of small valid inputs: none may
    /// panic or take over 2 s, and every refusal must name the file.
    #[command(after_help = "\
Example (the figures in docs/results/fuzz.md):
  kinfonce bench fuzz --count 2000 --cifar cifar-10-batches-bin/test_batch.bin")]
    Fuzz(crate::fuzz::FuzzArgs),
}

#[derive(clap::Args)]
pub struct BenchLossArgs {
    /// Positive pairs B (the loss sees 2B anchors).
    #[arg(long)]
    batch: usize,
    /// Embedding width d.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Kernel exponent gamma in (0, 2].
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    /// Temperature tau > 0.
    #[arg(long, default_value_t = 0.2)]
    tau: f64,
    /// Worker threads for our loss and for the reference.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed repetitions after one warm-up (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Precision of our loss.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f64"])]
    dtype: String,
    /// Python with torch==2.11.0 to run the reference with (e.g. .venv/bin/python).
    #[arg(long, value_name = "PYTHON")]
    reference: Option<PathBuf>,
    /// The reference script.
    #[arg(long, default_value = "bench/reference/torch_kernel_infonce.py")]
    reference_script: PathBuf,
    /// Print one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Loss(args) => bench_loss(args),
        BenchCommand::Fuzz(args) => crate::fuzz::run(args),
    }
}

/// Resident memory now, in MiB.
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc_sysconf_pagesize() };
    pages * page / (1024.0 * 1024.0)
}

/// Peak resident memory of the process so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

unsafe fn libc_sysconf_pagesize() -> f64 {
    extern "C" {
        fn sysconf(name: i32) -> i64;
    }
    const SC_PAGESIZE: i32 = 30;
    sysconf(SC_PAGESIZE) as f64
}

fn unit_rows(rng: &mut rand_chacha::ChaCha8Rng, rows: usize, dim: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..rows * dim)
        .map(|_| StandardNormal.sample(rng))
        .collect();
    for row in v.chunks_mut(dim) {
        let n = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        row.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn time_ours<T: kinfonce_loss::Real>(
    args: &BenchLossArgs,
    z1: &[f64],
    z2: &[f64],
) -> anyhow::Result<(f64, f64, f64)> {
    let spec = LossSpec::kernel(Kernel::exp(args.gamma, args.tau));
    let conv = |v: &[f64]| v.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>();
    let (a, b) = (conv(z1), conv(z2));
    let (va, vb) = (
        MatRef::new(&a, args.batch, args.dim)?,
        MatRef::new(&b, args.batch, args.dim)?,
    );
    let before = rss_mib();
    let mut times = Vec::new();
    let mut loss = 0.0;
    for rep in 0..=args.reps {
        let start = Instant::now();
        let out = simclr(&spec, va, vb)?;
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        loss = out.loss;
        drop(out);
        if rep > 0 {
            times.push(elapsed);
        }
    }
    Ok((median(times), (peak_rss_mib() - before).max(0.0), loss))
}

fn bench_loss(args: BenchLossArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.dim == 0 || args.reps == 0 || args.threads == 0 {
        bail!("--batch, --dim, --reps and --threads must be at least 1");
    }
    Kernel::exp(args.gamma, args.tau).validate()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let z1 = unit_rows(&mut rng, args.batch, args.dim);
    let z2 = unit_rows(&mut rng, args.batch, args.dim);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("cannot start the thread pool")?;
    let (ms, peak, loss) = pool.install(|| match args.dtype.as_str() {
        "f64" => time_ours::<f64>(&args, &z1, &z2),
        _ => time_ours::<f32>(&args, &z1, &z2),
    })?;
    eprintln!(
        "kinfonce fused  B={} d={} gamma={} tau={} {} threads={}: {ms:.2} ms (median of {}), peak extra {peak:.1} MiB, loss {loss:.6}",
        args.batch, args.dim, args.gamma, args.tau, args.dtype, args.threads, args.reps
    );
    let mut report = serde_json::json!({
        "impl": "kinfonce-fused",
        "batch": args.batch, "dim": args.dim, "gamma": args.gamma, "tau": args.tau,
        "threads": args.threads, "dtype": args.dtype, "reps": args.reps,
        "fwd_bwd_ms_median": ms, "peak_extra_mib": peak, "loss": loss,
    });
    if let Some(python) = &args.reference {
        if !args.reference_script.exists() {
            bail!(
                "reference script {} not found (pass --reference-script PATH)",
                args.reference_script.display()
            );
        }
        let output = Command::new(python)
            .arg(&args.reference_script)
            .args([
                "--batch",
                &args.batch.to_string(),
                "--dim",
                &args.dim.to_string(),
            ])
            .args([
                "--gamma",
                &args.gamma.to_string(),
                "--tau",
                &args.tau.to_string(),
            ])
            .args([
                "--threads",
                &args.threads.to_string(),
                "--reps",
                &args.reps.to_string(),
            ])
            .args([
                "--dtype",
                if args.dtype == "f64" {
                    "float64"
                } else {
                    "float32"
                },
            ])
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .output()
            .with_context(|| format!("cannot run the reference with {}", python.display()))?;
        if !output.status.success() {
            bail!(
                "the reference {} failed: {}",
                args.reference_script.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let reference: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("the reference printed no JSON line: {stdout}"))?;
        let ref_ms = reference["fwd_bwd_ms_median"].as_f64().unwrap_or(f64::NAN);
        let ref_peak = reference["peak_extra_mib"].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "pytorch reference (official formula): {ref_ms:.2} ms, peak extra {ref_peak:.1} MiB, loss {}",
            reference["loss"]
        );
        eprintln!(
            "speedup {:.2}x, memory ratio {:.1}x less",
            ref_ms / ms,
            ref_peak / peak.max(0.1)
        );
        report["reference_ms_median"] = ref_ms.into();
        report["reference_peak_extra_mib"] = ref_peak.into();
        report["reference_loss"] = reference["loss"].clone();
        report["speedup"] = (ref_ms / ms).into();
    }
    if args.json {
        println!("{report}");
    } else {
        println!(
            "fwd_bwd_ms_median {ms:.2}  peak_extra_mib {peak:.1}{}",
            report
                .get("speedup")
                .map(|s| format!("  speedup {:.2}x", s.as_f64().unwrap_or(f64::NAN)))
                .unwrap_or_default()
        );
    }
    Ok(())
}
