//! [`Dataset`]: images of one fixed size in memory, with labels and class names; and
//! [`OfficialSplits`], the official train and test sets a reader returns.

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// A set of images of one fixed size, held in memory as `u8`, **HWC** (row-major pixels with
/// interleaved channels, as JPEG/PNG decode), one image after another.
///
/// # Shapes
/// - `pixels()`: `[len, height, width, channels]`, `u8`, C-contiguous.
/// - `labels()`: `[len]`, class indices in `0..num_classes()`. An unlabelled set (a folder
///   of images without class folders) has `num_classes() == 0` and all labels 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pixels: Vec<u8>,
    labels: Vec<u32>,
    height: usize,
    width: usize,
    channels: usize,
    class_names: Vec<String>,
}

impl Dataset {
    /// Checks the shapes and builds the set. `class_names` empty means unlabelled (all labels
    /// must then be 0); otherwise every label must be below `class_names.len()`.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u32>,
        height: usize,
        width: usize,
        channels: usize,
        class_names: Vec<String>,
    ) -> Result<Self> {
        if height == 0 || width == 0 || !(channels == 1 || channels == 3) {
            return Err(DataError::param(
                "image shape",
                format!("{height}x{width}x{channels}"),
                "height, width > 0 and 1 or 3 channels",
            ));
        }
        let image_len = height * width * channels;
        if pixels.len() != labels.len() * image_len {
            return Err(DataError::param(
                "pixels length",
                pixels.len(),
                format!("{} images x {image_len} bytes", labels.len()),
            ));
        }
        let limit = class_names.len().max(1) as u32;
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= limit) {
            return Err(DataError::param(
                "label",
                format!("{l} (image {i})"),
                format!("below the number of classes, {limit}"),
            ));
        }
        Ok(Dataset {
            pixels,
            labels,
            height,
            width,
            channels,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }
    /// 1 (grayscale) or 3 (RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }
    /// Bytes per image, `height * width * channels`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }
    /// All pixels, `[len, height, width, channels]`.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
    /// Image `i` as `[height, width, channels]` (panics when `i >= len()`).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }
    /// Class index of every image.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
    /// Class names, index = label; empty for an unlabelled set.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Number of classes (0 for an unlabelled set).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// True when the images carry class labels.
    pub fn is_labelled(&self) -> bool {
        !self.class_names.is_empty()
    }

    /// Images per class, `[num_classes]` (`[len]` summed into one entry when unlabelled).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes().max(1)];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order (indices may repeat).
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(DataError::param(
                    "index",
                    i,
                    format!("below the set size {}", self.len()),
                ));
            }
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            pixels,
            labels,
            height: self.height,
            width: self.width,
            channels: self.channels,
            class_names: self.class_names.clone(),
        })
    }

    /// Grayscale images replicated to 3 channels (an RGB set is returned unchanged).
    pub fn into_rgb(self) -> Dataset {
        if self.channels == 3 {
            return self;
        }
        let pixels = self.pixels.iter().flat_map(|&v| [v, v, v]).collect();
        Dataset {
            pixels,
            channels: 3,
            ..self
        }
    }

    /// Mean of each channel over all pixels, in [0, 1].
    pub fn channel_mean(&self) -> Vec<f64> {
        let c = self.channels;
        let mut sums = vec![0u64; c];
        for px in self.pixels.chunks_exact(c) {
            for (s, &v) in sums.iter_mut().zip(px) {
                *s += v as u64;
            }
        }
        let count = (self.pixels.len() / c).max(1) as f64;
        sums.iter().map(|&s| s as f64 / count / 255.0).collect()
    }

    /// Hex sha256 of the shape, pixels, labels and class names: a provenance fingerprint of
    /// exactly what was trained on, independent of the file it came from.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for d in [self.len(), self.height, self.width, self.channels] {
            h.update((d as u64).to_le_bytes());
        }
        h.update(&self.pixels);
        for &l in &self.labels {
            h.update(l.to_le_bytes());
        }
        for name in &self.class_names {
            h.update(name.as_bytes());
            h.update([0u8]);
        }
        hex(&h.finalize())
    }
}

/// The official train and test sets as they are on disk (before the validation split).
#[derive(Clone, Debug, Default)]
pub struct OfficialSplits {
    /// The official training images.
    pub train: Option<Dataset>,
    /// The official test images (CIFAR `test_batch`, TinyImageNet `val/`); `None` when the
    /// layout has none (an ImageFolder without `test/` or `val/`).
    pub test: Option<Dataset>,
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_by_two() -> Dataset {
        // Two 1x2 RGB images: [red, green] and [blue, white].
        let pixels = vec![
            255, 0, 0, 0, 255, 0, //
            0, 0, 255, 255, 255, 255,
        ];
        Dataset::new(pixels, vec![0, 1], 1, 2, 3, vec!["a".into(), "b".into()]).unwrap()
    }

    #[test]
    fn accessors_select_and_mean() {
        let d = two_by_two();
        assert_eq!(d.len(), 2);
        assert_eq!(d.image(1), &[0, 0, 255, 255, 255, 255]);
        let s = d.select(&[1, 1, 0]).unwrap();
        assert_eq!(s.labels(), &[1, 1, 0]);
        assert_eq!(s.image(2), d.image(0));
        assert_eq!(d.class_counts(), vec![1, 1]);
        let m = d.channel_mean();
        assert!(
            (m[0] - 0.5).abs() < 1e-12 && (m[1] - 0.5).abs() < 1e-12 && (m[2] - 0.5).abs() < 1e-12
        );
        assert!(d.select(&[2]).is_err());
    }

    #[test]
    fn new_rejects_bad_shapes_and_labels() {
        let err = Dataset::new(vec![0; 5], vec![0], 1, 2, 3, vec![]).unwrap_err();
        assert!(err.to_string().contains("1 images x 6 bytes"), "{err}");
        let err =
            Dataset::new(vec![0; 6], vec![2], 1, 2, 3, vec!["a".into(), "b".into()]).unwrap_err();
        assert!(err.to_string().contains("image 0"), "{err}");
    }

    #[test]
    fn gray_to_rgb_and_fingerprint() {
        let g = Dataset::new(vec![1, 2], vec![0], 1, 2, 1, vec![]).unwrap();
        let fp = g.fingerprint();
        let rgb = g.into_rgb();
        assert_eq!(rgb.pixels(), &[1, 1, 1, 2, 2, 2]);
        assert_ne!(rgb.fingerprint(), fp);
        assert_eq!(rgb.fingerprint(), rgb.clone().fingerprint());
        assert_eq!(fp.len(), 64);
    }
}
