//! Bilinear resampling of a crop, with antialiasing when shrinking (the triangle filter of
//! PIL and of torchvision's `antialias=True`).
//!
//! Output pixel `o` of an axis samples the crop around centre `c = (o + 0.5) * s`, with
//! `s = in_len / out_len`, weights `max(0, 1 - |j + 0.5 - c| / max(s, 1))` over the crop's pixels
//! `j`, normalised to sum 1. Upscaling (s < 1) is plain half-pixel bilinear with edge clamping.

/// Precomputed taps of one axis: for output `o`, `count[o]` weights from input `first[o]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Taps {
    first: Vec<usize>,
    count: Vec<usize>,
    stride: usize,
    weights: Vec<f32>,
}

impl Taps {
    /// Taps resampling `[start, start + in_len)` of an axis to `out_len` samples; `gain`
    /// multiplies every weight (1/255 turns bytes into [0, 1]).
    pub(crate) fn new(start: usize, in_len: usize, out_len: usize, gain: f32) -> Taps {
        let mut taps = Taps::span(0.0, in_len as f64, in_len, out_len, gain);
        for f in &mut taps.first {
            *f += start;
        }
        taps
    }

    /// Taps resampling the span `[offset, offset + len)` (fractional, in pixels) of a window of
    /// `avail` pixels to `out_len` samples; taps stay inside the window, as a crop's edges clamp.
    /// A scaled decode makes spans fractional: the box drawn on the original image lands between
    /// the decoded pixels.
    pub(crate) fn span(offset: f64, len: f64, avail: usize, out_len: usize, gain: f32) -> Taps {
        let scale = len / out_len as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale;
        let stride = (support.ceil() as usize) * 2 + 1;
        let mut taps = Taps {
            first: Vec::with_capacity(out_len),
            count: Vec::with_capacity(out_len),
            stride,
            weights: vec![0.0; out_len * stride],
        };
        for o in 0..out_len {
            let center = offset + (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0) as usize).min(avail - 1);
            let hi = ((center + support + 0.5).floor() as usize).clamp(lo + 1, avail);
            let n = (hi - lo).min(stride);
            let w = &mut taps.weights[o * stride..o * stride + n];
            let mut total = 0.0;
            for (k, wk) in w.iter_mut().enumerate() {
                let x = ((lo + k) as f64 + 0.5 - center) / filter_scale;
                let v = (1.0 - x.abs()).max(0.0);
                *wk = v as f32;
                total += v;
            }
            let norm = if total > 0.0 {
                gain as f64 / total
            } else {
                0.0
            };
            for wk in w.iter_mut() {
                *wk = (*wk as f64 * norm) as f32;
            }
            taps.first.push(lo);
            taps.count.push(n);
        }
        taps
    }
}

/// Resamples the crop `(top, left, crop_h, crop_w)` of the `u8` HWC image `src` (`src_w`
/// pixels wide, `c` channels) to `out_h x out_w`, writing `f32` HWC in [0, 1] to `out`.
///
/// # Shapes
/// `src`: `[src_h, src_w, c]`; `out`: `[out_h, out_w, c]`; `tmp` is scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize_crop(
    src: &[u8],
    src_w: usize,
    c: usize,
    (top, left, crop_h, crop_w): (usize, usize, usize, usize),
    (out_h, out_w): (usize, usize),
    out: &mut [f32],
    tmp: &mut Vec<f32>,
) {
    let tx = Taps::new(left, crop_w, out_w, 1.0 / 255.0);
    let ty = Taps::new(top, crop_h, out_h, 1.0);
    resample(src, src_w, c, (top, crop_h), &tx, &ty, out, tmp);
}

/// Resamples the fractional box `(top, left, height, width)` of the `u8` HWC image `src`
/// (`src_h x src_w`, `c` channels) to `out_h x out_w`, writing `f32` HWC in [0, 1] to `out`.
/// Taps reach only the pixels the box touches, so an integer box is exactly [`resize_crop`].
///
/// # Shapes
/// `src`: `[src_h, src_w, c]`; `out`: `[out_h, out_w, c]`; `tmp` is scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize_box(
    src: &[u8],
    (src_h, src_w): (usize, usize),
    c: usize,
    (top, left, height, width): (f64, f64, f64, f64),
    (out_h, out_w): (usize, usize),
    out: &mut [f32],
    tmp: &mut Vec<f32>,
) {
    // The window of whole pixels the box touches.
    let window = |start: f64, len: f64, limit: usize| {
        let first = (start.floor().max(0.0) as usize).min(limit - 1);
        let end = ((start + len - 1e-9).ceil() as usize).clamp(first + 1, limit);
        (first, end - first)
    };
    let (y0, wh) = window(top, height, src_h);
    let (x0, ww) = window(left, width, src_w);
    let mut tx = Taps::span(left - x0 as f64, width, ww, out_w, 1.0 / 255.0);
    let mut ty = Taps::span(top - y0 as f64, height, wh, out_h, 1.0);
    for f in &mut tx.first {
        *f += x0;
    }
    for f in &mut ty.first {
        *f += y0;
    }
    resample(src, src_w, c, (y0, wh), &tx, &ty, out, tmp);
}

/// The two separable passes: rows `[top, top + rows)` horizontally with `tx`, then vertically
/// with `ty` (whose `first` are absolute rows).
#[allow(clippy::too_many_arguments)]
fn resample(
    src: &[u8],
    src_w: usize,
    c: usize,
    (top, rows): (usize, usize),
    tx: &Taps,
    ty: &Taps,
    out: &mut [f32],
    tmp: &mut Vec<f32>,
) {
    let out_w = tx.first.len();
    let out_h = ty.first.len();
    // Horizontal pass: rows -> [rows, out_w, c].
    tmp.clear();
    tmp.resize(rows * out_w * c, 0.0);
    for r in 0..rows {
        let row = &src[(top + r) * src_w * c..(top + r + 1) * src_w * c];
        let dst = &mut tmp[r * out_w * c..(r + 1) * out_w * c];
        for ox in 0..out_w {
            let w = &tx.weights[ox * tx.stride..ox * tx.stride + tx.count[ox]];
            let base = tx.first[ox] * c;
            for ch in 0..c {
                let mut acc = 0.0f32;
                for (k, &wk) in w.iter().enumerate() {
                    acc += wk * row[base + k * c + ch] as f32;
                }
                dst[ox * c + ch] = acc;
            }
        }
    }
    // Vertical pass: [rows, out_w, c] -> [out_h, out_w, c].
    let line = out_w * c;
    for oy in 0..out_h {
        let dst = &mut out[oy * line..(oy + 1) * line];
        dst.fill(0.0);
        let w = &ty.weights[oy * ty.stride..oy * ty.stride + ty.count[oy]];
        let first = ty.first[oy] - top;
        for (k, &wk) in w.iter().enumerate() {
            let srow = &tmp[(first + k) * line..(first + k + 1) * line];
            for (d, s) in dst.iter_mut().zip(srow) {
                *d += wk * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_when_sizes_match() {
        let src: Vec<u8> = (0..4 * 5 * 3).map(|i| (i * 4) as u8).collect();
        let mut out = vec![0.0; 60];
        resize_crop(&src, 5, 3, (0, 0, 4, 5), (4, 5), &mut out, &mut Vec::new());
        for (o, s) in out.iter().zip(&src) {
            assert!((o - *s as f32 / 255.0).abs() < 1e-6);
        }
    }

    #[test]
    fn upscale_two_pixels_is_half_pixel_bilinear() {
        // A 1x2 gray row [0, 255] to width 4: centres at 0.25, 0.75, 1.25, 1.75 input pixels
        // -> [0, 0.25, 0.75, 1] (edges clamp).
        let mut out = vec![0.0; 4];
        resize_crop(
            &[0, 255],
            2,
            1,
            (0, 0, 1, 2),
            (1, 4),
            &mut out,
            &mut Vec::new(),
        );
        let want = [0.0, 0.25, 0.75, 1.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn downscale_by_two_averages_with_triangle_filter() {
        // [0, 100, 200, 250] to 2 samples: scale 2, centres 1 and 3, support 2:
        // out0 = (0.75*0 + 0.75*100 + 0.25*200) / 1.75, out1 = (0.25*100 + 0.75*200 + 0.75*250) / 1.75.
        let mut out = vec![0.0; 2];
        resize_crop(
            &[0, 100, 200, 250],
            4,
            1,
            (0, 0, 1, 4),
            (1, 2),
            &mut out,
            &mut Vec::new(),
        );
        let want = [
            (75.0 + 50.0) / 1.75 / 255.0,
            (25.0 + 150.0 + 187.5) / 1.75 / 255.0,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }

    #[test]
    fn crop_offsets_pick_the_right_pixels() {
        // 3x3 image with value 10 * row + col; the 1x1 crop at (2, 1) resized to 2x2 is flat 21.
        let src: Vec<u8> = (0..3)
            .flat_map(|r| (0..3).map(move |c| (10 * r + c) as u8))
            .collect();
        let mut out = vec![0.0; 4];
        resize_crop(&src, 3, 1, (2, 1, 1, 1), (2, 2), &mut out, &mut Vec::new());
        for o in out {
            assert!((o * 255.0 - 21.0).abs() < 1e-4);
        }
    }
}
