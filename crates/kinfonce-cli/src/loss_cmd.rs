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

Example:
  kinfonce loss --cases cases.json --dtype f32")]
pub struct LossArgs {
    /// JSON file of cases (other fields such as expected values are ignored).
    #[arg(long, value_name = "FILE.json")]
    cases: PathBuf,
    /// Precision of the computation.
    #[arg(long, default_value = "f64", value_parser = ["f32", "f64"])]
    dtype: String,
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
pub fn run(args: LossArgs) -> anyhow::Result<()> {
    let results = evaluate_file(&args.cases, &args.dtype)?;
    println!("{}", serde_json::json!({ "cases": results }));
    Ok(())
}
