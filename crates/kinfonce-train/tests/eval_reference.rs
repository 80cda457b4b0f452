//! The k-NN classifier and the linear probe against independent plain-Rust f64
//! computations on tiny fixed feature sets.

use kinfonce_train::eval::{
    classification, knn_classify, train_probe, KnnConfig, LinearProbe, ProbeConfig,
};
use kinfonce_train::monitor::knn_scores;
use kinfonce_train::tch::{Device, Kind, Tensor};

/// A fixed pseudo-random stream (64-bit LCG), uniform in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    fn matrix(&mut self, rows: usize, cols: usize) -> Vec<Vec<f64>> {
        (0..rows)
            .map(|_| (0..cols).map(|_| self.next()).collect())
            .collect()
    }
}

fn tensor(m: &[Vec<f64>]) -> Tensor {
    let flat: Vec<f32> = m.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_slice(&flat).view([m.len() as i64, m[0].len() as i64])
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Weighted k-NN by brute force: sort all cosine similarities, sum exp(sim / t) of the k best
/// per class.
fn knn_brute_force(
    bank: &[Vec<f64>],
    labels: &[i64],
    queries: &[Vec<f64>],
    k: usize,
    t: f64,
    classes: usize,
) -> Vec<Vec<f64>> {
    let bank: Vec<Vec<f64>> = bank.iter().map(|b| unit(b)).collect();
    queries
        .iter()
        .map(|q| {
            let q = unit(q);
            let mut sims: Vec<(f64, i64)> = bank
                .iter()
                .zip(labels)
                .map(|(b, &l)| (b.iter().zip(&q).map(|(x, y)| x * y).sum(), l))
                .collect();
            sims.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
            let mut scores = vec![0.0; classes];
            for (s, l) in sims.into_iter().take(k) {
                scores[l as usize] += (s / t).exp();
            }
            scores
        })
        .collect()
}

#[test]
fn knn_agrees_with_brute_force() {
    let mut rng = Lcg(7);
    let (n, m, d, classes) = (60, 25, 5, 3);
    let bank = rng.matrix(n, d);
    let queries = rng.matrix(m, d);
    let labels: Vec<i64> = (0..n as i64)
        .map(|i| (i * 7 + i / 5) % classes as i64)
        .collect();
    let query_labels: Vec<i64> = (0..m as i64).map(|i| i % classes as i64).collect();
    for (k, t) in [(7usize, 0.1), (1, 0.5), (200, 0.1)] {
        let expected = knn_brute_force(&bank, &labels, &queries, k, t, classes);
        let got = knn_scores(
            &tensor(&bank),
            &Tensor::from_slice(&labels),
            &tensor(&queries),
            k as i64,
            t,
            classes as i64,
        );
        let got: Vec<f32> = Vec::try_from(got.flatten(0, -1)).unwrap();
        for (i, row) in expected.iter().enumerate() {
            for (c, &e) in row.iter().enumerate() {
                let g = got[i * classes + c] as f64;
                assert!(
                    (g - e).abs() <= 1e-4 * e.abs().max(1.0),
                    "k {k} t {t} query {i} class {c}: {g} vs {e}"
                );
            }
        }
        // Accuracy: argmax of the brute-force scores.
        let correct = expected
            .iter()
            .zip(&query_labels)
            .filter(|(row, &l)| {
                let best = (0..classes)
                    .max_by(|&a, &b| row[a].partial_cmp(&row[b]).unwrap())
                    .unwrap();
                best as i64 == l
            })
            .count();
        let r = knn_classify(
            &tensor(&bank),
            &Tensor::from_slice(&labels),
            &tensor(&queries),
            &Tensor::from_slice(&query_labels),
            classes,
            &KnnConfig {
                k: k as i64,
                temperature: t,
            },
        )
        .unwrap();
        assert_eq!(r.top1, correct as f64 / m as f64, "k {k} t {t}");
        assert_eq!(r.n, m);
        assert_eq!(r.confusion.iter().flatten().sum::<u64>(), m as u64);
    }
}

/// torch.optim.SGD on the mean cross-entropy of a linear layer, in f64.
struct PlainProbe {
    w: Vec<Vec<f64>>,
    b: Vec<f64>,
    bw: Option<Vec<Vec<f64>>>,
    bb: Option<Vec<f64>>,
}

impl PlainProbe {
    fn step(&mut self, x: &[Vec<f64>], y: &[i64], lr: f64, mom: f64, wd: f64) {
        let (c, d, n) = (self.b.len(), x[0].len(), x.len());
        let mut gw = vec![vec![0.0; d]; c];
        let mut gb = vec![0.0; c];
        for (row, &label) in x.iter().zip(y) {
            let logits: Vec<f64> = (0..c)
                .map(|k| self.b[k] + (0..d).map(|j| self.w[k][j] * row[j]).sum::<f64>())
                .collect();
            let max = logits.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            for k in 0..c {
                let p = (logits[k] - max).exp() / z;
                let g = (p - if k as i64 == label { 1.0 } else { 0.0 }) / n as f64;
                gb[k] += g;
                for j in 0..d {
                    gw[k][j] += g * row[j];
                }
            }
        }
        for k in 0..c {
            gb[k] += wd * self.b[k];
            for (g, w) in gw[k].iter_mut().zip(&self.w[k]) {
                *g += wd * w;
            }
        }
        let bw = match self.bw.take() {
            Some(prev) => prev
                .iter()
                .zip(&gw)
                .map(|(p, g)| p.iter().zip(g).map(|(p, g)| mom * p + g).collect())
                .collect(),
            None => gw,
        };
        let bb: Vec<f64> = match self.bb.take() {
            Some(prev) => prev.iter().zip(&gb).map(|(p, g)| mom * p + g).collect(),
            None => gb,
        };
        for k in 0..c {
            self.b[k] -= lr * bb[k];
            for (w, b) in self.w[k].iter_mut().zip(&bw[k]) {
                *w -= lr * b;
            }
        }
        self.bw = Some(bw);
        self.bb = Some(bb);
    }
}

fn to_vec2(t: &Tensor) -> Vec<Vec<f64>> {
    let rows = t.size()[0];
    (0..rows)
        .map(|i| Vec::<f64>::try_from(t.get(i).to_kind(Kind::Double)).unwrap())
        .collect()
}

#[test]
fn sgd_steps_match_plain_rust() {
    let mut rng = Lcg(11);
    let x = rng.matrix(8, 4);
    let y: Vec<i64> = vec![0, 1, 2, 0, 1, 2, 2, 1];
    let mut probe = LinearProbe::new(4, 3, 5, Device::Cpu);
    let mut plain = PlainProbe {
        w: to_vec2(&probe.weight),
        b: Vec::<f64>::try_from(probe.bias.to_kind(Kind::Double)).unwrap(),
        bw: None,
        bb: None,
    };
    // PyTorch's default init: U(-1/sqrt(d), 1/sqrt(d)).
    assert!(plain.w.iter().flatten().all(|v| v.abs() <= 0.5));
    let (xt, yt) = (tensor(&x), Tensor::from_slice(&y));
    for (step, lr) in [0.3, 0.2, 0.1, 0.05].into_iter().enumerate() {
        // Alternate full batch and a half batch.
        let (xs, ys, xr, yr) = if step % 2 == 0 {
            (xt.shallow_clone(), yt.shallow_clone(), x.clone(), y.clone())
        } else {
            (
                xt.narrow(0, 0, 4),
                yt.narrow(0, 0, 4),
                x[..4].to_vec(),
                y[..4].to_vec(),
            )
        };
        probe.sgd_step(&xs, &ys, lr, 0.9, 1e-2);
        plain.step(&xr, &yr, lr, 0.9, 1e-2);
    }
    let w = to_vec2(&probe.weight);
    for (a, b) in w.iter().flatten().zip(plain.w.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    let b = Vec::<f64>::try_from(probe.bias.to_kind(Kind::Double)).unwrap();
    for (a, e) in b.iter().zip(&plain.b) {
        assert!((a - e).abs() < 1e-5, "{a} vs {e}");
    }
}

#[test]
fn probe_reaches_100_percent_on_separable_data() {
    // Three classes around three orthogonal directions, with small noise.
    let mut rng = Lcg(3);
    let make = |rng: &mut Lcg, n: usize| {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let c = i % 3;
            let mut row: Vec<f64> = (0..6).map(|_| 0.2 * rng.next()).collect();
            row[c] += 1.0;
            row[c + 3] -= 0.5;
            x.push(row);
            y.push(c as i64);
        }
        (x, y)
    };
    let (x, y) = make(&mut rng, 90);
    let (xt, yt) = make(&mut rng, 60);
    let config = ProbeConfig {
        epochs: 20,
        batch: 16,
        seed: 1,
        ..ProbeConfig::default()
    };
    let mut losses = Vec::new();
    let probe = train_probe(
        &tensor(&x),
        &Tensor::from_slice(&y),
        3,
        &config,
        Device::Cpu,
        &mut |_, l| losses.push(l),
    )
    .unwrap();
    assert_eq!(losses.len(), 20);
    assert!(losses[19] < losses[0] / 4.0, "{losses:?}");
    let c = classification(&probe.logits(&tensor(&xt)), &Tensor::from_slice(&yt), 3);
    assert_eq!(c.top1, 1.0);
    assert_eq!(c.per_class, vec![1.0, 1.0, 1.0]);
    // A diverging learning rate is reported, not hidden.
    let err = train_probe(
        &(tensor(&x) * 1e20),
        &Tensor::from_slice(&y),
        3,
        &ProbeConfig { lr: 1e30, ..config },
        Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("diverged"), "{err}");
}
