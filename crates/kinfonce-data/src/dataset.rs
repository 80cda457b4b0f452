//! [`Dataset`]: images of one fixed size in memory, or a streamed folder's files, with labels
//! and class names; and [`OfficialSplits`], the official train and test sets a reader returns.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::augment::ImageShape;
use crate::error::{DataError, Result};
use crate::stream::StreamIndex;

/// Where a set's pixels are.
#[derive(Clone, Debug, PartialEq)]
enum Pixels {
    /// `[len, height, width, channels]` in memory.
    Memory(Vec<u8>),
    /// Files of an index, decoded when a view is made: image `i` is entry `files[i]`.
    Stream {
        index: Arc<StreamIndex>,
        files: Vec<u32>,
    },
}

/// A set of images of one fixed size, held in memory as `u8`, **HWC** (row-major pixels with
/// interleaved channels, as JPEG/PNG decode), one image after another; or a **streamed** set
/// ([`Dataset::is_streamed`]): the files of a folder of images of any size, read by the loaders
/// when they make a view, whose `height` and `width` are the side of its views.
///
/// # Shapes
/// - `pixels()`: `[len, height, width, channels]`, `u8`, C-contiguous.
/// - `labels()`: `[len]`, class indices in `0..num_classes()`. An unlabelled set (a folder
///   of images without class folders) has `num_classes() == 0` and all labels 0.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pixels: Pixels,
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
            pixels: Pixels::Memory(pixels),
            labels,
            height,
            width,
            channels,
            class_names,
        })
    }

    /// A streamed set: entries `files` of `index` with their labels, viewed at `side` pixels
    /// (RGB). Labels follow the rule of [`Dataset::new`].
    pub(crate) fn streamed(
        index: Arc<StreamIndex>,
        files: Vec<u32>,
        labels: Vec<u32>,
        side: usize,
        class_names: Vec<String>,
    ) -> Result<Self> {
        if side == 0 {
            return Err(DataError::param("view size", 0, "a positive side"));
        }
        assert_eq!(files.len(), labels.len(), "one label per file");
        let probe = Dataset::new(Vec::new(), Vec::new(), side, side, 3, class_names)?;
        let limit = probe.class_names.len().max(1) as u32;
        if let Some(&l) = labels.iter().find(|&&l| l >= limit) {
            return Err(DataError::param("label", l, format!("below {limit}")));
        }
        Ok(Dataset {
            pixels: Pixels::Stream { index, files },
            labels,
            ..probe
        })
    }

    /// True for a streamed set: its images are files read when a view is made.
    pub fn is_streamed(&self) -> bool {
        matches!(self.pixels, Pixels::Stream { .. })
    }

    /// The file of image `i` of a streamed set and its size from the header (`None` for a set
    /// in memory; panics when `i >= len()`).
    pub fn file(&self, i: usize) -> Option<(PathBuf, ImageShape)> {
        match &self.pixels {
            Pixels::Memory(_) => None,
            Pixels::Stream { index, files } => {
                let e = files[i] as usize;
                Some((index.path(e), index.shape(e)))
            }
        }
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
    /// The shape of the images held in memory (a streamed set's files carry their own).
    pub fn shape(&self) -> ImageShape {
        ImageShape {
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }
    /// Bytes per image, `height * width * channels`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }
    /// All pixels, `[len, height, width, channels]` (empty for a streamed set).
    pub fn pixels(&self) -> &[u8] {
        match &self.pixels {
            Pixels::Memory(p) => p,
            Pixels::Stream { .. } => &[],
        }
    }
    /// Image `i` as `[height, width, channels]` (panics when `i >= len()` or the set is
    /// streamed: read its [`Dataset::file`]).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        match &self.pixels {
            Pixels::Memory(p) => &p[i * n..(i + 1) * n],
            Pixels::Stream { .. } => panic!("a streamed set has no image in memory"),
        }
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
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(DataError::param(
                "index",
                i,
                format!("below the set size {}", self.len()),
            ));
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let pixels = match &self.pixels {
            Pixels::Memory(_) => Pixels::Memory(
                indices
                    .iter()
                    .flat_map(|&i| self.image(i))
                    .copied()
                    .collect(),
            ),
            Pixels::Stream { index, files } => Pixels::Stream {
                index: Arc::clone(index),
                files: indices.iter().map(|&i| files[i]).collect(),
            },
        };
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
        let pixels = self.pixels().iter().flat_map(|&v| [v, v, v]).collect();
        Dataset {
            pixels: Pixels::Memory(pixels),
            channels: 3,
            ..self
        }
    }

    /// Mean of each channel over all pixels, in [0, 1] (empty for a streamed set, whose pixels
    /// are not in memory).
    pub fn channel_mean(&self) -> Vec<f64> {
        if self.is_streamed() {
            return Vec::new();
        }
        let c = self.channels;
        let mut sums = vec![0u64; c];
        for px in self.pixels().chunks_exact(c) {
            for (s, &v) in sums.iter_mut().zip(px) {
                *s += v as u64;
            }
        }
        let count = (self.pixels().len() / c).max(1) as f64;
        sums.iter().map(|&s| s as f64 / count / 255.0).collect()
    }

    /// Hex sha256 of the shape, pixels, labels and class names: a provenance fingerprint of
    /// exactly what was trained on, independent of the file it came from. A streamed set's
    /// covers its files' names and sizes (from the index) instead of the pixels.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for d in [self.len(), self.height, self.width, self.channels] {
            h.update((d as u64).to_le_bytes());
        }
        match &self.pixels {
            Pixels::Memory(p) => h.update(p),
            Pixels::Stream { index, files } => {
                for &f in files {
                    index.hash_entry(f as usize, &mut h);
                }
            }
        }
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
