//! Separable Gaussian blur with reflect padding, as torchvision's `gaussian_blur`.
//!
//! Kernel taps `exp(-x^2 / (2 sigma^2))` at `x = -(k-1)/2 ..= (k-1)/2`, normalised to sum 1;
//! borders mirror without repeating the edge pixel (`reflect`).

/// The normalised 1-D Gaussian kernel of odd size `k`.
pub fn gaussian_kernel(k: usize, sigma: f32) -> Vec<f32> {
    let half = (k as f32 - 1.0) * 0.5;
    let mut w: Vec<f32> = (0..k)
        .map(|i| {
            let x = i as f32 - half;
            (-0.5 * (x / sigma) * (x / sigma)).exp()
        })
        .collect();
    let total: f32 = w.iter().sum();
    for v in &mut w {
        *v /= total;
    }
    w
}

/// Mirror index `i` into `0..n` (reflect padding, any distance).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Blurs the `f32` HWC image in place with a `k`-tap Gaussian of width `sigma`.
///
/// # Shapes
/// `img`: `[h, w, c]`; `tmp` is scratch.
pub fn gaussian_blur(
    img: &mut [f32],
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    sigma: f32,
    tmp: &mut Vec<f32>,
) {
    let kernel = gaussian_kernel(k, sigma);
    let r = (k / 2) as isize;
    tmp.clear();
    tmp.resize(img.len(), 0.0);
    // Horizontal: img -> tmp.
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let mut acc = 0.0;
                for (t, &kw) in kernel.iter().enumerate() {
                    let xx = reflect(x as isize + t as isize - r, w);
                    acc += kw * img[(y * w + xx) * c + ch];
                }
                tmp[(y * w + x) * c + ch] = acc;
            }
        }
    }
    // Vertical: tmp -> img.
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let mut acc = 0.0;
                for (t, &kw) in kernel.iter().enumerate() {
                    let yy = reflect(y as isize + t as isize - r, h);
                    acc += kw * tmp[(yy * w + x) * c + ch];
                }
                img[(y * w + x) * c + ch] = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_by_hand_and_reflect() {
        // k = 3, sigma = 1: weights proportional to [e^-0.5, 1, e^-0.5].
        let k = gaussian_kernel(3, 1.0);
        let e = (-0.5f32).exp();
        let want = [
            e / (1.0 + 2.0 * e),
            1.0 / (1.0 + 2.0 * e),
            e / (1.0 + 2.0 * e),
        ];
        for (a, b) in k.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(
            (0..7).map(|i| reflect(i - 2, 3)).collect::<Vec<_>>(),
            vec![2, 1, 0, 1, 2, 1, 0]
        );
    }

    #[test]
    fn blur_keeps_constants_and_mass_and_spreads_an_impulse() {
        let mut flat = vec![0.4; 5 * 5 * 3];
        gaussian_blur(&mut flat, 5, 5, 3, 3, 1.3, &mut Vec::new());
        assert!(flat.iter().all(|v| (v - 0.4).abs() < 1e-6));
        // An impulse in the middle of a 1-channel 5x5 image becomes the outer product kernel.
        let mut img = vec![0.0; 25];
        img[12] = 1.0;
        gaussian_blur(&mut img, 5, 5, 1, 3, 1.0, &mut Vec::new());
        let k = gaussian_kernel(3, 1.0);
        assert!((img[12] - k[1] * k[1]).abs() < 1e-6);
        assert!((img[7] - k[0] * k[1]).abs() < 1e-6);
        assert!((img.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
