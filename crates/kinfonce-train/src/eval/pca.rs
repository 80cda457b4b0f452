//! A 2-D PCA of embeddings, for the study's scatter plots.

use tch::{Device, Kind, Tensor};

/// The first two principal components of `x` (`[N, d]`): centred rows projected on the top
/// two right singular vectors, each axis signed so that its largest loading is positive.
/// Returns the coordinates and the fraction of variance each axis explains.
pub fn pca_2d(x: &Tensor) -> (Vec<(f64, f64)>, [f64; 2]) {
    let _guard = tch::no_grad_guard();
    let x = x.to_device(Device::Cpu).to_kind(Kind::Double);
    let n = x.size()[0];
    if n < 2 || x.size()[1] < 2 {
        return (vec![(0.0, 0.0); n as usize], [0.0, 0.0]);
    }
    let centred = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
    let (_, s, v) = centred.svd(true, true);
    let mut axes = v.narrow(1, 0, 2);
    for j in 0..2 {
        let col = axes.select(1, j);
        let i = i64::try_from(col.abs().argmax(0, false)).unwrap_or(0);
        if col.double_value(&[i]) < 0.0 {
            let _ = axes.select(1, j).g_mul_scalar_(-1.0);
        }
    }
    axes = axes.contiguous();
    let coords = centred.matmul(&axes);
    let flat = Vec::<f64>::try_from(coords.contiguous().flatten(0, -1)).unwrap_or_default();
    let points = flat.chunks(2).map(|c| (c[0], c[1])).collect();
    let var = s.square();
    let total = f64::try_from(var.sum(Kind::Double))
        .unwrap_or(1.0)
        .max(1e-300);
    let v0 = f64::try_from(var.get(0)).unwrap_or(0.0) / total;
    let v1 = f64::try_from(var.get(1)).unwrap_or(0.0) / total;
    (points, [v0, v1])
}
