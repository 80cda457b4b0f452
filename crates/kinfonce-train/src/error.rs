//! Errors of the training crate: each names the file, the parameter or the step at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    // The cause is part of the message and not a `source`, so a chain printed by anyhow does
    // not say it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{context}: {cause}")]
    Torch {
        context: String,
        cause: tch::TchError,
    },
    /// A checkpoint file whose bytes are not those the checkpoint recorded.
    #[error("checkpoint file {file} is damaged: {detail}")]
    Damaged { file: PathBuf, detail: String },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data: {0}")]
    Data(String),
    #[error("the loss became {value} at step {step} (epoch {epoch}); stopped. {}", checkpoint_note(.checkpoint))]
    NonFiniteLoss {
        step: u64,
        epoch: u64,
        value: f64,
        checkpoint: Option<PathBuf>,
    },
    #[error("device `{0}` is not available: {1}")]
    Device(String, String),
    /// A failure of the process group (a rank gone, a rendezvous that did not happen), or
    /// ranks that disagree; the message names the rank.
    #[error("{0}")]
    Distributed(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |cause| TrainError::Io { path, cause }
}

pub(crate) fn torch_err(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> TrainError {
    let context = context.into();
    move |cause| TrainError::Torch { context, cause }
}

fn checkpoint_note(checkpoint: &Option<PathBuf>) -> String {
    match checkpoint {
        Some(p) => format!("The last good checkpoint is kept at {}", p.display()),
        None => "No checkpoint had been written yet".to_string(),
    }
}
