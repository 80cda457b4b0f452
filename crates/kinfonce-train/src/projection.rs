//! The SimCLR projection head (the official code's `Projection`): Linear - BatchNorm1d - ReLU -
//! Linear (no bias), then p-norm normalisation and the sqrt(mu) scale; without batch norm,
//! Linear - ReLU - Linear (with bias), lightly's MoCo head.

use crate::layers::{BatchNorm, Linear};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Configuration of the projection head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionConfig {
    /// Hidden width. Default 2048 (the official code's `hidden_mlp`).
    pub hidden: i64,
    /// Output dimension. Default 128 (`feat_dim`); concat-sum doubles it.
    pub out: i64,
    /// Order p of the norm the output is divided by: 1, 2 or infinity. Default 2.
    pub norm_p: f64,
    /// The output is scaled to p-norm sqrt(mu). Default 1 (unit vectors).
    pub mu: f64,
    /// Batch norm after the first layer (SimCLR's head). Default true; false: lightly's MoCo
    /// head, whose last layer has a bias instead.
    pub batch_norm: bool,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        ProjectionConfig {
            hidden: 2048,
            out: 128,
            norm_p: 2.0,
            mu: 1.0,
            batch_norm: true,
        }
    }
}

impl ProjectionConfig {
    /// Parameters named as the official head: `model.0` (Linear), `model.1` (BatchNorm1d),
    /// `model.3` (Linear without bias), under `p`.
    pub fn init(&self, p: nn::Path, d_in: i64) -> Projection {
        let m = &p / "model";
        Projection {
            config: self.clone(),
            fc1: Linear::new(&m / 0, d_in, self.hidden, true),
            bn: self.batch_norm.then(|| BatchNorm::new(&m / 1, self.hidden)),
            fc2: Linear::new(&m / 3, self.hidden, self.out, !self.batch_norm),
        }
    }
}

/// Projection head.
#[derive(Debug)]
pub struct Projection {
    pub config: ProjectionConfig,
    fc1: Linear,
    bn: Option<BatchNorm>,
    fc2: Linear,
}

impl Projection {
    /// z = sqrt(mu) * h / ||h||_p with h = W2 relu(BN(W1 x + b1)) (without batch norm:
    /// W2 relu(W1 x + b1) + b2); the norm is computed in f32.
    ///
    /// # Shapes
    /// input `[N, d_in]`, output `[N, out]` f32.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.fc1.forward(x);
        let h = match &self.bn {
            Some(bn) => bn.forward(&h, train),
            None => h,
        }
        .relu();
        let h = self.fc2.forward(&h).to_kind(Kind::Float);
        normalize_p(&h, self.config.norm_p) * self.config.mu.sqrt()
    }
}

/// Rows divided by their p-norm (clamped below at 1e-12, as `F.normalize`).
pub fn normalize_p(h: &Tensor, p: f64) -> Tensor {
    let norm = h.norm_scalaropt_dim(p, [1], true).clamp_min(1e-12);
    h / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn names_shapes_and_norms() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        for (p, mu) in [(2.0, 1.0), (1.0, 4.0), (f64::INFINITY, 2.0)] {
            let head = ProjectionConfig {
                hidden: 32,
                out: 8,
                norm_p: p,
                mu,
                ..Default::default()
            }
            .init(vs.root() / format!("h{p}"), 16);
            let x = Tensor::randn([5, 16], (Kind::Float, Device::Cpu));
            let z = head.forward(&x, true);
            assert_eq!(z.size(), vec![5, 8]);
            let norms = z.norm_scalaropt_dim(p, [1], false);
            let err = f64::try_from((norms - mu.sqrt()).abs().max()).unwrap();
            assert!(err < 1e-5, "p {p}: norm off by {err}");
        }
        let mut names: Vec<String> = vs
            .variables()
            .into_keys()
            .filter_map(|k| k.strip_prefix("h2.").map(String::from))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "model.0.bias",
                "model.0.weight",
                "model.1.bias",
                "model.1.running_mean",
                "model.1.running_var",
                "model.1.weight",
                "model.3.weight"
            ]
        );
    }
}
