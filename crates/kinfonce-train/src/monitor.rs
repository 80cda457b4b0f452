//! Cheap monitors of representation quality: the weighted k-NN classifier (the per-epoch
//! `knn_top1`) and collapse diagnostics (alignment, uniformity, effective rank).

use tch::{Kind, Tensor};

/// Weighted k-NN accuracy (Wu et al. 2018, InstDisc; monitored so by solo-learn, not by the
/// official code, which has no k-NN monitor): features are
/// L2-normalised; a query's k most cosine-similar bank items vote for their class with weight
/// exp(sim / t); the class with the largest total wins. Returns top-1 accuracy in [0, 1].
///
/// # Shapes
/// `bank` `[N, d]`, `bank_labels` `[N]` (int64), `queries` `[M, d]`, `query_labels` `[M]`.
pub fn knn_top1(
    bank: &Tensor,
    bank_labels: &Tensor,
    queries: &Tensor,
    query_labels: &Tensor,
    k: i64,
    temperature: f64,
    num_classes: i64,
) -> f64 {
    let _guard = tch::no_grad_guard();
    let m = queries.size()[0];
    if bank.size()[0] == 0 || m == 0 {
        return 0.0;
    }
    let scores = knn_scores(bank, bank_labels, queries, k, temperature, num_classes);
    let query_labels = query_labels.to_device(scores.device()).to_kind(Kind::Int64);
    let hits = scores
        .argmax(1, false)
        .eq_tensor(&query_labels)
        .sum(Kind::Int64);
    i64::try_from(hits).unwrap_or(0) as f64 / m as f64
}

/// The class scores of the weighted k-NN vote: score(q, c) = sum over the k bank items most
/// cosine-similar to q that have label c of exp(cos(q, b) / t). Queries are processed in
/// chunks of 512 so memory stays at 512 x N.
///
/// # Shapes
/// `bank` `[N, d]`, `bank_labels` `[N]` (int64), `queries` `[M, d]`; returns f32 `[M, C]`.
pub fn knn_scores(
    bank: &Tensor,
    bank_labels: &Tensor,
    queries: &Tensor,
    k: i64,
    temperature: f64,
    num_classes: i64,
) -> Tensor {
    let _guard = tch::no_grad_guard();
    let bank = crate::projection::normalize_p(&bank.to_kind(Kind::Float), 2.0);
    let queries = crate::projection::normalize_p(&queries.to_kind(Kind::Float), 2.0);
    let bank_labels = bank_labels.to_device(bank.device()).to_kind(Kind::Int64);
    let n = bank.size()[0];
    let m = queries.size()[0];
    let k = k.min(n);
    let chunk = 512;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < m {
        let len = chunk.min(m - start);
        let q = queries.narrow(0, start, len);
        let sim = q.matmul(&bank.tr());
        let (values, index) = sim.topk(k, 1, true, true);
        let labels = bank_labels
            .index_select(0, &index.flatten(0, -1))
            .reshape([len, k]);
        let weights = (values / temperature).exp();
        parts.push(
            Tensor::zeros([len, num_classes], (Kind::Float, bank.device()))
                .scatter_add(1, &labels, &weights),
        );
        start += len;
    }
    if parts.is_empty() {
        return Tensor::zeros([0, num_classes], (Kind::Float, bank.device()));
    }
    Tensor::cat(&parts, 0)
}

/// Collapse diagnostics of a batch of projections.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Diagnostics {
    /// Alignment (Wang & Isola 2020): mean ||z1_i - z2_i||^2 over pairs (0: views agree).
    pub alignment: f64,
    /// Uniformity: log mean_{i != j} exp(-2 ||z_i - z_j||^2) over all rows of [z1; z2]
    /// (about -4 for points spread on the sphere; 0 when collapsed).
    pub uniformity: f64,
    /// Effective rank (Roy & Vetterli 2007): exp of the entropy of the normalised singular
    /// values of the centred [z1; z2] (1 when collapsed to a line, up to d).
    pub effective_rank: f64,
}

/// Diagnostics of `z1`, `z2` (`[B, d]` each, B >= 2).
pub fn diagnostics(z1: &Tensor, z2: &Tensor) -> Diagnostics {
    let _guard = tch::no_grad_guard();
    let z1 = z1.to_kind(Kind::Double);
    let z2 = z2.to_kind(Kind::Double);
    let alignment = f64::try_from(
        (&z1 - &z2)
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
            .mean(Kind::Double),
    )
    .unwrap_or(f64::NAN);
    let z = Tensor::cat(&[&z1, &z2], 0);
    let n = z.size()[0];
    let d2 = Tensor::cdist(&z, &z, 2.0, None::<i64>).square();
    let off = Tensor::eye(n, (Kind::Bool, z.device())).logical_not();
    let vals = (d2 * -2.0).masked_select(&off);
    let uniformity =
        f64::try_from(vals.logsumexp([0], false)).unwrap_or(f64::NAN) - ((n * (n - 1)) as f64).ln();
    let centred = &z - z.mean_dim([0i64].as_slice(), true, Kind::Double);
    let (_, s, _) = centred.svd(true, false);
    let total = f64::try_from(s.sum(Kind::Double)).unwrap_or(0.0);
    let effective_rank = if total > 0.0 {
        let p = s / total;
        let entropy = -f64::try_from((&p * (&p + 1e-300).log()).sum(Kind::Double)).unwrap_or(0.0);
        entropy.exp()
    } else {
        0.0
    };
    Diagnostics {
        alignment,
        uniformity,
        effective_rank,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn knn_hand_checked() {
        // Bank on two axes; query near axis 0 -> class 0; near axis 1 -> class 1.
        let bank = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9]).reshape([4, 2]);
        let labels = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let q = Tensor::from_slice(&[1.0f32, 0.2, 0.3, 1.0, 1.0, 0.0]).reshape([3, 2]);
        let ql = Tensor::from_slice(&[0i64, 1, 1]);
        let acc = knn_top1(&bank, &labels, &q, &ql, 200, 0.1, 2);
        assert!((acc - 2.0 / 3.0).abs() < 1e-12, "{acc}");
        // k = 1 is nearest-neighbour.
        let acc = knn_top1(
            &bank,
            &labels,
            &q.narrow(0, 0, 2),
            &ql.narrow(0, 0, 2),
            1,
            0.1,
            2,
        );
        assert_eq!(acc, 1.0);
    }

    /// The vote written out per query: sort the bank by cosine similarity, let the first
    /// min(k, N) vote with exp(sim / t), take the first class with the largest total.
    fn brute_force(bank: &[Vec<f32>], labels: &[i64], q: &[f32], k: usize, t: f64) -> i64 {
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let mut sims: Vec<(f64, i64)> = bank
            .iter()
            .zip(labels)
            .map(|(b, &l)| {
                let dot: f32 = b.iter().zip(q).map(|(x, y)| x * y).sum();
                (f64::from(dot / (norm(b) * norm(q))), l)
            })
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut score = [0.0f64; 3];
        for (s, l) in sims.into_iter().take(k) {
            score[l as usize] += (s / t).exp();
        }
        (0..3).fold(0, |best, c| if score[c] > score[best] { c } else { best }) as i64
    }

    #[test]
    fn knn_agrees_with_brute_force_for_every_k_on_tiny_banks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [1usize, 2, 5, 9] {
            let bank: Vec<Vec<f32>> = (0..n)
                .map(|_| (0..4).map(|_| rng.gen_range(-1.0..1.0)).collect())
                .collect();
            // Class 2 is empty in the bank.
            let labels: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
            let queries: Vec<Vec<f32>> = (0..7)
                .map(|_| (0..4).map(|_| rng.gen_range(-1.0..1.0)).collect())
                .collect();
            let flat = |rows: &[Vec<f32>]| {
                Tensor::from_slice(&rows.concat()).reshape([rows.len() as i64, 4])
            };
            for k in [1, n.saturating_sub(1).max(1), n, n + 3, 200] {
                let scores = knn_scores(
                    &flat(&bank),
                    &Tensor::from_slice(&labels),
                    &flat(&queries),
                    k as i64,
                    0.1,
                    3,
                );
                let got = Vec::<i64>::try_from(scores.argmax(1, false)).unwrap();
                let want: Vec<i64> = queries
                    .iter()
                    .map(|q| brute_force(&bank, &labels, q, k, 0.1))
                    .collect();
                assert_eq!(got, want, "bank {n}, k {k}");
                // With k at or above the bank, the monitor still votes (never a flat 0%).
                let truth = Tensor::from_slice(&want);
                let acc = knn_top1(
                    &flat(&bank),
                    &Tensor::from_slice(&labels),
                    &flat(&queries),
                    &truth,
                    k as i64,
                    0.1,
                    3,
                );
                assert_eq!(acc, 1.0, "bank {n}, k {k}");
            }
        }
    }

    #[test]
    fn diagnostics_of_collapse_and_spread() {
        let ones = Tensor::ones([8, 4], (Kind::Float, Device::Cpu)) * 0.5;
        let d = diagnostics(&ones, &ones);
        assert_eq!(d.alignment, 0.0);
        assert!(d.uniformity.abs() < 1e-12);
        assert_eq!(d.effective_rank, 0.0);
        // Four orthonormal directions, each pair identical: alignment 0, distances 2 between
        // different directions: uniformity = log((8 * 7 - 8 * 0) ... ) computed by hand below.
        let e = Tensor::eye(4, (Kind::Float, Device::Cpu));
        let d = diagnostics(&e, &e);
        assert_eq!(d.alignment, 0.0);
        // Off-diagonal pairs of 8 rows: 4 pairs (x2 ordered) at distance 0, 48 ordered at d^2 = 2.
        let expected = ((8.0 + 48.0 * (-4.0f64).exp()) / 56.0).ln();
        assert!(
            (d.uniformity - expected).abs() < 1e-12,
            "{} vs {expected}",
            d.uniformity
        );
        // Centred rows of the identity have three equal singular values.
        assert!(
            (d.effective_rank - 3.0).abs() < 1e-9,
            "{}",
            d.effective_rank
        );
    }
}
