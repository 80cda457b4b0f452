//! Colour transforms on `f32` HWC images in [0, 1], in torchvision's tensor semantics.
//!
//! Grayscale is `0.2989 R + 0.587 G + 0.114 B`. `blend(a, b, f) = clamp(f a + (1 - f) b, 0, 1)`.
//! - brightness `f`: `blend(x, 0, f)`;
//! - contrast `f`: `blend(x, mean(gray(x)), f)`, the mean over the whole image;
//! - saturation `f`: `blend(x, gray(x), f)` per pixel;
//! - hue `h` in [-0.5, 0.5]: rotate the HSV hue by `h` turns.
//!
//! One-channel images take brightness and contrast; saturation, hue and grayscale leave them
//! unchanged.

const GRAY: [f32; 3] = [0.2989, 0.587, 0.114];

#[inline]
fn gray(px: &[f32]) -> f32 {
    GRAY[0] * px[0] + GRAY[1] * px[1] + GRAY[2] * px[2]
}

/// Multiplies by `factor`, clamped to [0, 1].
pub fn adjust_brightness(img: &mut [f32], factor: f32) {
    for v in img {
        *v = (*v * factor).clamp(0.0, 1.0);
    }
}

/// Blends towards the mean gray level of the image.
pub fn adjust_contrast(img: &mut [f32], channels: usize, factor: f32) {
    let mean = if channels == 3 {
        img.chunks_exact(3).map(gray).sum::<f32>() / (img.len() / 3).max(1) as f32
    } else {
        img.iter().sum::<f32>() / img.len().max(1) as f32
    };
    let offset = (1.0 - factor) * mean;
    for v in img {
        *v = (factor * *v + offset).clamp(0.0, 1.0);
    }
}

/// Blends each pixel towards its own gray level (3 channels only).
pub fn adjust_saturation(img: &mut [f32], channels: usize, factor: f32) {
    if channels != 3 {
        return;
    }
    for px in img.chunks_exact_mut(3) {
        let g = (1.0 - factor) * gray(px);
        for v in px {
            *v = (factor * *v + g).clamp(0.0, 1.0);
        }
    }
}

/// Replaces each pixel by its gray level in all 3 channels (3 channels only).
pub fn to_grayscale(img: &mut [f32], channels: usize) {
    if channels != 3 {
        return;
    }
    for px in img.chunks_exact_mut(3) {
        let g = gray(px);
        px.fill(g);
    }
}

/// RGB in [0, 1] to HSV with hue in [0, 1) (torchvision's `_rgb2hsv`).
#[inline]
pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    if cr == 0.0 {
        return (0.0, 0.0, maxc);
    }
    let s = cr / maxc;
    let rc = (maxc - r) / cr;
    let gc = (maxc - g) / cr;
    let bc = (maxc - b) / cr;
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    // h / 6 is in [-1/6, 5/6): wrap without fmod (a libm call, the slowest step here).
    let h = h / 6.0;
    (if h < 0.0 { h + 1.0 } else { h }, s, maxc)
}

/// HSV (hue in [0, 1)) back to RGB (torchvision's `_hsv2rgb`).
#[inline]
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Rotates the hue of every pixel by `shift` turns (3 channels only).
pub fn adjust_hue(img: &mut [f32], channels: usize, shift: f32) {
    if channels != 3 || shift == 0.0 {
        return;
    }
    for px in img.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(px[0], px[1], px[2]);
        // h in [0, 1) and shift in [-0.5, 0.5]: one wrap suffices.
        let mut h = h + shift;
        if h < 0.0 {
            h += 1.0;
        } else if h >= 1.0 {
            h -= 1.0;
        }
        let (r, g, b) = hsv_to_rgb(h, s, v);
        px[0] = r;
        px[1] = g;
        px[2] = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn hue_rotation_on_primaries() {
        // A third of a turn sends red to green, green to blue, blue to red.
        let mut img = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        adjust_hue(&mut img, 3, 1.0 / 3.0);
        assert!(
            close(&img, &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]),
            "{img:?}"
        );
        // Half a turn sends red to cyan; a sixth sends red to yellow; -1/6 to magenta.
        let mut img = vec![1.0, 0.0, 0.0];
        adjust_hue(&mut img, 3, 0.5);
        assert!(close(&img, &[0.0, 1.0, 1.0]), "{img:?}");
        let mut img = vec![1.0, 0.0, 0.0];
        adjust_hue(&mut img, 3, 1.0 / 6.0);
        assert!(close(&img, &[1.0, 1.0, 0.0]), "{img:?}");
        let mut img = vec![1.0, 0.0, 0.0];
        adjust_hue(&mut img, 3, -1.0 / 6.0);
        assert!(close(&img, &[1.0, 0.0, 1.0]), "{img:?}");
        // Grays have no hue.
        let mut img = vec![0.3, 0.3, 0.3];
        adjust_hue(&mut img, 3, 0.37);
        assert!(close(&img, &[0.3, 0.3, 0.3]));
    }

    #[test]
    fn hsv_round_trip_and_known_values() {
        let (h, s, v) = rgb_to_hsv(1.0, 0.5, 0.0);
        assert!(close(&[h, s, v], &[30.0 / 360.0, 1.0, 1.0]));
        let (h, s, v) = rgb_to_hsv(0.2, 0.4, 0.6);
        assert!(
            (h - 210.0 / 360.0).abs() < 1e-6
                && (s - 2.0 / 3.0).abs() < 1e-6
                && (v - 0.6).abs() < 1e-6
        );
        for rgb in [(0.1, 0.7, 0.3), (0.9, 0.2, 0.5), (0.4, 0.4, 0.8)] {
            let (h, s, v) = rgb_to_hsv(rgb.0, rgb.1, rgb.2);
            let back = hsv_to_rgb(h, s, v);
            assert!(
                close(&[back.0, back.1, back.2], &[rgb.0, rgb.1, rgb.2]),
                "{rgb:?} {back:?}"
            );
        }
    }

    #[test]
    fn brightness_contrast_saturation_gray_by_hand() {
        let mut img = vec![0.5, 0.25, 0.8];
        adjust_brightness(&mut img, 1.5);
        assert!(close(&img, &[0.75, 0.375, 1.0]));
        // Two gray pixels 0.2 and 0.6, mean 0.4 (times the weight sum 0.9999); contrast 2
        // -> 0.0 and 0.8.
        let mut img = vec![0.2, 0.2, 0.2, 0.6, 0.6, 0.6];
        adjust_contrast(&mut img, 3, 2.0);
        let m = 0.4 * 0.9999;
        let want = [0.4 - m, 0.4 - m, 0.4 - m, 1.2 - m, 1.2 - m, 1.2 - m];
        assert!(close(&img, &want), "{img:?}");
        // Saturation 0 is grayscale; gray of (1, 0, 0) is 0.2989.
        let mut a = vec![1.0, 0.0, 0.0];
        adjust_saturation(&mut a, 3, 0.0);
        assert!(close(&a, &[0.2989; 3]));
        let mut b = vec![1.0, 0.0, 0.0];
        to_grayscale(&mut b, 3);
        assert_eq!(a, b);
        // Saturation 2 pushes away from gray, clamped.
        let mut c = vec![0.6, 0.4, 0.4];
        adjust_saturation(&mut c, 3, 2.0);
        let g = 0.2989 * 0.6 + 0.587 * 0.4 + 0.114 * 0.4;
        assert!(close(&c, &[1.2 - g, 0.8 - g, 0.8 - g]), "{c:?}");
    }
}
