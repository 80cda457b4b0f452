//! The one error type of the crate: every variant names the file, record or parameter at fault.

use std::path::PathBuf;

/// Errors from reading, splitting, augmenting, loading and fetching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system error while touching `path`.
    // The cause is in the message and not a `source`, so a printed chain says it once.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The file exists but its content is not what the format prescribes.
    #[error("{path}: {detail}")]
    Format { path: PathBuf, detail: String },
    /// One record (image) of a file is bad: wrong length, bad label, wrong size, undecodable.
    #[error("{path}: record {record}: {detail}")]
    Record {
        path: PathBuf,
        record: usize,
        detail: String,
    },
    /// A file that the layout needs is not there.
    #[error("{path}: missing {what}")]
    Missing { path: PathBuf, what: String },
    /// The format of `path` could not be recognised.
    #[error("{path}: cannot detect the data format ({detail}); pass --format cifar10|cifar100|mnist|stl10|imagefolder|tiny-imagenet")]
    UnknownFormat { path: PathBuf, detail: String },
    /// A parameter is out of its range.
    #[error("invalid {name} = {value}: expected {expected}")]
    Param {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// A download failed (network, HTTP status, checksum).
    #[error("{url}: {detail}")]
    Fetch { url: String, detail: String },
    /// The loader's worker thread died.
    #[error("loader: {0}")]
    Loader(String),
}

/// Result with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            cause: source,
        }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            detail: detail.into(),
        }
    }
    pub(crate) fn record(
        path: impl Into<PathBuf>,
        record: usize,
        detail: impl Into<String>,
    ) -> Self {
        DataError::Record {
            path: path.into(),
            record,
            detail: detail.into(),
        }
    }
    pub(crate) fn param(
        name: &'static str,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        DataError::Param {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}
