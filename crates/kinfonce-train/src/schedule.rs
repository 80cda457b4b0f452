//! Learning-rate schedules: linear warmup then cosine decay to zero, stepped per batch
//! (the official SimCLR's), or a cosine stepped once per epoch without warmup (the official
//! MoCo's `CosineAnnealingLR(optimizer, max_epochs)`).

use serde::{Deserialize, Serialize};

/// Which schedule a run follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// [`WarmupCosine::new`]: warmup min(10 epochs, 10% of the run), cosine per step.
    #[default]
    WarmupCosinePerStep,
    /// No warmup; the cosine changes at epoch boundaries only: base * (1 + cos(pi * e / E)) / 2
    /// through epoch e of E.
    CosinePerEpoch,
}

/// lr(s) = base * s / W for s < W (linear warmup from 0, as pl_bolts' `linear_warmup_decay`),
/// then base * (1 + cos(pi * (s - W) / (T - W))) / 2 (cosine to zero at s = T).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    pub base_lr: f64,
    /// W: warmup steps.
    pub warmup_steps: u64,
    /// T: the horizon in steps.
    pub total_steps: u64,
    /// The learning rate changes every this many steps (1: every step; an epoch's steps: per
    /// epoch, from the epoch's first step).
    #[serde(default = "one")]
    pub stride: u64,
}

fn one() -> u64 {
    1
}

impl WarmupCosine {
    /// The project's warmup: min(10 epochs, 10% of the run) (the official code warms up for
    /// 10 epochs; short runs would spend all their time warming up).
    pub fn new(base_lr: f64, total_steps: u64, steps_per_epoch: u64) -> Self {
        let warmup_steps = (10 * steps_per_epoch).min(total_steps / 10);
        WarmupCosine {
            base_lr,
            warmup_steps,
            total_steps,
            stride: 1,
        }
    }

    /// The schedule `kind` over `total_steps` of `steps_per_epoch`.
    pub fn of(kind: Schedule, base_lr: f64, total_steps: u64, steps_per_epoch: u64) -> Self {
        match kind {
            Schedule::WarmupCosinePerStep => Self::new(base_lr, total_steps, steps_per_epoch),
            Schedule::CosinePerEpoch => WarmupCosine {
                base_lr,
                warmup_steps: 0,
                total_steps,
                stride: steps_per_epoch.max(1),
            },
        }
    }

    /// Learning rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let step = step - step % self.stride.max(1);
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        let decay = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / decay).min(1.0);
        self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_ten_epochs_or_ten_percent() {
        // 100 epochs of 50 steps: 10 epochs = 500 steps < 10% = 500 -> 500.
        assert_eq!(WarmupCosine::new(1.0, 5000, 50).warmup_steps, 500);
        // 20 epochs of 50 steps: 10% = 100 < 500.
        assert_eq!(WarmupCosine::new(1.0, 1000, 50).warmup_steps, 100);
        // 400 epochs: 10 epochs = 500 < 10% = 2000.
        assert_eq!(WarmupCosine::new(1.0, 20_000, 50).warmup_steps, 500);
    }

    #[test]
    fn values_at_key_steps() {
        let s = WarmupCosine {
            base_lr: 0.4,
            warmup_steps: 10,
            total_steps: 110,
            stride: 1,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        // Warmup from 0, as pl_bolts: step / W.
        assert!(close(s.lr(0), 0.0));
        assert!(close(s.lr(1), 0.04));
        assert!(close(s.lr(5), 0.2));
        assert!(close(s.lr(9), 0.36));
        assert!(close(s.lr(10), 0.4)); // cosine starts at the peak
        assert!(close(s.lr(60), 0.2)); // half-way: cos(pi/2) = 0
        assert!(close(
            s.lr(35),
            0.4 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos())
        ));
        assert!(close(s.lr(110), 0.0));
        assert!(close(s.lr(500), 0.0)); // past the horizon stays at zero
                                        // Monotone decay after warmup.
        assert!((10..110).all(|k| s.lr(k + 1) <= s.lr(k)));
    }

    /// PyTorch's `CosineAnnealingLR(optimizer, T_max=E)` stepped once per epoch, as the official
    /// MoCo: lr of epoch e = base * (1 + cos(pi * e / E)) / 2, the same for every step of it.
    #[test]
    fn cosine_per_epoch_is_cosine_annealing_stepped_per_epoch() {
        let (base, epochs, steps) = (0.06, 200u64, 97u64);
        let s = WarmupCosine::of(Schedule::CosinePerEpoch, base, epochs * steps, steps);
        for e in [0u64, 1, 50, 100, 199] {
            let want = base * 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / 200.0).cos());
            for step in [e * steps, e * steps + 1, e * steps + steps - 1] {
                assert!((s.lr(step) - want).abs() < 1e-12, "epoch {e} step {step}");
            }
        }
        assert_eq!(s.lr(0), base, "no warmup");
        // The per-step default is unchanged.
        let d = WarmupCosine::of(Schedule::WarmupCosinePerStep, 1.0, 5000, 50);
        assert_eq!(d, WarmupCosine::new(1.0, 5000, 50));
    }

    #[test]
    fn no_warmup_when_tiny() {
        let s = WarmupCosine::new(1.0, 5, 1);
        assert_eq!(s.warmup_steps, 0);
        assert_eq!(s.lr(0), 1.0);
    }
}
