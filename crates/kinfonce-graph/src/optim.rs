//! Optimisers for free node embeddings: L-BFGS (for the smooth exact objective H(pi, K_Z)) and
//! Adam (for sampled InfoNCE, whose gradients are noisy).

/// L-BFGS settings.
#[derive(Clone, Debug)]
pub struct LbfgsConfig {
    /// Maximum iterations (default 5000).
    pub max_iter: usize,
    /// Number of stored curvature pairs (default 10).
    pub history: usize,
    /// Stop when the gradient's max-norm falls below this (default 1e-9).
    pub grad_tol: f64,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        Self {
            max_iter: 5000,
            history: 10,
            grad_tol: 1e-9,
        }
    }
}

/// Where L-BFGS stopped.
#[derive(Clone, Debug)]
pub struct LbfgsResult {
    /// The final point.
    pub x: Vec<f64>,
    /// Objective value there.
    pub value: f64,
    /// Max-norm of the gradient there.
    pub grad_norm: f64,
    /// Iterations used.
    pub iterations: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` (returning value and gradient) from `x0` with L-BFGS and an Armijo backtracking
/// line search. `on_iter(iteration, x, value)` is called after every accepted step.
pub fn lbfgs(
    x0: Vec<f64>,
    mut f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    config: &LbfgsConfig,
    mut on_iter: impl FnMut(usize, &[f64], f64),
) -> LbfgsResult {
    let mut x = x0;
    let (mut fx, mut g) = f(&x);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let max_norm = |g: &[f64]| g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut iterations = 0;
    on_iter(0, &x, fx);
    while iterations < config.max_iter && max_norm(&g) > config.grad_tol {
        // Two-loop recursion for d = -H g.
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for t in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[t], &s_hist[t]);
            alpha[t] = rho * dot(&s_hist[t], &q);
            q.iter_mut()
                .zip(&y_hist[t])
                .for_each(|(qi, yi)| *qi -= alpha[t] * yi);
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / max_norm(&g).max(1e-12)
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for t in 0..k {
            let rho = 1.0 / dot(&y_hist[t], &s_hist[t]);
            let beta = rho * dot(&y_hist[t], &q);
            q.iter_mut()
                .zip(&s_hist[t])
                .for_each(|(qi, si)| *qi += (alpha[t] - beta) * si);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            d = g.iter().map(|v| -v / max_norm(&g).max(1e-12)).collect();
            slope = dot(&g, &d);
        }
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let xn: Vec<f64> = x.iter().zip(&d).map(|(xi, di)| xi + step * di).collect();
            let (fnew, gnew) = f(&xn);
            if fnew.is_finite() && fnew <= fx + 1e-4 * step * slope {
                accepted = Some((xn, fnew, gnew));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fnew, gnew)) = accepted else {
            break;
        };
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gnew.iter().zip(&g).map(|(a, b)| a - b).collect();
        if dot(&s, &y) > 1e-16 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if s_hist.len() == config.history {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
        }
        x = xn;
        fx = fnew;
        g = gnew;
        iterations += 1;
        on_iter(iterations, &x, fx);
    }
    let grad_norm = max_norm(&g);
    LbfgsResult {
        x,
        value: fx,
        grad_norm,
        iterations,
    }
}

/// Adam (Kingma and Ba) with the usual bias correction.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay (0.9).
    pub beta1: f64,
    /// Second-moment decay (0.999).
    pub beta2: f64,
    /// Denominator guard (1e-8).
    pub eps: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Adam {
    /// Adam for `len` parameters.
    pub fn new(len: usize, lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    /// One step x -= lr * m_hat / (sqrt(v_hat) + eps).
    pub fn step(&mut self, x: &mut [f64], g: &[f64]) {
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        for i in 0..x.len() {
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g[i];
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g[i] * g[i];
            x[i] -= self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + self.eps);
        }
    }
}

/// Cosine decay from `base` at step 0 to 0 at step `total`: lr_t = base (1 + cos(pi t / total)) / 2.
///
/// Sampled InfoNCE gives unbiased but noisy gradients of H(pi, K_Z) / n; with a constant step
/// the iterate keeps jittering around the optimum at a distance that grows with the step, so the
/// step must go to zero for the iterate to settle (Robbins and Monro).
pub fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    if total == 0 {
        return base;
    }
    let t = (step.min(total) as f64) / total as f64;
    0.5 * base * (1.0 + (std::f64::consts::PI * t).cos())
}

/// Row-sparse ("lazy") Adam for an embedding table of `rows x dim` values: a step updates only
/// the rows that received a gradient, and each row keeps its own step count for the bias
/// correction, so a row seen for the k-th time moves like Adam's k-th step whatever the global
/// step is. A mini-batch touches a few thousand of 100,000 rows; dense Adam would both waste the
/// work and keep moving untouched rows along stale momentum.
#[derive(Clone, Debug)]
pub struct RowAdam {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay (0.9).
    pub beta1: f64,
    /// Second-moment decay (0.999).
    pub beta2: f64,
    /// Denominator guard (1e-8).
    pub eps: f64,
    dim: usize,
    m: Vec<f64>,
    v: Vec<f64>,
    t: Vec<i32>,
}

impl RowAdam {
    /// Lazy Adam for `rows` rows of `dim` values each.
    pub fn new(rows: usize, dim: usize, lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            dim,
            m: vec![0.0; rows * dim],
            v: vec![0.0; rows * dim],
            t: vec![0; rows],
        }
    }

    /// One Adam step of row `row` of `x` (the whole `rows x dim` table) with gradient `g` (dim).
    pub fn step_row(&mut self, x: &mut [f64], row: usize, g: &[f64]) {
        let d = self.dim;
        self.t[row] += 1;
        let c1 = 1.0 - self.beta1.powi(self.t[row]);
        let c2 = 1.0 - self.beta2.powi(self.t[row]);
        let (m, v) = (
            &mut self.m[row * d..(row + 1) * d],
            &mut self.v[row * d..(row + 1) * d],
        );
        for (((xi, mi), vi), gi) in x[row * d..(row + 1) * d].iter_mut().zip(m).zip(v).zip(g) {
            *mi = self.beta1 * *mi + (1.0 - self.beta1) * gi;
            *vi = self.beta2 * *vi + (1.0 - self.beta2) * gi * gi;
            *xi -= self.lr * (*mi / c1) / ((*vi / c2).sqrt() + self.eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lbfgs_minimises_rosenbrock() {
        let f = |x: &[f64]| {
            let (a, b) = (x[0], x[1]);
            let v = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            (
                v,
                vec![
                    -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                    200.0 * (b - a * a),
                ],
            )
        };
        let r = lbfgs(vec![-1.2, 1.0], f, &LbfgsConfig::default(), |_, _, _| {});
        assert!(
            (r.x[0] - 1.0).abs() < 1e-6 && (r.x[1] - 1.0).abs() < 1e-6,
            "{r:?}"
        );
    }

    #[test]
    fn adam_descends_a_quadratic() {
        let mut x = vec![3.0, -2.0];
        let mut opt = Adam::new(2, 0.1);
        for _ in 0..500 {
            let g = vec![2.0 * x[0], 4.0 * x[1]];
            opt.step(&mut x, &g);
        }
        assert!(x[0].abs() < 1e-2 && x[1].abs() < 1e-2, "{x:?}");
    }

    #[test]
    fn cosine_lr_ends_at_zero() {
        assert_eq!(cosine_lr(0.2, 0, 100), 0.2);
        assert!((cosine_lr(0.2, 50, 100) - 0.1).abs() < 1e-15);
        assert!(cosine_lr(0.2, 100, 100).abs() < 1e-15);
    }

    #[test]
    fn row_adam_matches_dense_adam_on_touched_rows_and_leaves_others() {
        // Two rows of two values; row 1 never gets a gradient.
        let mut dense = vec![1.0, -2.0];
        let mut table = vec![1.0, -2.0, 5.0, 6.0];
        let mut a = Adam::new(2, 0.1);
        let mut r = RowAdam::new(2, 2, 0.1);
        for step in 0..20 {
            let g = vec![2.0 * dense[0] + step as f64 * 0.1, 4.0 * dense[1]];
            a.step(&mut dense, &g);
            r.step_row(&mut table, 0, &g);
        }
        assert_eq!(&table[..2], &dense[..]);
        assert_eq!(&table[2..], &[5.0, 6.0]);
    }
}
