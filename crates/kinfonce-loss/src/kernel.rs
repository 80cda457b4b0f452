//! Similarity kernels, always used through their logarithm (the InfoNCE logit).
//!
//! The project's one convention: K(x, y) = exp(-||x - y||_p^gamma / tau). With gamma = 2 on unit
//! vectors this is SimCLR's NT-Xent at temperature tau / 2; gamma = 1 is the Laplacian kernel.

use serde::{Deserialize, Serialize};

use crate::error::{check_param, LossError};
use crate::real::Real;

/// The norm in ||x - y||_p.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Norm {
    L1,
    #[default]
    L2,
    Inf,
}

impl Norm {
    /// Parses `1`, `2`, `inf` (also `"l1"`, `"l2"`, `"linf"`).
    pub fn parse(text: &str) -> Result<Self, LossError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "1.0" | "l1" => Ok(Norm::L1),
            "2" | "2.0" | "l2" => Ok(Norm::L2),
            "inf" | "infinity" | "linf" => Ok(Norm::Inf),
            other => Err(LossError::Spec(format!(
                "parameter `p` = {other:?} is not supported: expected 1, 2 or inf"
            ))),
        }
    }
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::L1 => "1",
            Norm::L2 => "2",
            Norm::Inf => "inf",
        })
    }
}

/// The exponential kernel exp(-||x - y||_p^gamma / tau).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpKernel {
    /// Exponent of the distance, in (0, 2] (positive-definite range). 2: Gaussian, 1: Laplacian.
    pub gamma: f64,
    /// Temperature, > 0.
    pub tau: f64,
    /// Norm of the difference (default 2).
    #[serde(default)]
    pub p: Norm,
}

impl ExpKernel {
    pub fn new(gamma: f64, tau: f64) -> Self {
        Self {
            gamma,
            tau,
            p: Norm::L2,
        }
    }

    pub fn validate(&self) -> Result<(), LossError> {
        check_param(
            "gamma",
            self.gamma,
            self.gamma > 0.0 && self.gamma <= 2.0,
            "a value in (0, 2]",
        )?;
        check_param("tau", self.tau, self.tau > 0.0, "a value > 0")
    }
}

/// One weighted term of a kernel mixture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixtureComponent {
    /// Weight w_k > 0.
    pub weight: f64,
    pub kernel: ExpKernel,
}

/// A kernel: the InfoNCE logit of a pair is ln K(x, y).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kernel {
    /// exp(-||x - y||_p^gamma / tau).
    Exp(ExpKernel),
    /// sum_k w_k exp(-||x - y||_p^gamma_k / tau_k), all components with the same p
    /// (the paper's Simple Sum: one softmax over the mixture). A struct variant so that the
    /// internally tagged JSON form `{"type": "mixture", "components": [...]}` exists.
    Mixture { components: Vec<MixtureComponent> },
    /// Arc-cosine kernel of order 1, 2 or 3 (Cho and Saul's J_0..J_2 up to constants), applied to
    /// the angle t = acos(clamp(tau <x, y> + 1 - tau, -1, 1)); the value is used directly:
    /// order 1: pi - t; 2: sin t + (pi - t) cos t; 3: 3 sin t cos t + (pi - t)(1 + 2 cos^2 t).
    ArcCos { order: u8, tau: f64 },
}

impl Kernel {
    pub fn exp(gamma: f64, tau: f64) -> Self {
        Kernel::Exp(ExpKernel::new(gamma, tau))
    }

    pub fn mixture(components: Vec<MixtureComponent>) -> Self {
        Kernel::Mixture { components }
    }

    pub fn validate(&self) -> Result<(), LossError> {
        match self {
            Kernel::Exp(k) => k.validate(),
            Kernel::Mixture { components: parts } => {
                if parts.is_empty() {
                    return Err(LossError::Spec(
                        "a kernel mixture needs at least one component".into(),
                    ));
                }
                for part in parts {
                    check_param("weight", part.weight, part.weight > 0.0, "a value > 0")?;
                    part.kernel.validate()?;
                    if part.kernel.p != parts[0].kernel.p {
                        return Err(LossError::Spec(
                            "all components of a kernel mixture must use the same norm p".into(),
                        ));
                    }
                }
                Ok(())
            }
            Kernel::ArcCos { order, tau } => {
                check_param("order", *order as f64, (1..=3).contains(order), "1, 2 or 3")?;
                check_param("tau", *tau, *tau > 0.0 && *tau <= 1.0, "a value in (0, 1]")
            }
        }
    }
}

/// What the kernel reads off a pair of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Geometry {
    /// ||x - y||_2^2 (tiles by GEMM: |x|^2 + |y|^2 - 2 x.y).
    SqEuclid,
    /// ||x - y||_1.
    L1,
    /// ||x - y||_inf.
    LInf,
    /// <x, y> (tiles by GEMM).
    Dot,
}

/// The log-kernel as a function of the pair's geometry value t, with its slope d ln K / dt.
/// Implementations are small `Copy` values so the fused loops monomorphise and vectorise.
pub(crate) trait LogKernel<T: Real>: Sync + Send {
    fn geometry(&self) -> Geometry;
    fn log_k(&self, t: T) -> T;
    fn log_k_slope(&self, t: T) -> (T, T);
}

/// gamma = 2, p = 2: ln K = -q / tau.
#[derive(Clone, Copy)]
pub(crate) struct Gaussian<T> {
    pub inv_tau: T,
}
impl<T: Real> LogKernel<T> for Gaussian<T> {
    fn geometry(&self) -> Geometry {
        Geometry::SqEuclid
    }
    #[inline(always)]
    fn log_k(&self, q: T) -> T {
        -q * self.inv_tau
    }
    #[inline(always)]
    fn log_k_slope(&self, q: T) -> (T, T) {
        (-q * self.inv_tau, -self.inv_tau)
    }
}

/// gamma = 1, p = 2: ln K = -sqrt(q) / tau; slope 0 at q = 0 (the subgradient).
#[derive(Clone, Copy)]
pub(crate) struct Laplacian<T> {
    pub inv_tau: T,
}
impl<T: Real> LogKernel<T> for Laplacian<T> {
    fn geometry(&self) -> Geometry {
        Geometry::SqEuclid
    }
    #[inline(always)]
    fn log_k(&self, q: T) -> T {
        -q.sqrt() * self.inv_tau
    }
    #[inline(always)]
    fn log_k_slope(&self, q: T) -> (T, T) {
        let r = q.sqrt();
        let half = T::from_f64(0.5);
        let slope = if q > T::ZERO {
            -half * self.inv_tau / r
        } else {
            T::ZERO
        };
        (-r * self.inv_tau, slope)
    }
}

/// gamma = 0.5, p = 2: ln K = -q^(1/4) / tau.
#[derive(Clone, Copy)]
pub(crate) struct QuarterPower<T> {
    pub inv_tau: T,
}
impl<T: Real> LogKernel<T> for QuarterPower<T> {
    fn geometry(&self) -> Geometry {
        Geometry::SqEuclid
    }
    #[inline(always)]
    fn log_k(&self, q: T) -> T {
        -q.sqrt().sqrt() * self.inv_tau
    }
    #[inline(always)]
    fn log_k_slope(&self, q: T) -> (T, T) {
        let r = q.sqrt().sqrt();
        let quarter = T::from_f64(0.25);
        let slope = if q > T::ZERO {
            -quarter * self.inv_tau * r / q
        } else {
            T::ZERO
        };
        (-r * self.inv_tau, slope)
    }
}

/// Any exponent: ln K = -t^e / tau, with t = q and e = gamma / 2 for p = 2, or t = the
/// distance and e = gamma for p in {1, inf}.
#[derive(Clone, Copy)]
pub(crate) struct Power<T> {
    pub exponent: T,
    pub inv_tau: T,
    pub geometry: Geometry,
}
impl<T: Real> LogKernel<T> for Power<T> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }
    #[inline(always)]
    fn log_k(&self, t: T) -> T {
        -power(t, self.exponent) * self.inv_tau
    }
    #[inline(always)]
    fn log_k_slope(&self, t: T) -> (T, T) {
        let te = power(t, self.exponent);
        let slope = if t > T::ZERO {
            -self.exponent * self.inv_tau * te / t
        } else if self.exponent == T::ONE {
            -self.inv_tau
        } else {
            T::ZERO
        };
        (-te * self.inv_tau, slope)
    }
}

#[inline(always)]
fn power<T: Real>(t: T, e: T) -> T {
    if e == T::ONE {
        t
    } else if t > T::ZERO {
        t.powf(e)
    } else {
        T::ZERO
    }
}

/// ln sum_k w_k exp(-t^e_k / tau_k): a log-sum-exp over the components.
#[derive(Clone)]
pub(crate) struct Mixture<T> {
    /// (ln w_k, e_k, 1 / tau_k)
    pub parts: Vec<(T, T, T)>,
    pub geometry: Geometry,
}
impl<T: Real> LogKernel<T> for Mixture<T> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }
    #[inline(always)]
    fn log_k(&self, t: T) -> T {
        self.log_k_slope(t).0
    }
    #[inline(always)]
    fn log_k_slope(&self, t: T) -> (T, T) {
        let mut max = T::NEG_INFINITY;
        for &(lw, e, it) in &self.parts {
            max = max.max(lw - power(t, e) * it);
        }
        let (mut sum, mut slope) = (T::ZERO, T::ZERO);
        for &(lw, e, it) in &self.parts {
            let te = power(t, e);
            let weight = (lw - te * it - max).exp_fast();
            sum += weight;
            let d = if t > T::ZERO {
                -e * it * te / t
            } else if e == T::ONE {
                -it
            } else {
                T::ZERO
            };
            slope += weight * d;
        }
        (max + sum.ln(), slope / sum)
    }
}

/// Arc-cosine kernels on u = <x, y>.
#[derive(Clone, Copy)]
pub(crate) struct ArcCos<T> {
    pub order: u8,
    pub tau: T,
}
impl<T: Real> LogKernel<T> for ArcCos<T> {
    fn geometry(&self) -> Geometry {
        Geometry::Dot
    }
    fn log_k(&self, u: T) -> T {
        self.log_k_slope(u).0
    }
    fn log_k_slope(&self, u: T) -> (T, T) {
        let tau = self.tau.to_f64();
        let v_raw = tau * u.to_f64() + 1.0 - tau;
        let v = v_raw.clamp(-1.0, 1.0);
        let t = v.acos();
        let (s, c) = t.sin_cos();
        let pi_t = std::f64::consts::PI - t;
        // J(t) and dJ/dt.
        let (j, dj) = match self.order {
            1 => (pi_t, -1.0),
            2 => (s + pi_t * c, -pi_t * s),
            _ => (
                3.0 * s * c + pi_t * (1.0 + 2.0 * c * c),
                -4.0 * s * s - 4.0 * pi_t * s * c,
            ),
        };
        // dt/du = -tau / sqrt(1 - v^2) inside the clamp, 0 where it clamps.
        let dt_du = if v_raw > -1.0 && v_raw < 1.0 {
            -tau / (1.0 - v * v).sqrt()
        } else {
            0.0
        };
        let slope = if j > 0.0 { dj / j * dt_du } else { 0.0 };
        (T::from_f64(j.ln()), T::from_f64(slope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_slope<K: LogKernel<f64>>(k: &K, t: f64) {
        let h = 1e-6 * t.abs().max(1e-3);
        let fd = (k.log_k(t + h) - k.log_k(t - h)) / (2.0 * h);
        let (v, slope) = k.log_k_slope(t);
        assert!((v - k.log_k(t)).abs() < 1e-12);
        assert!(
            (fd - slope).abs() < 1e-6 * (1.0 + slope.abs()),
            "t={t}: fd {fd} vs {slope}"
        );
    }

    #[test]
    fn slopes_match_finite_differences() {
        for t in [0.05, 0.3, 1.0, 2.7] {
            check_slope(&Gaussian { inv_tau: 2.0 }, t);
            check_slope(&Laplacian { inv_tau: 5.0 }, t);
            check_slope(&QuarterPower { inv_tau: 3.0 }, t);
            let geometry = Geometry::SqEuclid;
            check_slope(
                &Power {
                    exponent: 0.75,
                    inv_tau: 3.0,
                    geometry,
                },
                t,
            );
            let parts = vec![(0.3f64.ln(), 0.5, 5.0), (0.7f64.ln(), 1.0, 2.5)];
            check_slope(&Mixture { parts, geometry }, t);
        }
        for order in 1..=3 {
            for u in [-0.9, -0.2, 0.4, 0.95] {
                check_slope(&ArcCos { order, tau: 0.5 }, u);
            }
        }
    }

    #[test]
    fn validation_names_the_parameter_and_range() {
        let err = ExpKernel::new(2.5, 0.1).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter `gamma` = 2.5 is out of range: expected a value in (0, 2]"
        );
        let err = ExpKernel::new(1.0, 0.0).validate().unwrap_err();
        assert!(err.to_string().contains("`tau` = 0"), "{err}");
        assert!(ExpKernel::new(f64::NAN, 0.2).validate().is_err());
        assert!(Kernel::ArcCos { order: 4, tau: 0.5 }.validate().is_err());
        assert!(Kernel::mixture(vec![]).validate().is_err());
    }
}
