//! k-means with k-means++ seeding (Arthur and Vassilvitskii), seeded and repeatable.

use crate::error::{GraphError, Result};
use rand::Rng;

/// k-means settings.
#[derive(Clone, Debug)]
pub struct KMeansConfig {
    /// Number of clusters (default 2).
    pub clusters: usize,
    /// Independent k-means++ restarts; the lowest inertia wins (default 10).
    pub restarts: usize,
    /// Lloyd iterations per restart at most (default 300).
    pub max_iter: usize,
    /// Random seed (default 0).
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self {
            clusters: 2,
            restarts: 10,
            max_iter: 300,
            seed: 0,
        }
    }
}

/// A clustering: labels, centroids (k x dim, row-major) and inertia (sum of squared distances).
#[derive(Clone, Debug)]
pub struct KMeansResult {
    /// Cluster of every point, in 0..k.
    pub labels: Vec<usize>,
    /// Row-major k x dim centroids.
    pub centroids: Vec<f64>,
    /// Sum of squared distances of points to their centroids.
    pub inertia: f64,
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Clusters the rows of `points` (n x dim, row-major) into `k` clusters (`config.clusters` is
/// overridden by `k`).
pub fn kmeans(points: &[f64], n: usize, k: usize, config: &KMeansConfig) -> Result<KMeansResult> {
    if k == 0 || k > n {
        return Err(GraphError::TooManyClusters {
            clusters: k,
            points: n,
        });
    }
    if n == 0 || !points.len().is_multiple_of(n) {
        return Err(GraphError::Shape {
            what: "k-means points",
            expected: format!("a multiple of n = {n}"),
            got: points.len().to_string(),
        });
    }
    let dim = points.len() / n;
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let mut best: Option<KMeansResult> = None;
    for restart in 0..config.restarts.max(1) {
        let mut rng = crate::rng::seeded(config.seed, restart as u64);
        // k-means++ seeding: next centre drawn with probability proportional to D(x)^2.
        let mut centroids = Vec::with_capacity(k * dim);
        let first = rng.gen_range(0..n);
        centroids.extend_from_slice(row(first));
        let mut d2: Vec<f64> = (0..n).map(|i| sq_dist(row(i), row(first))).collect();
        for _ in 1..k {
            let total: f64 = d2.iter().sum();
            let pick = if total <= 0.0 {
                rng.gen_range(0..n)
            } else {
                let mut u = rng.gen::<f64>() * total;
                let mut pick = n - 1;
                for (i, &d) in d2.iter().enumerate() {
                    if u < d {
                        pick = i;
                        break;
                    }
                    u -= d;
                }
                pick
            };
            centroids.extend_from_slice(row(pick));
            for (i, d) in d2.iter_mut().enumerate() {
                *d = d.min(sq_dist(row(i), row(pick)));
            }
        }
        // Lloyd iterations.
        let mut labels = vec![0usize; n];
        for iter in 0..config.max_iter {
            let mut changed = false;
            for (i, label) in labels.iter_mut().enumerate() {
                let (mut bc, mut bd) = (0, f64::INFINITY);
                for c in 0..k {
                    let d = sq_dist(row(i), &centroids[c * dim..(c + 1) * dim]);
                    if d < bd {
                        bd = d;
                        bc = c;
                    }
                }
                if *label != bc || iter == 0 {
                    changed |= *label != bc;
                    *label = bc;
                }
            }
            let mut sums = vec![0.0; k * dim];
            let mut counts = vec![0usize; k];
            for i in 0..n {
                counts[labels[i]] += 1;
                for (s, x) in sums[labels[i] * dim..(labels[i] + 1) * dim]
                    .iter_mut()
                    .zip(row(i))
                {
                    *s += x;
                }
            }
            for c in 0..k {
                if counts[c] > 0 {
                    for t in 0..dim {
                        centroids[c * dim + t] = sums[c * dim + t] / counts[c] as f64;
                    }
                }
            }
            if !changed && iter > 0 {
                break;
            }
        }
        let inertia = (0..n)
            .map(|i| sq_dist(row(i), &centroids[labels[i] * dim..(labels[i] + 1) * dim]))
            .sum();
        if best.as_ref().is_none_or(|b| inertia < b.inertia) {
            best = Some(KMeansResult {
                labels,
                centroids,
                inertia,
            });
        }
    }
    Ok(best.expect("at least one restart"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::adjusted_rand_index;

    #[test]
    fn separated_blobs_are_found() {
        let mut rng = crate::rng::seeded(5, 0);
        let centres = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        let mut pts = Vec::new();
        let mut truth = Vec::new();
        for (c, &(x, y)) in centres.iter().enumerate() {
            for _ in 0..30 {
                pts.push(x + rng.gen::<f64>() - 0.5);
                pts.push(y + rng.gen::<f64>() - 0.5);
                truth.push(c);
            }
        }
        let res = kmeans(&pts, 90, 3, &KMeansConfig::default()).unwrap();
        assert_eq!(adjusted_rand_index(&res.labels, &truth).unwrap(), 1.0);
        let again = kmeans(&pts, 90, 3, &KMeansConfig::default()).unwrap();
        assert_eq!(res.labels, again.labels, "seeded runs repeat");
    }

    #[test]
    fn more_clusters_than_points_is_refused() {
        let e = kmeans(&[0.0, 1.0], 2, 3, &KMeansConfig::default())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "asked for 3 clusters but there are only 2 points");
    }
}
