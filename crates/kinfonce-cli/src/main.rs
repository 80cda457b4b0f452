//! `kinfonce`: kernel contrastive learning from the command line.
//!
//! One module per command group; each defines its `Args` and a `run`.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod bench;
#[cfg(feature = "torch")]
mod compare;
mod data_cmd;
#[cfg(feature = "torch")]
mod default_data;
#[cfg(feature = "torch")]
mod embed;
#[cfg(feature = "torch")]
mod eval_cmd;
mod fuzz;
#[cfg(feature = "torch")]
mod info;
#[cfg(feature = "torch")]
mod launcher;
mod loss_cmd;
#[cfg(feature = "torch")]
mod loss_options;
mod overlay;
#[cfg(feature = "torch")]
mod pretrain;
#[cfg(feature = "torch")]
mod run_lock;
#[cfg(feature = "torch")]
mod search;
mod theory;

/// Kernel-InfoNCE: contrastive learning as spectral clustering on a similarity graph.
///
/// Kernel convention everywhere: K(x, y) = exp(-||x - y||_p^gamma / tau). With gamma = 2 on unit
/// vectors this is SimCLR's NT-Xent at temperature tau / 2; gamma = 1 is the Laplacian kernel.
#[derive(Parser)]
#[command(name = "kinfonce", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate losses and gradients on cases in the golden-vector JSON format.
    Loss(loss_cmd::LossArgs),
    /// Benchmarks (the fused loss against the PyTorch reference).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The theory lab: InfoNCE is spectral clustering, shown numerically.
    Theory(theory::TheoryArgs),
    /// Data sets: download and verify.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// This machine: CPU instruction sets, threads, libtorch, CUDA devices, the precision and
    /// layout `--precision auto` picks, where data is looked for.
    #[cfg(feature = "torch")]
    Info(info::InfoArgs),
    /// Pretrain an encoder with a Kernel-InfoNCE loss (SimCLR pairing).
    #[cfg(feature = "torch")]
    Pretrain(Box<pretrain::PretrainArgs>),
    /// Evaluate a pretrained encoder: linear probe or k-NN on frozen features.
    #[cfg(feature = "torch")]
    #[command(subcommand)]
    Eval(eval_cmd::EvalCommand),
    /// Export encoder features and labels (safetensors or .npy).
    #[cfg(feature = "torch")]
    Embed(Box<embed::EmbedArgs>),
    /// Compare kernels over seeds: pretrain, evaluate, write a report.
    #[cfg(feature = "torch")]
    Compare(Box<compare::CompareArgs>),
    /// Search kernel hyperparameters on Optuna: random search with early stopping.
    #[cfg(feature = "torch")]
    Search(Box<search::SearchArgs>),
}

/// The commands that run networks reuse freed activation memory instead of faulting in fresh
/// pages every step (see `kinfonce_train::allocator`).
#[cfg(feature = "torch")]
fn network_command<T>(run: impl FnOnce(T) -> anyhow::Result<()>, args: T) -> anyhow::Result<()> {
    kinfonce_train::allocator::retain_freed_memory();
    run(args)
}

/// Under a launcher (torchrun's RANK / WORLD_SIZE), `eval`, `embed` and `compare` run on rank 0
/// alone: the others say so and exit 0, so no two processes write the same files and nothing
/// waits for a collective.
#[cfg(feature = "torch")]
fn rank_zero_only(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    match kinfonce_train::distributed::Launch::from_env()? {
        Some(launch) if launch.rank > 0 => {
            eprintln!(
                "rank {} of {}: `kinfonce {name}` runs on rank 0 alone",
                launch.rank, launch.world_size
            );
            Ok(())
        }
        _ => run(),
    }
}

/// The command line, with each configuration's defaults shown in `--help` (the defaults live in
/// the configurations).
fn command() -> clap::Command {
    let cmd = Cli::command().mut_subcommand("theory", theory::with_defaults);
    #[cfg(feature = "torch")]
    let cmd = cmd
        .mut_subcommand("pretrain", pretrain::with_defaults)
        .mut_subcommand("compare", pretrain::with_defaults);
    cmd
}

/// Exit code of an internal failure (sysexits' EX_SOFTWARE), never Rust's 101 with a backtrace.
const EXIT_INTERNAL: i32 = 70;

/// Anything that still panics (libtorch reports most failures as panics through tch) ends as one
/// line naming the command, exit code 70.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        let command: Vec<String> = std::env::args()
            .skip(1)
            .take_while(|a| !a.starts_with('-'))
            .take(2)
            .collect();
        eprintln!("{}", panic_line(message, &command.join(" ")));
        std::process::exit(EXIT_INTERNAL);
    }));
}

/// The one line a panic of `kinfonce COMMAND` prints. libtorch's message (after tch's
/// `Torch("`) runs over many lines of C++ backtrace, escaped when it comes through `unwrap`;
/// its first line says what failed.
fn panic_line(message: &str, command: &str) -> String {
    let text = message.split_once("Torch(\"").map_or(message, |(_, t)| t);
    let first = text.split("\\n").next().unwrap_or_default();
    let first = first
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches("\")");
    let inside = if message.contains("Torch") || message.contains("c10") {
        "libtorch"
    } else {
        "kinfonce (a bug: please report it with this line)"
    };
    format!("error: kinfonce {command} failed inside {inside}: {first}")
}

fn main() {
    install_panic_hook();
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    let result = match cli.command {
        Command::Loss(args) => loss_cmd::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Theory(args) => theory::run(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        #[cfg(feature = "torch")]
        Command::Info(args) => info::run(args),
        #[cfg(feature = "torch")]
        Command::Pretrain(args) => network_command(pretrain::run, *args),
        #[cfg(feature = "torch")]
        Command::Eval(cmd) => rank_zero_only("eval", || {
            network_command(eval_cmd::run, cmd).map_err(eval_cmd::with_intact_checkpoint_help)
        }),
        #[cfg(feature = "torch")]
        Command::Embed(args) => rank_zero_only("embed", || {
            network_command(embed::run, *args).map_err(eval_cmd::with_intact_checkpoint_help)
        }),
        #[cfg(feature = "torch")]
        Command::Compare(args) => {
            rank_zero_only("compare", || network_command(compare::run, *args))
        }
        #[cfg(feature = "torch")]
        Command::Search(args) => search::run(*args),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
    // Stopped by SIGINT / SIGTERM after saving: exit as the shell expects (130 / 143), so
    // `kinfonce pretrain ... && kinfonce eval ...` does not go on.
    #[cfg(feature = "torch")]
    if let Some(code) = kinfonce_train::trainer::interrupted_exit_code() {
        std::process::exit(code);
    }
}

#[cfg(test)]
mod tests {
    use super::panic_line;

    #[test]
    fn a_libtorch_panic_is_one_line_saying_what_failed() {
        // What tch's `unwrap` of a libtorch error carries (abridged C++ backtrace).
        let message = "called `Result::unwrap()` on an `Err` value: Torch(\"torch.cat(): expected a \
            non-empty list of Tensors\\nException raised from meta at /pytorch/aten/src/ATen/native/\
            TensorShape.cpp:253 (most recent call first):\\nframe #0: c10::Error::Error\")";
        let line = panic_line(message, "pretrain");
        assert_eq!(
            line,
            "error: kinfonce pretrain failed inside libtorch: torch.cat(): expected a non-empty \
             list of Tensors"
        );
        let line = panic_line("index out of bounds\nsecond line", "eval knn");
        assert!(
            line.starts_with("error: kinfonce eval knn failed inside kinfonce (a bug"),
            "{line}"
        );
        assert!(line.ends_with("index out of bounds"), "{line}");
    }
}
