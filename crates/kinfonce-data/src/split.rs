//! Seeded, class-balanced validation splits and subsets.

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::rng::CounterRng;

/// Stream tags, so the split and the subset never share random numbers.
const VAL_STREAM: u64 = 0x5641_4C5F_5350_4C54; // "VAL_SPLT"
const SUBSET_STREAM: u64 = 0x5355_4253_4554_5F5F; // "SUBSET__"

/// Indices of `labels` grouped by class (`num_classes` 0: one group).
fn by_class(labels: &[u32], num_classes: usize) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); num_classes.max(1)];
    for (i, &l) in labels.iter().enumerate() {
        groups[l as usize].push(i);
    }
    groups
}

/// Splits the indices of `data` into (train, val): in every class, a seeded shuffle, then the
/// first `round(fraction * class size)` go to `val`. Both lists come back in ascending order.
/// CIFAR-10 at 0.1: 4,500 + 500 per class, 45,000 / 5,000 in all.
pub fn class_balanced_val_split(
    data: &Dataset,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut train = Vec::with_capacity(data.len());
    let mut val = Vec::new();
    for (c, mut idx) in by_class(data.labels(), data.num_classes())
        .into_iter()
        .enumerate()
    {
        CounterRng::new(&[VAL_STREAM, seed, c as u64]).shuffle(&mut idx);
        let n_val = (fraction * idx.len() as f64).round() as usize;
        val.extend_from_slice(&idx[..n_val]);
        train.extend_from_slice(&idx[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// A class-balanced, seeded subset of size `n` of `pool` (indices into `data`); returns
/// positions in `pool`, ascending. Every class gets `n / K` (the first `n % K` classes one more);
/// a class with fewer images gives all it has and the shortfall is drawn from the rest.
pub fn class_balanced_subset(
    data: &Dataset,
    pool: &[usize],
    n: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    if n > pool.len() {
        return Err(DataError::param(
            "subset",
            n,
            format!("at most the {} training images", pool.len()),
        ));
    }
    let k = data.num_classes().max(1);
    let pool_labels: Vec<u32> = pool.iter().map(|&i| data.labels()[i]).collect();
    let mut chosen = Vec::with_capacity(n);
    let mut rest = Vec::new();
    for (c, mut idx) in by_class(&pool_labels, data.num_classes())
        .into_iter()
        .enumerate()
    {
        CounterRng::new(&[SUBSET_STREAM, seed, c as u64]).shuffle(&mut idx);
        let quota = (n / k + usize::from(c < n % k)).min(idx.len());
        chosen.extend_from_slice(&idx[..quota]);
        rest.extend_from_slice(&idx[quota..]);
    }
    if chosen.len() < n {
        CounterRng::new(&[SUBSET_STREAM, seed, u64::MAX]).shuffle(&mut rest);
        let missing = n - chosen.len();
        chosen.extend_from_slice(&rest[..missing]);
    }
    chosen.sort_unstable();
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(per_class: &[usize]) -> Dataset {
        let labels: Vec<u32> = per_class
            .iter()
            .enumerate()
            .flat_map(|(c, &n)| std::iter::repeat_n(c as u32, n))
            .collect();
        let names = (0..per_class.len()).map(|c| c.to_string()).collect();
        Dataset::new(vec![0; labels.len()], labels, 1, 1, 1, names).unwrap()
    }

    #[test]
    fn val_split_is_balanced_disjoint_and_seeded() {
        let d = toy(&[50, 50, 50]);
        let (tr, va) = class_balanced_val_split(&d, 0.1, 7);
        assert_eq!((tr.len(), va.len()), (135, 15));
        let counts = d.select(&va).unwrap().class_counts();
        assert_eq!(counts, vec![5, 5, 5]);
        let mut all = [tr.clone(), va.clone()].concat();
        all.sort();
        assert_eq!(all, (0..150).collect::<Vec<_>>());
        assert_eq!(class_balanced_val_split(&d, 0.1, 7).1, va);
        assert_ne!(class_balanced_val_split(&d, 0.1, 8).1, va);
    }

    #[test]
    fn subset_quota_and_shortfall() {
        let d = toy(&[10, 2, 10]);
        let pool: Vec<usize> = (0..22).collect();
        let s = class_balanced_subset(&d, &pool, 9, 1).unwrap();
        assert_eq!(s.len(), 9);
        let counts = d.select(&s).unwrap().class_counts();
        assert_eq!(counts[1], 2, "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 9);
        assert!(counts[0] >= 3 && counts[2] >= 3);
        let err = class_balanced_subset(&d, &pool, 23, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("subset") && err.contains("22"), "{err}");
    }
}
