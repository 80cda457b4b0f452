//! Clustering agreement (adjusted Rand index, normalised mutual information) and principal
//! angles between subspaces.

use crate::error::{GraphError, Result};
use faer::Mat;
use std::collections::HashMap;

/// Contingency table and the two marginals.
type Contingency = (
    HashMap<(usize, usize), f64>,
    HashMap<usize, f64>,
    HashMap<usize, f64>,
);

fn contingency(a: &[usize], b: &[usize]) -> Result<Contingency> {
    if a.len() != b.len() {
        return Err(GraphError::Shape {
            what: "label vectors",
            expected: a.len().to_string(),
            got: b.len().to_string(),
        });
    }
    let mut table = HashMap::new();
    let mut ra = HashMap::new();
    let mut rb = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_insert(0.0) += 1.0;
        *ra.entry(x).or_insert(0.0) += 1.0;
        *rb.entry(y).or_insert(0.0) += 1.0;
    }
    Ok((table, ra, rb))
}

fn choose2(x: f64) -> f64 {
    x * (x - 1.0) / 2.0
}

/// Adjusted Rand index (Hubert and Arabie): 1 for identical partitions (up to renaming),
/// expectation 0 under random labelling.
///
/// ARI = (sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E),
/// E = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2).
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> Result<f64> {
    let (table, ra, rb) = contingency(a, b)?;
    let n = a.len() as f64;
    let index: f64 = table.values().map(|&x| choose2(x)).sum();
    let sa: f64 = ra.values().map(|&x| choose2(x)).sum();
    let sb: f64 = rb.values().map(|&x| choose2(x)).sum();
    let expected = sa * sb / choose2(n);
    let max = 0.5 * (sa + sb);
    if (max - expected).abs() < 1e-300 {
        // Both partitions trivial (one cluster each, or all singletons): identical.
        return Ok(1.0);
    }
    Ok((index - expected) / (max - expected))
}

/// Normalised mutual information with the arithmetic-mean normalisation:
/// NMI = I(A; B) / ((H(A) + H(B)) / 2) (natural logarithms; 1 when both entropies are 0).
pub fn normalized_mutual_information(a: &[usize], b: &[usize]) -> Result<f64> {
    let (table, ra, rb) = contingency(a, b)?;
    let n = a.len() as f64;
    let h = |m: &HashMap<usize, f64>| -> f64 { m.values().map(|&x| -(x / n) * (x / n).ln()).sum() };
    let (ha, hb) = (h(&ra), h(&rb));
    let mi: f64 = table
        .iter()
        .map(|(&(x, y), &nxy)| (nxy / n) * (n * nxy / (ra[&x] * rb[&y])).ln())
        .sum();
    if ha + hb <= 0.0 {
        return Ok(1.0);
    }
    Ok((mi / (0.5 * (ha + hb))).clamp(0.0, 1.0))
}

/// Orthonormal basis of the column span (thin QR).
fn orthonormal_basis(m: &Mat<f64>) -> Mat<f64> {
    let qr = m.qr();
    qr.compute_thin_Q()
}

/// Principal angles (radians, ascending) between the column spans of `a` and `b` (both n x k):
/// arccos of the singular values of Q_a^T Q_b.
pub fn principal_angles(a: &Mat<f64>, b: &Mat<f64>) -> Result<Vec<f64>> {
    if a.nrows() != b.nrows() {
        return Err(GraphError::Shape {
            what: "principal angles",
            expected: format!("{} rows", a.nrows()),
            got: b.nrows().to_string(),
        });
    }
    let qa = orthonormal_basis(a);
    let qb = orthonormal_basis(b);
    let m = qa.transpose() * &qb;
    let sv = m.singular_values().map_err(|e| GraphError::NoConvergence {
        what: "SVD for principal angles",
        detail: format!("{e:?}"),
    })?;
    let mut angles: Vec<f64> = sv.iter().map(|s| s.clamp(-1.0, 1.0).acos()).collect();
    angles.sort_by(|x, y| x.total_cmp(y));
    Ok(angles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_by_hand() {
        assert_eq!(
            adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7]).unwrap(),
            1.0
        );
        // a = {0,0,0,1,1,1}, b = {0,0,1,1,2,2}: table n_ij = [[2,1,0],[0,1,2]],
        // index = 1 + 1 = 2, sa = 3 + 3 = 6, sb = 1 + 1 + 1 = 3, E = 18 / 15 = 1.2,
        // max = 4.5, ARI = 0.8 / 3.3.
        let ari = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]).unwrap();
        assert!((ari - 0.8 / 3.3).abs() < 1e-12, "{ari}");
        assert!(adjusted_rand_index(&[0, 1], &[0]).is_err());
    }

    #[test]
    fn nmi_by_hand() {
        assert!(
            (normalized_mutual_information(&[0, 0, 1, 1], &[1, 1, 0, 0]).unwrap() - 1.0).abs()
                < 1e-12
        );
        // Independent: a = {0,0,1,1}, b = {0,1,0,1}: I = 0.
        assert!(
            normalized_mutual_information(&[0, 0, 1, 1], &[0, 1, 0, 1])
                .unwrap()
                .abs()
                < 1e-12
        );
        // a = {0,0,1,1}, b = {0,0,0,1}: H(a) = ln 2, H(b) = -(3/4 ln 3/4 + 1/4 ln 1/4),
        // I = 1/2 ln(2 * 2/3)... computed from the table [[2,0],[1,1]]:
        let n = 4.0f64;
        let i = (2.0 / n) * ((n * 2.0) / (2.0 * 3.0)).ln()
            + (1.0 / n) * ((n * 1.0) / (2.0 * 3.0)).ln()
            + (1.0 / n) * ((n * 1.0) / (2.0 * 1.0)).ln();
        let ha = 2f64.ln();
        let hb = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        let nmi = normalized_mutual_information(&[0, 0, 1, 1], &[0, 0, 0, 1]).unwrap();
        assert!((nmi - i / (0.5 * (ha + hb))).abs() < 1e-12);
    }

    #[test]
    fn principal_angles_by_hand() {
        // span(e1) vs span(cos t e1 + sin t e2): angle t.
        let t = 0.3f64;
        let a = Mat::from_fn(3, 1, |i, _| if i == 0 { 2.0 } else { 0.0 });
        let b = Mat::from_fn(3, 1, |i, _| [t.cos(), t.sin(), 0.0][i]);
        let ang = principal_angles(&a, &b).unwrap();
        assert!((ang[0] - t).abs() < 1e-12);
    }
}
