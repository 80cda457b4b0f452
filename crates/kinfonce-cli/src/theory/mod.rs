//! `kinfonce theory ...`: the theory lab. Each experiment prints its closed-form predictions
//! next to the measured values (and with `--json` one JSON object on the last stdout line:
//! `{"experiment", "params", "claims": [{"name", "predicted", "measured", "tolerance", "holds"}]}`),
//! and writes SVG + PNG plots with `--out DIR`. The command fails (exit 1) if a claim does not hold.

mod args;
mod knn;

pub use args::{
    AllArgs, BatchSizeArgs, ClipArgs, CrossEntropyArgs, KernelsArgs, KnnRealArgs, MrfArgs,
    PlantedArgs, ScaleArgs, SpectralAgreementArgs,
};

use crate::overlay;
use clap::{Args, Subcommand};
use kinfonce_graph::experiments::{
    all, batch_size, clip, cross_entropy, kernels, knn_real, mrf, planted, scale,
    spectral_agreement,
};
use kinfonce_graph::report::Report;
use knn::{load_mnist_points, missing_data};
use serde::{de::DeserializeOwned, Serialize};

/// The theory lab: InfoNCE is spectral clustering, shown numerically.
///
/// Kernel convention: K(x, y) = exp(-||x - y||^gamma / tau), gamma = 2 unless stated; with
/// gamma = 2, -log K = d^2 / tau, the trace form's factor is 2 / tau and planted block centres
/// sit at squared distance tau ln(p/q). Tolerances: exact identities 1e-9, Monte Carlo 3
/// standard errors, optimisation 1e-3.
#[derive(Args, Debug)]
pub struct TheoryArgs {
    #[command(subcommand)]
    pub experiment: TheoryCommand,
}

#[derive(Subcommand, Debug)]
pub enum TheoryCommand {
    /// Row factorisation of the MRF P(W; pi) by enumerating all unit-out-degree subgraphs.
    Mrf(MrfArgs),
    /// H(pi, K_Z) three ways (direct, trace form, Monte Carlo) and sampled InfoNCE = H.
    CrossEntropy(CrossEntropyArgs),
    /// Free-embedding optimum on a planted partition: blocks collapse, centres at squared
    /// distance (tau ln(p/q))^(2/gamma), H reaches sum_i Entropy(P_i). Needs dim >= blocks - 1.
    Planted(PlantedArgs),
    /// SBM sweep over q/p: InfoNCE clusters vs Laplacian-eigenvector clusters (ARI curves).
    SpectralAgreement(SpectralAgreementArgs),
    /// CLIP on the bipartite pair graph: identity, edge- vs object-uniform gap, co-clustering.
    Clip(ClipArgs),
    /// Mini-batch InfoNCE vs the full loss H as the batch grows (bias, gradient error).
    BatchSize(BatchSizeArgs),
    /// Positive-definiteness of exp(-||x - y||^gamma) (iff gamma <= 2) and of mixtures; max-entropy.
    Kernels(KernelsArgs),
    /// Benchmark (not in `all`): sparse SBM, 100,000 nodes in 10 blocks, degree 40, 20% across;
    /// sparse spectral embedding and mini-batch InfoNCE (d = 16) each must reach ARI >= 0.95.
    Scale(ScaleArgs),
    /// k-nearest-neighbour graph over real MNIST test digits (pixels / 255): spectral clustering
    /// vs InfoNCE free embeddings on the same graph, both scored against the digit labels.
    /// Skipped with a message (not failed) when the data folder is absent.
    KnnReal(KnnRealArgs),
    /// Every experiment at default size; writes DIR/report.md with the plots.
    All(AllArgs),
}

/// The `theory` command with each experiment's `--help` showing its config's defaults (the
/// flags carry none of their own).
pub fn with_defaults(theory: clap::Command) -> clap::Command {
    fn show<C: Serialize + Default>(cmd: clap::Command) -> clap::Command {
        overlay::show_defaults(cmd, &C::default())
    }
    theory
        .mut_subcommand("mrf", show::<mrf::MrfConfig>)
        .mut_subcommand("cross-entropy", show::<cross_entropy::CrossEntropyConfig>)
        .mut_subcommand("planted", show::<planted::PlantedExperimentConfig>)
        .mut_subcommand(
            "spectral-agreement",
            show::<spectral_agreement::SpectralAgreementConfig>,
        )
        .mut_subcommand("clip", show::<clip::ClipConfig>)
        .mut_subcommand("batch-size", show::<batch_size::BatchSizeConfig>)
        .mut_subcommand("kernels", show::<kernels::KernelsConfig>)
        .mut_subcommand("scale", show::<scale::ScaleConfig>)
        .mut_subcommand("knn-real", show::<knn_real::KnnRealConfig>)
}

/// The experiment's config: its `Default` with the given flags laid over it.
pub fn config<C: Serialize + DeserializeOwned + Default>(
    flags: &impl Serialize,
) -> anyhow::Result<C> {
    overlay::overlay(&C::default(), &[overlay::flags_table(flags)?])
}

/// Runs one experiment (or all) and returns the reports, without printing.
pub fn execute(cmd: &TheoryCommand) -> anyhow::Result<Vec<Report>> {
    let report = match cmd {
        TheoryCommand::Mrf(a) => mrf::run(&config(a)?, a.common.out.as_deref())?,
        TheoryCommand::CrossEntropy(a) => cross_entropy::run(&config(a)?, a.common.out.as_deref())?,
        TheoryCommand::Planted(a) => planted::run(&config(a)?, a.common.out.as_deref())?,
        TheoryCommand::SpectralAgreement(a) => {
            spectral_agreement::run(&config(a)?, a.common.out.as_deref())?
        }
        TheoryCommand::Clip(a) => clip::run(&config(a)?, a.common.out.as_deref())?,
        TheoryCommand::BatchSize(a) => batch_size::run(&config(a)?, a.common.out.as_deref())?,
        TheoryCommand::Kernels(a) => kernels::run(&config(a)?, a.common.out.as_deref())?,
        TheoryCommand::Scale(a) => {
            let settings = scale::ScaleConfig {
                python: a.python(),
                ..config(a)?
            };
            scale::run(&settings, |line| eprintln!("{line}"))?
        }
        TheoryCommand::KnnReal(a) => {
            if let Some(reason) = missing_data(&a.data) {
                eprintln!("knn-real skipped: {reason}");
                return Ok(vec![]);
            }
            let points = load_mnist_points(&a.data, a.n)?;
            knn_real::run(&config(a)?, &points, a.common.out.as_deref())?
        }
        TheoryCommand::All(a) => {
            let loaded = match missing_data(&a.data) {
                Some(reason) => {
                    eprintln!("knn-real skipped: {reason}");
                    Err(reason)
                }
                None => Ok(load_mnist_points(&a.data, knn::DEFAULT_IMAGES)?),
            };
            return Ok(all::run_all(
                &a.out,
                loaded.as_ref().map_err(Clone::clone),
                |name| eprintln!("running {name} ..."),
            )?);
        }
    };
    Ok(vec![report])
}

fn wants_json(cmd: &TheoryCommand) -> bool {
    match cmd {
        TheoryCommand::Mrf(MrfArgs { common, .. })
        | TheoryCommand::CrossEntropy(CrossEntropyArgs { common, .. })
        | TheoryCommand::Planted(PlantedArgs { common, .. })
        | TheoryCommand::SpectralAgreement(SpectralAgreementArgs { common, .. })
        | TheoryCommand::Clip(ClipArgs { common, .. })
        | TheoryCommand::BatchSize(BatchSizeArgs { common, .. })
        | TheoryCommand::Kernels(KernelsArgs { common, .. })
        | TheoryCommand::Scale(ScaleArgs { common, .. })
        | TheoryCommand::KnnReal(KnnRealArgs { common, .. }) => common.json,
        TheoryCommand::All(a) => a.json,
    }
}

/// The JSON line: one report as is; `all` as `{"experiment": "all", "reports": [...]}`.
pub fn json_line(cmd: &TheoryCommand, reports: &[Report]) -> String {
    match (cmd, reports) {
        (TheoryCommand::All(AllArgs { out, .. }), _) => serde_json::json!({
            "experiment": "all",
            "report": out.join("report.md"),
            "claims_total": reports.iter().map(|r| r.claims.len()).sum::<usize>(),
            "claims_holding": reports.iter().map(|r| r.claims.iter().filter(|c| c.holds).count()).sum::<usize>(),
            "reports": reports,
        })
        .to_string(),
        (TheoryCommand::KnnReal(KnnRealArgs { data, .. }), []) => serde_json::json!({
            "experiment": "knn-real",
            "skipped": missing_data(data).unwrap_or_default(),
            "claims": [],
        })
        .to_string(),
        (_, [one]) => one.to_json_line(),
        _ => serde_json::to_string(reports).unwrap_or_default(),
    }
}

pub fn run(args: TheoryArgs) -> anyhow::Result<()> {
    let cmd = &args.experiment;
    let reports = execute(cmd)?;
    let json = wants_json(cmd);
    for r in &reports {
        if json {
            eprint!("{}", r.to_text());
        } else {
            print!("{}", r.to_text());
        }
    }
    if let TheoryCommand::All(AllArgs { out, .. }) = cmd {
        let line = format!("report: {}", out.join("report.md").display());
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    if json {
        println!("{}", json_line(cmd, &reports));
    }
    let failed: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.claims
                .iter()
                .filter(|c| !c.holds)
                .map(move |c| format!("{}/{}", r.experiment, c.name))
        })
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} claim(s) did not hold: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: TheoryCommand,
    }

    /// The claim `name` of a report's JSON.
    fn claim<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        report["claims"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no claim {name} in {report}"))
    }

    #[test]
    fn help_shows_the_config_default() {
        use clap::CommandFactory;
        let mut cmd = with_defaults(Cli::command());
        // Whitespace collapsed: the rendering wraps at the terminal's width.
        let mut help = |name: &str| {
            let text = cmd.find_subcommand_mut(name).unwrap().render_help();
            text.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mrf_help = help("mrf");
        let d = mrf::MrfConfig::default();
        for shown in [
            format!("keep <= 8) [default: {}]", d.nodes),
            format!("connecting ring [default: {}]", d.edge_prob),
            format!("Monte Carlo draws) [default: {}]", d.seed),
        ] {
            assert!(mrf_help.contains(&shown), "{shown} not in {mrf_help}");
        }
        let kernels_help = help("kernels");
        assert!(
            kernels_help.contains("comma-separated [default: 0.5,1.0,1.5,2.0,2.5,3.0,4.0]"),
            "{kernels_help}"
        );
    }

    #[test]
    fn given_flags_reach_the_config_and_absent_ones_keep_the_default() {
        let cli = Cli::try_parse_from([
            "theory", "planted", "--tau", "0.3", "--seed", "7", "--out", "x", "--json",
        ])
        .unwrap();
        let TheoryCommand::Planted(flags) = &cli.cmd else {
            panic!("not planted");
        };
        let c: planted::PlantedExperimentConfig = config(flags).unwrap();
        let d = planted::PlantedExperimentConfig::default();
        assert_eq!((c.kernel.tau, c.seed), (0.3, 7));
        assert_eq!(c.kernel.gamma, d.kernel.gamma);
        assert_eq!((c.graph.blocks, c.graph.q), (d.graph.blocks, d.graph.q));
        assert_eq!((c.dim, c.max_iter), (d.dim, d.max_iter));

        let cli =
            Cli::try_parse_from(["theory", "spectral-agreement", "--ratios", "0.1,0.2"]).unwrap();
        let TheoryCommand::SpectralAgreement(flags) = &cli.cmd else {
            panic!("not spectral-agreement");
        };
        let c: spectral_agreement::SpectralAgreementConfig = config(flags).unwrap();
        assert_eq!(c.ratios, [0.1, 0.2]);
        assert_eq!(
            c.steps,
            spectral_agreement::SpectralAgreementConfig::default().steps
        );
    }

    #[test]
    fn planted_json_contract() {
        let cli = Cli::try_parse_from([
            "theory",
            "planted",
            "--blocks",
            "3",
            "--block-size",
            "4",
            "--p",
            "0.8",
            "--q",
            "0.2",
            "--tau",
            "0.5",
            "--dim",
            "2",
            "--seed",
            "1",
            "--json",
        ])
        .unwrap();
        let reports = execute(&cli.cmd).unwrap();
        let line = json_line(&cli.cmd, &reports);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["experiment"], "planted");
        assert_eq!(v["params"]["blocks"], 3);
        for name in [
            "center_sq_distance",
            "within_block_spread",
            "cross_entropy_vs_bound",
        ] {
            let c = claim(&v, name);
            for key in ["predicted", "measured", "tolerance", "holds"] {
                assert!(c.get(key).is_some(), "{name} lacks {key}");
            }
            assert_eq!(c["holds"], true, "{c}");
        }
        let d = claim(&v, "center_sq_distance");
        assert!((d["predicted"].as_f64().unwrap() - 0.5 * 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn planted_refuses_small_dim() {
        let cli =
            Cli::try_parse_from(["theory", "planted", "--blocks", "5", "--dim", "3"]).unwrap();
        let e = execute(&cli.cmd).unwrap_err().to_string();
        assert!(e.contains("dim") && e.contains("blocks - 1 = 4"), "{e}");
    }

    #[test]
    fn planted_refuses_q_at_or_above_p() {
        let cli = Cli::try_parse_from(["theory", "planted", "--p", "0.3", "--q", "0.5"]).unwrap();
        let e = execute(&cli.cmd).unwrap_err().to_string();
        assert!(e.contains("q") && e.contains("no planted partition"), "{e}");
    }

    #[test]
    fn q_zero_predicts_null() {
        let cli = Cli::try_parse_from([
            "theory",
            "planted",
            "--blocks",
            "2",
            "--block-size",
            "3",
            "--p",
            "1",
            "--q",
            "0",
            "--dim",
            "1",
            "--max-iter",
            "200",
            "--json",
        ])
        .unwrap();
        let reports = execute(&cli.cmd).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json_line(&cli.cmd, &reports)).unwrap();
        let d = claim(&v, "center_sq_distance");
        assert!(d["predicted"].is_null());
        assert_eq!(d["holds"], true);
    }

    #[test]
    fn knn_real_skips_without_data() {
        let cli = Cli::try_parse_from([
            "theory",
            "knn-real",
            "--data",
            "/nonexistent/mnist",
            "--json",
        ])
        .unwrap();
        let reports = execute(&cli.cmd).unwrap();
        assert!(reports.is_empty());
        let v: serde_json::Value = serde_json::from_str(&json_line(&cli.cmd, &reports)).unwrap();
        assert_eq!(v["experiment"], "knn-real");
        assert!(v["skipped"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/mnist"));
    }

    #[test]
    fn knn_real_on_mnist_reports_spectral_recovery() {
        let data =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
        if !data.exists() {
            eprintln!("skipping: MNIST not found at {}", data.display());
            return;
        }
        let points = load_mnist_points(&data, 500).unwrap();
        assert_eq!(points.dim, 784);
        assert!(points.points.iter().all(|&x| (0.0..=1.0).contains(&x)));
        // Evenly spaced over the test set: every digit is present, none dominates.
        let mut counts = [0usize; 10];
        points.labels.iter().for_each(|&l| counts[l] += 1);
        assert!(counts.iter().all(|&c| (25..=80).contains(&c)), "{counts:?}");
        let r = knn_real::run(
            &knn_real::KnnRealConfig {
                steps: 2000,
                ..Default::default()
            },
            &points,
            None,
        )
        .unwrap();
        let names: Vec<&str> = r.claims.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ari_infonce_vs_spectral", "trace_form_vs_direct"]);
        // Spectral clustering of raw-pixel kNN graphs finds the digits well above chance
        // (NMI 0.66 at n = 2,000).
        let nmi_spectral = r.details["nmi_spectral_vs_truth"].as_f64().unwrap();
        assert!(nmi_spectral > 0.5, "{nmi_spectral}");
        // The prediction of the agreement claim is InfoNCE's agreement with itself.
        let ari_self = r.details["ari_infonce_seed_vs_seed"].as_f64().unwrap();
        assert_eq!(r.claims[0].predicted, Some(ari_self));
        assert!(r.claims[1].holds, "{}", r.to_text());
    }
}
