//! Typed errors of the theory lab: each names the parameter, file or record and what was expected.

use std::path::PathBuf;

/// Everything that can go wrong in the lab on bad input.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A numeric parameter outside its allowed range.
    #[error("parameter `{name}` = {value} is invalid: expected {expected}")]
    Parameter {
        name: &'static str,
        value: String,
        expected: String,
    },
    /// An edge with a negative, NaN or infinite weight.
    #[error("edge ({i}, {j}) has weight {weight}: expected a finite weight >= 0")]
    NegativeWeight { i: usize, j: usize, weight: f64 },
    /// A self-loop where the graph forbids them.
    #[error("self-loop at node {node}: this graph forbids self-loops (pi_ii must be 0)")]
    SelfLoop { node: usize },
    /// A node index outside 0..n.
    #[error("edge ({i}, {j}) names a node outside 0..{n}")]
    NodeOutOfRange { i: usize, j: usize, n: usize },
    /// A matrix that should be symmetric is not.
    #[error("weight matrix is not symmetric: w[{i}][{j}] = {wij} but w[{j}][{i}] = {wji}")]
    NotSymmetric {
        i: usize,
        j: usize,
        wij: f64,
        wji: f64,
    },
    /// A graph that must be connected (or have no isolated node) is not.
    #[error("graph is disconnected ({components} connected components) but {what} assumes a connected graph")]
    Disconnected {
        components: usize,
        what: &'static str,
    },
    /// A node without edges where every row of P must be a distribution.
    #[error(
        "node {node} has degree 0: every node needs at least one edge to define the row P_{node}"
    )]
    IsolatedNode { node: usize },
    /// More clusters requested than there are points.
    #[error("asked for {clusters} clusters but there are only {points} points")]
    TooManyClusters { clusters: usize, points: usize },
    /// Shapes that do not fit together.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        what: &'static str,
        expected: String,
        got: String,
    },
    /// A line of a text file that does not parse.
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A binary file with an unexpected layout.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// An I/O error on a named file.
    // The cause is in the message and not a `source`, so a printed chain says it once.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A numerical routine that did not converge.
    #[error("{what} did not converge: {detail}")]
    NoConvergence { what: &'static str, detail: String },
    /// The loss crate refused its input.
    #[error("kinfonce-loss: {0}")]
    Loss(String),
    /// Writing a plot failed.
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

/// Short alias used across the crate.
pub type Result<T> = std::result::Result<T, GraphError>;

impl GraphError {
    /// A parameter error with a formatted value.
    pub fn param(
        name: &'static str,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        GraphError::Parameter {
            name,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

/// Checks that a probability lies in [0, 1].
pub fn check_probability(name: &'static str, value: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        return Err(GraphError::param(name, value, "a probability in [0, 1]"));
    }
    Ok(())
}

/// Checks that a value is finite and > 0.
pub fn check_positive(name: &'static str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(GraphError::param(name, value, "a finite number > 0"));
    }
    Ok(())
}
