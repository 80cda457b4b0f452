//! The fused, blocked InfoNCE engine on the CPU.
//!
//! For anchors a_i, candidates c_j and logits s_ij = ln K(a_i, c_j):
//!
//! L = (1 / n) sum_i [ LSE_{j in D(i)} s_ij - s_i,pos(i) ]
//!
//! where D(i) is every candidate but the excluded one (the anchor itself in SimCLR). Two passes
//! over tiles of `ROWS x COLS` pairs: the first finds each row's log-sum-exp online, the second
//! recomputes the tile and turns d L / d s_ij = (softmax_ij - [j = pos(i)]) / n into gradients
//! with two GEMMs. No N x N matrix is ever held: memory is O(N d + threads ROWS COLS).
//!
//! The positive pair is evaluated exactly from the difference of its rows, never in the
//! |x|^2 + |y|^2 - 2 x.y form (that loses all precision for near-identical views), and its
//! whole gradient is applied from that exact value.

use multiversion::multiversion;
use rayon::prelude::*;

use crate::kernel::{Geometry, LogKernel};
use crate::matrix::{Mat, MatRef};
use crate::real::Real;

/// Anchor rows per tile.
const ROWS: usize = 64;
/// Candidate columns per tile.
const COLS: usize = 256;

/// Where each anchor's positive comes from.
#[derive(Debug, Clone, Copy)]
pub enum Positives<'a, T> {
    /// `pos[i]` indexes the candidates; the positive is part of the softmax denominator.
    Index(&'a [usize]),
    /// Row i of this matrix is anchor i's positive, outside the denominator (MoCo's key).
    Rows(MatRef<'a, T>),
}

/// Loss and gradients of [`infonce`](crate::infonce).
#[derive(Debug, Clone)]
pub struct InfoNceGrads<T> {
    pub loss: f64,
    pub anchors: Mat<T>,
    pub candidates: Mat<T>,
    /// Gradient for [`Positives::Rows`].
    pub positives: Option<Mat<T>>,
}

/// Geometry value t(x, y) of one pair, computed directly from the rows.
#[inline]
fn pair_value<T: Real>(g: Geometry, x: &[T], y: &[T]) -> T {
    match g {
        Geometry::SqEuclid => x.iter().zip(y).map(|(&a, &b)| (a - b) * (a - b)).sum(),
        Geometry::Dot => x.iter().zip(y).map(|(&a, &b)| a * b).sum(),
        Geometry::L1 => x.iter().zip(y).map(|(&a, &b)| (a - b).abs()).sum(),
        Geometry::LInf => x
            .iter()
            .zip(y)
            .fold(T::ZERO, |m, (&a, &b)| m.max((a - b).abs())),
    }
}

/// out += w * d t(x, y) / d x.
#[inline]
fn add_pair_grad<T: Real>(g: Geometry, w: T, x: &[T], y: &[T], out: &mut [T]) {
    match g {
        Geometry::SqEuclid => {
            let w2 = w + w;
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
                *o += w2 * (a - b);
            }
        }
        Geometry::Dot => {
            for (o, &b) in out.iter_mut().zip(y) {
                *o += w * b;
            }
        }
        Geometry::L1 => {
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
                *o += w * sign(a - b);
            }
        }
        Geometry::LInf => {
            let (mut k, mut best) = (0, T::NEG_INFINITY);
            for (idx, (&a, &b)) in x.iter().zip(y).enumerate() {
                if (a - b).abs() > best {
                    best = (a - b).abs();
                    k = idx;
                }
            }
            out[k] += w * sign(x[k] - y[k]);
        }
    }
}

#[inline(always)]
fn sign<T: Real>(v: T) -> T {
    if v > T::ZERO {
        T::ONE
    } else if v < T::ZERO {
        -T::ONE
    } else {
        T::ZERO
    }
}

fn squared_norms<T: Real>(m: MatRef<'_, T>) -> Vec<T> {
    (0..m.rows)
        .map(|r| m.row(r).iter().map(|&v| v * v).sum())
        .collect()
}

/// dst (m x n, row-major) = scale * lhs * rhs^T (+ dst when `accumulate`), with lhs m x k and
/// rhs n x k, both row-major.
#[allow(clippy::too_many_arguments)]
fn gemm_nt<T: Real>(
    dst: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    lhs: &[T],
    rhs: &[T],
    scale: T,
    accumulate: bool,
) {
    debug_assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= n * k);
    // SAFETY: the slices cover the strided extents checked above; gemm reads lhs/rhs and
    // writes dst only within m x n x k.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            T::ONE,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// dst (m x k) += scale * w * rhs, with w m x n (row stride `w_stride`) or, when `transpose`,
/// w^T where w is n x m; rhs n x k row-major.
#[allow(clippy::too_many_arguments)]
fn gemm_acc<T: Real>(
    dst: &mut [T],
    m: usize,
    k: usize,
    n: usize,
    w: &[T],
    w_stride: usize,
    transpose: bool,
    rhs: &[T],
    scale: T,
) {
    let (w_cs, w_rs) = if transpose {
        (w_stride as isize, 1)
    } else {
        (1, w_stride as isize)
    };
    // SAFETY: w covers (m - 1) * stride + n (or its transpose), rhs n x k, dst m x k.
    unsafe {
        gemm::gemm(
            m,
            k,
            n,
            dst.as_mut_ptr(),
            1,
            k as isize,
            true,
            w.as_ptr(),
            w_cs,
            w_rs,
            rhs.as_ptr(),
            1,
            k as isize,
            T::ONE,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// One tile of geometry values t(a_i, c_j), rows `r0..r0+m`, columns `c0..c0+n`.
struct TileGeometry<'a, T> {
    g: Geometry,
    a: MatRef<'a, T>,
    c: MatRef<'a, T>,
    a_sq: &'a [T],
    c_sq: &'a [T],
}

impl<T: Real> TileGeometry<'_, T> {
    fn fill(&self, r0: usize, m: usize, c0: usize, n: usize, t: &mut [T]) {
        let d = self.a.cols;
        let lhs = &self.a.data[r0 * d..(r0 + m) * d];
        let rhs = &self.c.data[c0 * d..(c0 + n) * d];
        match self.g {
            Geometry::Dot => gemm_nt(t, m, n, d, lhs, rhs, T::ONE, false),
            Geometry::SqEuclid => {
                gemm_nt(t, m, n, d, lhs, rhs, -T::ONE - T::ONE, false);
                add_norms(t, n, &self.a_sq[r0..r0 + m], &self.c_sq[c0..c0 + n]);
            }
            Geometry::L1 | Geometry::LInf => {
                for i in 0..m {
                    let x = self.a.row(r0 + i);
                    for j in 0..n {
                        t[i * n + j] = pair_value(self.g, x, self.c.row(c0 + j));
                    }
                }
            }
        }
    }
}

#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_norms<T: Real>(t: &mut [T], n: usize, a_sq: &[T], c_sq: &[T]) {
    for (row, &na) in t.chunks_exact_mut(n).zip(a_sq) {
        for (v, &nc) in row.iter_mut().zip(c_sq) {
            // Rounding can make a tiny squared distance negative.
            *v = (*v + na + nc).max(T::ZERO);
        }
    }
}

/// s = ln K(t) over a tile.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn log_kernel_tile<T: Real, K: LogKernel<T>>(k: &K, t: &mut [T]) {
    for v in t.iter_mut() {
        *v = k.log_k(*v);
    }
}

/// Lanes of the reductions below: independent accumulators let the compiler vectorise a
/// floating-point reduction it may not reorder.
const LANES: usize = 16;

#[inline(always)]
fn max_of<T: Real>(s: &[T]) -> T {
    let mut acc = [T::NEG_INFINITY; LANES];
    let chunks = s.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = acc[l].max(c[l]);
        }
    }
    acc.iter()
        .chain(tail)
        .fold(T::NEG_INFINITY, |m, &v| m.max(v))
}

#[inline(always)]
fn sum_exp_shifted<T: Real>(s: &[T], shift: T) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = s.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += (c[l] - shift).exp_fast();
        }
    }
    acc.iter().copied().sum::<T>() + tail.iter().map(|&v| (v - shift).exp_fast()).sum::<T>()
}

#[inline(always)]
fn sum_of<T: Real>(s: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = s.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().chain(tail).copied().sum()
}

/// Merges one row segment into a running (max, sum of exp(s - max)).
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn merge_lse<T: Real>(s: &[T], state: &mut (T, T)) {
    let max = state.0.max(max_of(s));
    if max == T::NEG_INFINITY {
        return;
    }
    let sum = sum_exp_shifted(s, max);
    state.1 = state.1 * (state.0 - max).exp_fast() + sum;
    state.0 = max;
}

/// Row sums of an m x n tile.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn row_sums<T: Real>(w: &[T], n: usize) -> Vec<T> {
    w.chunks_exact(n).map(sum_of).collect()
}

/// Column sums of an m x n tile.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn col_sums<T: Real>(w: &[T], n: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; n];
    for row in w.chunks_exact(n) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
    out
}

/// The gradient weight of every pair: w_ij = slope(t_ij) * (exp(s_ij - lse_i) [+ exp(s_ij -
/// lse_j) when `lse_cols` is given: the pair seen from both ends]) / n.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn weight_tile<T: Real, K: LogKernel<T>>(
    k: &K,
    t: &mut [T],
    n: usize,
    lse_rows: &[T],
    lse_cols: Option<&[T]>,
    inv_count: T,
) {
    // When the tile's log-sum-exps lie within a span whose exponentials are safe in f32,
    // exp(s - lse_j) is factored through exp(s - lse_i) instead of computed afresh.
    let col_factor = lse_cols.and_then(|lse_c| {
        let (lo, hi) = lse_rows
            .iter()
            .chain(lse_c)
            .fold((lse_c[0], lse_c[0]), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        (hi - lo < T::from_f64(60.0)).then(|| {
            let centre = T::from_f64(0.5) * (lo + hi);
            let b: Vec<T> = lse_c.iter().map(|&l| (centre - l).exp_fast()).collect();
            (centre, b)
        })
    });
    for (i, row) in t.chunks_exact_mut(n).enumerate() {
        let lse_i = lse_rows[i];
        match (lse_cols, &col_factor) {
            (Some(_), Some((centre, b))) => {
                // p_ji = p_ij exp(lse_i - lse_j) = p_ij a_i b_j: one exp per pair.
                let a_i = (lse_i - *centre).exp_fast();
                for (v, &b_j) in row.iter_mut().zip(b) {
                    let (s, slope) = k.log_k_slope(*v);
                    *v = slope * (s - lse_i).exp_fast() * (T::ONE + a_i * b_j) * inv_count;
                }
            }
            (Some(lse_c), None) => {
                for (v, &lse_j) in row.iter_mut().zip(lse_c) {
                    let (s, slope) = k.log_k_slope(*v);
                    *v = slope * ((s - lse_i).exp_fast() + (s - lse_j).exp_fast()) * inv_count;
                }
            }
            (None, _) => {
                for v in row.iter_mut() {
                    let (s, slope) = k.log_k_slope(*v);
                    *v = slope * (s - lse_i).exp_fast() * inv_count;
                }
            }
        }
    }
}

/// out (rows of x) += sum_j w_ij d t(x_i, y_j) / d x_i for a tile of weights.
/// `w` is m x n (row stride n), or n x m read transposed when `transpose`.
#[allow(clippy::too_many_arguments)]
fn apply_weights<T: Real>(
    g: Geometry,
    w: &[T],
    transpose: bool,
    m: usize,
    n: usize,
    x: &[T],
    y: &[T],
    d: usize,
    out: &mut [T],
) {
    let wt = |i: usize, j: usize| {
        if transpose {
            w[j * m + i]
        } else {
            w[i * n + j]
        }
    };
    let stride = if transpose { m } else { n };
    match g {
        Geometry::Dot => gemm_acc(out, m, d, n, w, stride, transpose, y, T::ONE),
        Geometry::SqEuclid => {
            let two = T::ONE + T::ONE;
            let sums = if transpose {
                col_sums(w, m)
            } else {
                row_sums(w, n)
            };
            for (i, &row_sum) in sums.iter().enumerate() {
                for (o, &v) in out[i * d..(i + 1) * d].iter_mut().zip(&x[i * d..]) {
                    *o += two * row_sum * v;
                }
            }
            gemm_acc(out, m, d, n, w, stride, transpose, y, -two);
        }
        Geometry::L1 | Geometry::LInf => {
            for i in 0..m {
                let xi = &x[i * d..(i + 1) * d];
                let oi = &mut out[i * d..(i + 1) * d];
                for j in 0..n {
                    let wij = wt(i, j);
                    if wij != T::ZERO {
                        add_pair_grad(g, wij, xi, &y[j * d..(j + 1) * d], oi);
                    }
                }
            }
        }
    }
}

/// Per-anchor data shared by both passes.
struct Anchors<'a, T> {
    /// Excluded candidate per anchor (usize::MAX: none).
    exclude: Vec<usize>,
    /// Positive candidate per anchor for `Positives::Index` (usize::MAX otherwise).
    pos: Vec<usize>,
    /// Exact logit and slope of the positive pair.
    s_pos: Vec<T>,
    slope_pos: Vec<T>,
    positives: Positives<'a, T>,
}

impl<'a, T: Real> Anchors<'a, T> {
    fn new<K: LogKernel<T>>(
        k: &K,
        a: MatRef<'a, T>,
        c: MatRef<'a, T>,
        positives: Positives<'a, T>,
        exclude: Option<&[usize]>,
    ) -> Self {
        let g = k.geometry();
        let n = a.rows;
        let pos = match positives {
            Positives::Index(p) => p.to_vec(),
            Positives::Rows(_) => vec![usize::MAX; n],
        };
        let (s_pos, slope_pos): (Vec<T>, Vec<T>) = (0..n)
            .into_par_iter()
            .map(|i| {
                let y = match positives {
                    Positives::Index(p) => c.row(p[i]),
                    Positives::Rows(r) => r.row(i),
                };
                k.log_k_slope(pair_value(g, a.row(i), y))
            })
            .unzip();
        Self {
            exclude: exclude.map_or_else(|| vec![usize::MAX; n], <[usize]>::to_vec),
            pos,
            s_pos,
            slope_pos,
            positives,
        }
    }

    /// Masks a logit tile: excluded pairs and the positive to -inf. The tiles sum the negatives
    /// only; the positive joins in f64 (see [`RowStats`]), which keeps ln(1 + tiny) exact in f32.
    fn mask_logits(&self, r0: usize, m: usize, c0: usize, n: usize, s: &mut [T]) {
        for i in 0..m {
            for idx in [self.exclude[r0 + i], self.pos[r0 + i]] {
                if (c0..c0 + n).contains(&idx) {
                    s[i * n + idx - c0] = T::NEG_INFINITY;
                }
            }
        }
    }

    /// Zeroes the weights of excluded and positive pairs (the positive's gradient is applied
    /// exactly elsewhere). With `both_ends`, also the pairs where the column is the anchor.
    fn mask_weights(&self, r0: usize, m: usize, c0: usize, n: usize, w: &mut [T], both_ends: bool) {
        for i in 0..m {
            for idx in [self.exclude[r0 + i], self.pos[r0 + i]] {
                if (c0..c0 + n).contains(&idx) {
                    w[i * n + idx - c0] = T::ZERO;
                }
            }
        }
        if both_ends {
            for j in 0..n {
                for idx in [self.exclude[c0 + j], self.pos[c0 + j]] {
                    if (r0..r0 + m).contains(&idx) {
                        w[(idx - r0) * n + j] = T::ZERO;
                    }
                }
            }
        }
    }
}

/// Per-anchor results of pass 1.
struct RowStats<T> {
    /// ln of the softmax denominator.
    lse: Vec<T>,
    /// Mean loss.
    loss: f64,
    /// Exact weight of each positive pair: (p_pos - 1) slope / n, or -slope / n when the
    /// positive is outside the denominator.
    pos_weight: Vec<T>,
}

/// Pass 1: each anchor's log-sum-exp over its negatives, then the positive joined in f64:
/// with r = sum_neg exp(s_j - s_pos), loss_i = ln(1 + r) and p_pos - 1 = -r / (1 + r).
fn row_stats<T: Real, K: LogKernel<T>>(
    k: &K,
    tiles: &TileGeometry<'_, T>,
    info: &Anchors<'_, T>,
) -> RowStats<T> {
    let (na, nc) = (tiles.a.rows, tiles.c.rows);
    let mut neg = vec![(T::NEG_INFINITY, T::ZERO); na];
    neg.par_chunks_mut(ROWS)
        .enumerate()
        .for_each(|(bi, state)| {
            let r0 = bi * ROWS;
            let m = state.len();
            let mut t = vec![T::ZERO; m * COLS];
            for c0 in (0..nc).step_by(COLS) {
                let n = COLS.min(nc - c0);
                let t = &mut t[..m * n];
                tiles.fill(r0, m, c0, n, t);
                log_kernel_tile(k, t);
                info.mask_logits(r0, m, c0, n, t);
                for (i, st) in state.iter_mut().enumerate() {
                    merge_lse(&t[i * n..(i + 1) * n], st);
                }
            }
        });
    finish_rows(&neg, info)
}

/// Joins each anchor's positive to its negatives' (max, sum) state, in f64.
fn finish_rows<T: Real>(neg: &[(T, T)], info: &Anchors<'_, T>) -> RowStats<T> {
    let na = neg.len();
    let inv_count = 1.0 / na as f64;
    let in_denominator = matches!(info.positives, Positives::Index(_));
    let mut total = 0.0;
    let mut lse = Vec::with_capacity(na);
    let mut pos_weight = Vec::with_capacity(na);
    for (i, &(max, sum)) in neg.iter().enumerate() {
        let (max, sum, s_pos) = (max.to_f64(), sum.to_f64(), info.s_pos[i].to_f64());
        let (loss_i, p_minus_1) = if !in_denominator {
            (max + sum.ln() - s_pos, -1.0)
        } else if sum == 0.0 {
            (0.0, 0.0)
        } else if max > s_pos {
            // r >= 1: loss = (max - s_pos) + ln(sum + exp(s_pos - max)).
            let inv_r = (s_pos - max).exp() / sum;
            (
                max - s_pos + (sum + (s_pos - max).exp()).ln(),
                -1.0 / (1.0 + inv_r),
            )
        } else {
            let r = sum * (max - s_pos).exp();
            (r.ln_1p(), -r / (1.0 + r))
        };
        total += loss_i;
        lse.push(T::from_f64(s_pos + loss_i));
        pos_weight.push(T::from_f64(
            p_minus_1 * info.slope_pos[i].to_f64() * inv_count,
        ));
    }
    RowStats {
        lse,
        loss: total * inv_count,
        pos_weight,
    }
}

/// Side of the square tiles of the symmetric engine.
const SQUARE: usize = 128;

/// The tiles (I, J) with J >= I of an n x n symmetric problem, dealt round-robin to `workers`.
fn upper_tiles(n: usize, workers: usize) -> Vec<Vec<(usize, usize)>> {
    let blocks = n.div_ceil(SQUARE);
    let mut dealt = vec![Vec::new(); workers];
    let all = (0..blocks).flat_map(|bi| (bi..blocks).map(move |bj| (bi * SQUARE, bj * SQUARE)));
    for (k, tile) in all.enumerate() {
        dealt[k % workers].push(tile);
    }
    dealt
}

/// A heap buffer for one square tile (64 to 128 KiB: too large for a worker's stack).
fn tile_buffer<T: Real>() -> Vec<T> {
    vec![T::ZERO; SQUARE * SQUARE]
}

/// Merges (max, sum) log-sum-exp states.
fn merge_state<T: Real>(a: (T, T), b: (T, T)) -> (T, T) {
    let max = a.0.max(b.0);
    if max == T::NEG_INFINITY {
        return a;
    }
    (
        max,
        a.1 * (a.0 - max).exp_fast() + b.1 * (b.0 - max).exp_fast(),
    )
}

/// Merges a tile's columns into the running states of the column rows.
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn merge_lse_columns<T: Real>(s: &[T], n: usize, state: &mut [(T, T)], scratch: &mut [T]) {
    let (max, sum) = scratch.split_at_mut(n);
    max.iter_mut()
        .zip(state.iter())
        .for_each(|(m, st)| *m = st.0);
    for row in s.chunks_exact(n) {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
    sum.iter_mut().for_each(|v| *v = T::ZERO);
    for row in s.chunks_exact(n) {
        for ((acc, &v), &m) in sum.iter_mut().zip(row).zip(max.iter()) {
            *acc += (v - m).exp_fast();
        }
    }
    for ((st, &m), &add) in state.iter_mut().zip(max.iter()).zip(sum.iter()) {
        if m != T::NEG_INFINITY {
            st.1 = st.1 * (st.0 - m).exp_fast() + add;
            st.0 = m;
        }
    }
}

/// Merges a tile into the states of its rows and of its columns with one exp per entry:
/// e_ij = exp(s_ij - M_i) feeds the row sums, and exp(s_ij - N_j) = e_ij exp(M_i - c) exp(c - N_j)
/// the column sums, when the shifts M, N lie within a span whose exponentials are safe in f32
/// (otherwise the columns take their own exps).
#[multiversion(targets(
    "x86_64+avx512f+avx512vl+avx512dq+avx512bw+avx2+fma",
    "x86_64+avx2+fma"
))]
fn merge_lse_both<T: Real>(
    s: &mut [T],
    n: usize,
    rows: &mut [(T, T)],
    cols: &mut [(T, T)],
    scratch: &mut [T],
) {
    let (col_shift, col_sum) = scratch.split_at_mut(n);
    col_shift
        .iter_mut()
        .zip(cols.iter())
        .for_each(|(m, st)| *m = st.0);
    for row in s.chunks_exact(n) {
        for (m, &v) in col_shift.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
    let row_shift: Vec<T> = rows
        .iter()
        .zip(s.chunks_exact(n))
        .map(|(st, row)| st.0.max(max_of(row)))
        .collect();
    let finite = row_shift
        .iter()
        .chain(col_shift.iter())
        .filter(|v| **v != T::NEG_INFINITY);
    let (lo, hi) = finite.fold((-T::NEG_INFINITY, T::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    if hi - lo >= T::from_f64(60.0) {
        merge_lse_columns(s, n, cols, scratch);
        for (row, st) in s.chunks_exact(n).zip(rows.iter_mut()) {
            merge_lse(row, st);
        }
        return;
    }
    let centre = T::from_f64(0.5) * (lo + hi);
    let factor = |shift: T, sign: T| {
        if shift == T::NEG_INFINITY {
            T::ZERO
        } else {
            (sign * (shift - centre)).exp_fast()
        }
    };
    let b: Vec<T> = col_shift.iter().map(|&c| factor(c, -T::ONE)).collect();
    col_sum.iter_mut().for_each(|v| *v = T::ZERO);
    for ((row, st), &m) in s.chunks_exact_mut(n).zip(rows.iter_mut()).zip(&row_shift) {
        if m == T::NEG_INFINITY {
            continue;
        }
        let mut acc = [T::ZERO; LANES];
        for v in row.iter_mut() {
            *v = (*v - m).exp_fast();
        }
        let chunks = row.chunks_exact(LANES);
        let tail: T = chunks.remainder().iter().copied().sum();
        for c in chunks {
            for l in 0..LANES {
                acc[l] += c[l];
            }
        }
        let row_sum = acc.iter().copied().sum::<T>() + tail;
        st.1 = st.1 * (st.0 - m).exp_fast() + row_sum;
        st.0 = m;
        let a = factor(m, T::ONE);
        for (acc, &e) in col_sum.iter_mut().zip(row.iter()) {
            *acc += a * e;
        }
    }
    for ((st, &shift), (&add, &bj)) in cols
        .iter_mut()
        .zip(col_shift.iter())
        .zip(col_sum.iter().zip(&b))
    {
        if shift != T::NEG_INFINITY {
            st.1 = st.1 * (st.0 - shift).exp_fast() + add * bj;
            st.0 = shift;
        }
    }
}

/// InfoNCE where the candidates are the anchors themselves, each anchor excluded from its own
/// denominator and `pos` an involution (pos[pos[i]] = i): the SimCLR pairing. Returns the mean
/// loss and d L / d z.
///
/// The logits are symmetric (s_ij = s_ji), so only the tiles on and above the diagonal are
/// computed: pass 1 feeds each tile to the log-sum-exp of its rows and of its columns, and in
/// pass 2 the weight w_ij = slope_ij (p_ij + p_ji) / n is symmetric too, so one tile gives
/// the gradient of both blocks. Each worker accumulates into its own states and gradient
/// (O(workers N d) memory), summed in a fixed order so results do not depend on scheduling.
pub(crate) fn infonce_self<T: Real, K: LogKernel<T>>(
    k: &K,
    z: MatRef<'_, T>,
    pos: &[usize],
) -> (f64, Mat<T>) {
    let g = k.geometry();
    let (n_rows, d) = (z.rows, z.cols);
    let sq = squared_norms(z);
    let tiles = TileGeometry {
        g,
        a: z,
        c: z,
        a_sq: &sq,
        c_sq: &sq,
    };
    let diag: Vec<usize> = (0..n_rows).collect();
    let info = Anchors::new(k, z, z, Positives::Index(pos), Some(&diag));
    let dealt = upper_tiles(n_rows, rayon::current_num_threads().max(1));
    let tile_size = |r0: usize, c0: usize| (SQUARE.min(n_rows - r0), SQUARE.min(n_rows - c0));

    // Pass 1: log-sum-exp states of the negatives.
    let partial: Vec<Vec<(T, T)>> = dealt
        .par_iter()
        .map(|tiles_here| {
            let mut state = vec![(T::NEG_INFINITY, T::ZERO); n_rows];
            let mut t = tile_buffer::<T>();
            let mut scratch = vec![T::ZERO; 2 * SQUARE];
            for &(r0, c0) in tiles_here {
                let (m, n) = tile_size(r0, c0);
                let t = &mut t[..m * n];
                tiles.fill(r0, m, c0, n, t);
                log_kernel_tile(k, t);
                // pos is an involution: masking (i, pos i) also masks (pos j, j).
                info.mask_logits(r0, m, c0, n, t);
                if r0 == c0 {
                    for i in 0..m {
                        merge_lse(&t[i * n..(i + 1) * n], &mut state[r0 + i]);
                    }
                } else {
                    // Off the diagonal, r0 + m <= c0: the row and column states are disjoint.
                    let (rows, cols) = state.split_at_mut(c0);
                    merge_lse_both(t, n, &mut rows[r0..r0 + m], &mut cols[..n], &mut scratch);
                }
            }
            state
        })
        .collect();
    let mut neg = vec![(T::NEG_INFINITY, T::ZERO); n_rows];
    for state in &partial {
        for (a, &b) in neg.iter_mut().zip(state) {
            *a = merge_state(*a, b);
        }
    }
    drop(partial);
    let RowStats {
        lse,
        loss,
        pos_weight,
    } = finish_rows(&neg, &info);
    let inv_count = T::from_f64(1.0 / n_rows as f64);

    // Pass 2: gradients.
    let partial: Vec<Mat<T>> = dealt
        .par_iter()
        .map(|tiles_here| {
            let mut grad = Mat::zeros(n_rows, d);
            let mut w = tile_buffer::<T>();
            for &(r0, c0) in tiles_here {
                let (m, n) = tile_size(r0, c0);
                let w = &mut w[..m * n];
                tiles.fill(r0, m, c0, n, w);
                weight_tile(k, w, n, &lse[r0..r0 + m], Some(&lse[c0..c0 + n]), inv_count);
                info.mask_weights(r0, m, c0, n, w, true);
                let x = &z.data[r0 * d..(r0 + m) * d];
                let y = &z.data[c0 * d..(c0 + n) * d];
                apply_weights(
                    g,
                    w,
                    false,
                    m,
                    n,
                    x,
                    y,
                    d,
                    &mut grad.data[r0 * d..(r0 + m) * d],
                );
                if r0 != c0 {
                    apply_weights(
                        g,
                        w,
                        true,
                        n,
                        m,
                        y,
                        x,
                        d,
                        &mut grad.data[c0 * d..(c0 + n) * d],
                    );
                }
            }
            grad
        })
        .collect();
    let mut grad = Mat::zeros(n_rows, d);
    for part in &partial {
        grad.add_scaled(part, T::ONE);
    }
    // The positive pairs, exactly; pos is an involution, so each pair gets both weights.
    for i in 0..n_rows {
        let p = pos[i];
        let (xi, xp) = (z.row(i), z.row(p));
        add_pair_grad(g, pos_weight[i], xi, xp, grad.row_mut(i));
        add_pair_grad(g, pos_weight[i], xp, xi, grad.row_mut(p));
    }
    (loss, grad)
}

/// General InfoNCE: anchors against a separate candidate set.
pub(crate) fn infonce_general<T: Real, K: LogKernel<T>>(
    k: &K,
    a: MatRef<'_, T>,
    c: MatRef<'_, T>,
    positives: Positives<'_, T>,
    exclude: Option<&[usize]>,
) -> InfoNceGrads<T> {
    let g = k.geometry();
    let (na, nc, d) = (a.rows, c.rows, a.cols);
    let (a_sq, c_sq) = (squared_norms(a), squared_norms(c));
    let tiles = TileGeometry {
        g,
        a,
        c,
        a_sq: &a_sq,
        c_sq: &c_sq,
    };
    let info = Anchors::new(k, a, c, positives, exclude);
    let RowStats {
        lse,
        loss,
        pos_weight,
    } = row_stats(k, &tiles, &info);
    let inv_count = T::from_f64(1.0 / na as f64);
    // The gradient weights of the anchor tile (r0..r0+m) x (c0..c0+n), masked.
    let weights = |r0: usize, m: usize, c0: usize, n: usize, w: &mut [T]| {
        tiles.fill(r0, m, c0, n, w);
        weight_tile(k, w, n, &lse[r0..r0 + m], None, inv_count);
        info.mask_weights(r0, m, c0, n, w, false);
    };

    // Anchor gradients, one row block per task.
    let mut ga = Mat::zeros(na, d);
    ga.data
        .par_chunks_mut(ROWS * d)
        .enumerate()
        .for_each(|(bi, out)| {
            let r0 = bi * ROWS;
            let m = out.len() / d;
            let mut w = vec![T::ZERO; m * COLS];
            for c0 in (0..nc).step_by(COLS) {
                let n = COLS.min(nc - c0);
                let w = &mut w[..m * n];
                weights(r0, m, c0, n, w);
                let x = &a.data[r0 * d..(r0 + m) * d];
                let y = &c.data[c0 * d..(c0 + n) * d];
                apply_weights(g, w, false, m, n, x, y, d, out);
            }
        });

    // Candidate gradients, one candidate block per task (tiles recomputed: no scatter).
    let mut gc = Mat::zeros(nc, d);
    gc.data
        .par_chunks_mut(COLS * d)
        .enumerate()
        .for_each(|(bj, out)| {
            let c0 = bj * COLS;
            let n = out.len() / d;
            let mut w = vec![T::ZERO; ROWS * n];
            for r0 in (0..na).step_by(ROWS) {
                let m = ROWS.min(na - r0);
                let w = &mut w[..m * n];
                weights(r0, m, c0, n, w);
                let x = &c.data[c0 * d..(c0 + n) * d];
                let y = &a.data[r0 * d..(r0 + m) * d];
                apply_weights(g, w, true, n, m, x, y, d, out);
            }
        });

    // Positive pairs, exactly.
    let mut gp = match positives {
        Positives::Rows(p) => Some(Mat::zeros(p.rows, p.cols)),
        Positives::Index(_) => None,
    };
    for i in 0..na {
        let xi = a.row(i);
        let (y, target) = match positives {
            Positives::Index(p) => (c.row(p[i]), gc.row_mut(p[i])),
            Positives::Rows(r) => (r.row(i), gp.as_mut().expect("rows").row_mut(i)),
        };
        add_pair_grad(g, pos_weight[i], xi, y, ga.row_mut(i));
        add_pair_grad(g, pos_weight[i], y, xi, target);
    }
    InfoNceGrads {
        loss,
        anchors: ga,
        candidates: gc,
        positives: gp,
    }
}
