//! `kinfonce loss --cases FILE.json`: losses and gradients for cases in the golden format.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kinfonce_loss::cases::{parse_cases, CaseResult};

#[derive(clap::Args)]
#[command(after_help = "\
Case format: {\"cases\": [{\"name\", \"kind\", \"params\", \"inputs\"}]} (docs/loss-cases.md).
kinds: exp (gamma, tau, p = 1 | 2 | \"inf\"), loss_sum (gamma, gamma2, lambda, tau),
loss_concat (gamma, gamma2, lambda, tau, split), kernel_mixture (components [[w, gamma, tau]]),
acos (order, tau), spectral, moco (gamma, tau; inputs q, k, queue), clip (gamma, tau).
Kernel convention: K = exp(-||x - y||_p^gamma / tau); gamma 2 on unit vectors = NT-Xent at tau / 2.

Engines: `fused` is the exact blocked CPU kernel (every kind); `tensor` is the libtorch form
the trainer uses on GPUs (SimCLR- and MoCo-pairing kinds except acos; the others are listed under
\"skipped\"), on --device cpu, cuda or cuda:N.

Examples:
  kinfonce loss --cases cases.json --dtype f32
  kinfonce loss --cases cases.json --dtype f32 --engine tensor --device cuda")]
pub struct LossArgs {
    /// JSON file of cases (other fields such as expected values are ignored).
    #[arg(long, value_name = "FILE.json")]
    cases: PathBuf,
    /// Precision of the computation.
    #[arg(long, default_value = "f64", value_parser = ["f32", "f64"])]
    dtype: String,
    /// Which implementation computes the losses.
    #[arg(long, default_value = "fused", value_parser = ["fused", "tensor"])]
    engine: String,
    /// Device of the tensor engine.
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda|cuda:N")]
    device: String,
}

/// Every case of the file `path`, evaluated in `dtype` (`f32` or `f64`).
pub fn evaluate_file(path: &Path, dtype: &str) -> anyhow::Result<Vec<CaseResult>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the case file {}", path.display()))?;
    let cases = parse_cases(&text).with_context(|| format!("in {}", path.display()))?;
    cases
        .iter()
        .map(|case| match dtype {
            "f32" => case.run::<f32>(),
            _ => case.run::<f64>(),
        })
        .collect::<Result<Vec<CaseResult>, _>>()
        .with_context(|| format!("in {}", path.display()))
}

/// Prints `{"cases":[{"name","loss","grads"}]}` on one line; `grads` nests like the inputs.
/// The tensor engine adds `"skipped":[{"name","why"}]` for the cases it does not cover.
pub fn run(args: LossArgs) -> anyhow::Result<()> {
    if args.engine == "tensor" {
        return run_tensor(&args);
    }
    if args.device != "cpu" {
        anyhow::bail!(
            "--device {}: the fused engine runs on the CPU; add --engine tensor",
            args.device
        );
    }
    let results = evaluate_file(&args.cases, &args.dtype)?;
    println!("{}", serde_json::json!({ "cases": results }));
    Ok(())
}

#[cfg(feature = "torch")]
fn run_tensor(args: &LossArgs) -> anyhow::Result<()> {
    use kinfonce_train::loss_tensor::evaluate_case;
    use kinfonce_train::tch::Kind;
    let path = &args.cases;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the case file {}", path.display()))?;
    let cases = parse_cases(&text).with_context(|| format!("in {}", path.display()))?;
    let device = kinfonce_train::trainer::parse_device(&args.device)?;
    let kind = if args.dtype == "f32" {
        Kind::Float
    } else {
        Kind::Double
    };
    let (mut results, mut skipped) = (Vec::new(), Vec::new());
    for case in &cases {
        match evaluate_case(case, kind, device).with_context(|| format!("in {}", path.display()))? {
            Ok(result) => results.push(result),
            Err(why) => skipped.push(serde_json::json!({ "name": case.name, "why": why })),
        }
    }
    println!(
        "{}",
        serde_json::json!({ "cases": results, "skipped": skipped })
    );
    Ok(())
}

#[cfg(not(feature = "torch"))]
fn run_tensor(_: &LossArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "--engine tensor needs libtorch: this kinfonce is built without the torch feature"
    )
}
