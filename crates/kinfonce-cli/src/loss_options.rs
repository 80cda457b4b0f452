//! The loss options of `kinfonce pretrain` (`--gamma`, `--gamma2`, `--tau`, `--p`,
//! `--lambda`): not settings of their own, they edit the preset's loss.

use anyhow::bail;

/// The option keys, as flags and config-file keys.
const LOSS_KEYS: [&str; 5] = ["gamma", "gamma2", "tau", "p", "lambda"];

/// Moves the loss options (gamma, tau, ...: not settings of their own, they edit the loss) out
/// of `table`.
pub fn take_loss_options(table: &mut toml::Table) -> toml::Table {
    LOSS_KEYS
        .iter()
        .filter_map(|k| table.remove(*k).map(|v| (k.to_string(), v)))
        .collect()
}

/// Applies gamma / gamma2 / tau / p / lambda to the preset's loss.
pub fn apply_loss_options(
    spec: &mut kinfonce_loss::LossSpec,
    opts: &toml::Table,
) -> anyhow::Result<()> {
    use kinfonce_loss::{Kernel, LossSpec, Norm};
    let f = |k: &str| -> anyhow::Result<Option<f64>> {
        match opts.get(k) {
            None => Ok(None),
            Some(toml::Value::Float(v)) => Ok(Some(*v)),
            Some(toml::Value::Integer(v)) => Ok(Some(*v as f64)),
            Some(v) => bail!("`{k}` = {v}: expected a number"),
        }
    };
    let p = match opts.get("p") {
        None => None,
        Some(toml::Value::String(s)) => Some(Norm::parse(s)?),
        Some(v) => Some(Norm::parse(&v.to_string())?),
    };
    let (gamma, gamma2, tau, lambda) = (f("gamma")?, f("gamma2")?, f("tau")?, f("lambda")?);
    if let Some(l) = lambda.filter(|l| !(0.0..=1.0).contains(l)) {
        bail!("--lambda {l}: expected a weight in [0, 1] (the first loss's share)");
    }
    let set = |k: &mut Kernel, g: Option<f64>, what: &str| -> anyhow::Result<()> {
        match k {
            Kernel::Exp(e) => {
                if let Some(g) = g {
                    e.gamma = g;
                }
                if let Some(t) = tau {
                    e.tau = t;
                }
                if let Some(p) = p {
                    e.p = p;
                }
                Ok(())
            }
            Kernel::Mixture { components: parts } => {
                if g.is_some() || tau.is_some() {
                    bail!("--gamma/--tau are ambiguous for the {what} mixture (two kernels); give the whole loss with --loss-json")
                }
                if let Some(p) = p {
                    for c in parts.iter_mut() {
                        c.kernel.p = p;
                    }
                }
                Ok(())
            }
            Kernel::ArcCos { tau: t, .. } => {
                if let Some(v) = tau {
                    *t = v;
                }
                Ok(())
            }
        }
    };
    match spec {
        LossSpec::InfoNce { kernel } => {
            if gamma2.is_some() || lambda.is_some() {
                bail!("--gamma2 and --lambda apply to sum-of-losses and concat-sum only");
            }
            set(kernel, gamma, "simple-sum")?;
        }
        LossSpec::Sum { parts } => {
            if let Some(l) = lambda {
                if parts.len() != 2 {
                    bail!("--lambda needs a sum of exactly two losses");
                }
                parts[0].0 = l;
                parts[1].0 = 1.0 - l;
            }
            let n = parts.len();
            for (i, (_, k)) in parts.iter_mut().enumerate() {
                let g = if i == 0 {
                    gamma
                } else if i + 1 == n {
                    gamma2
                } else {
                    None
                };
                set(k, g, "sum")?;
            }
        }
        LossSpec::Concat {
            lambda: l,
            first,
            second,
            ..
        } => {
            if let Some(v) = lambda {
                *l = v;
            }
            set(first, gamma, "concat")?;
            set(second, gamma2, "concat")?;
        }
        LossSpec::Spectral => {
            if [gamma, gamma2, tau, lambda].iter().any(Option::is_some) || p.is_some() {
                bail!("the spectral loss has no kernel options");
            }
        }
    }
    Ok(())
}
