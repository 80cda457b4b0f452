//! The lab's kernel: K(x, y) = exp(-||x - y||^gamma / tau) (Euclidean norm), the project's one
//! convention. Logits are s_ij = -||z_i - z_j||^gamma / tau.

use crate::error::{check_positive, GraphError, Result};

/// An exponential kernel exp(-||x - y||_2^gamma / tau).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExpKernel {
    /// Power of the distance (default 2: Gaussian). PD for gamma in (0, 2].
    pub gamma: f64,
    /// Temperature tau > 0 (default 0.5).
    pub tau: f64,
}

impl Default for ExpKernel {
    fn default() -> Self {
        Self {
            gamma: 2.0,
            tau: 0.5,
        }
    }
}

impl ExpKernel {
    /// Checks gamma in (0, 2] and tau > 0 (the loss crate's range; the `kernels` experiment
    /// builds Gram matrices for gamma > 2 itself).
    pub fn validate(&self) -> Result<()> {
        check_positive("tau", self.tau)?;
        if !(self.gamma > 0.0 && self.gamma <= 2.0) {
            return Err(GraphError::param("gamma", self.gamma, "gamma in (0, 2]"));
        }
        Ok(())
    }

    /// The convention as a sentence, printed by every experiment.
    pub fn convention(&self) -> String {
        format!(
            "K(x, y) = exp(-||x - y||^gamma / tau) with gamma = {}, tau = {}",
            self.gamma, self.tau
        )
    }

    /// f(r^2) = r^gamma / tau from a squared distance, and df/d(r^2).
    #[inline]
    pub fn energy(&self, r2: f64) -> f64 {
        if self.gamma == 2.0 {
            r2 / self.tau
        } else {
            r2.powf(0.5 * self.gamma) / self.tau
        }
    }

    /// d f / d(r^2) = (gamma / 2) r^(gamma - 2) / tau; 0 at r = 0 for gamma < 2 (the subgradient
    /// that keeps collapsed points collapsed).
    #[inline]
    pub fn energy_slope(&self, r2: f64) -> f64 {
        if self.gamma == 2.0 {
            1.0 / self.tau
        } else if r2 <= 1e-300 {
            0.0
        } else {
            0.5 * self.gamma * r2.powf(0.5 * self.gamma - 1.0) / self.tau
        }
    }

    /// K(x, y).
    pub fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
        (-self.energy(sq_dist(x, y))).exp()
    }
}

/// Squared Euclidean distance.
#[inline]
pub fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
