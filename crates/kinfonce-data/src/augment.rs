//! SimCLR augmentations as pure functions of `(seed, epoch, index, view)`.
//!
//! The pipeline of the official code (pl_bolts' `SimCLRTrainDataTransform`), in order:
//! 1. RandomResizedCrop to `size` (scale 0.08-1, ratio 3/4-4/3; torchvision's sampler: 10
//!    attempts, then a central crop), bilinear with antialiasing;
//! 2. horizontal flip with p = 0.5;
//! 3. with p = 0.8, ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s) for strength `s`, its four
//!    adjustments in a random order;
//! 4. grayscale with p = 0.2;
//! 5. optionally Gaussian blur with p = 0.5, kernel `0.1 * size` made odd, sigma 0.1-2;
//! 6. normalisation `(x - mean) / std` per channel.
//!
//! Everything is computed in `f32` in [0, 1] (no rounding to bytes between steps, unlike PIL).
//! Each draw comes from a [`CounterRng`] keyed by `(seed, epoch, index, view)`, so a view
//! is the same on any thread, in any order, after any resume.

use crate::blur::gaussian_blur;
use crate::color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, to_grayscale,
};
use crate::error::{DataError, Result};
use crate::format::DataFormat;
use crate::resize::{resize_box, resize_crop};
use crate::rng::CounterRng;
use crate::tensor::{Element, Layout};

/// ColorJitter ranges, torchvision semantics: brightness, contrast and saturation factors are
/// drawn uniformly in `[max(0, 1 - x), 1 + x]`, the hue shift in `[-hue, hue]` (turns, <= 0.5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorJitter {
    /// Default 0.4 (SimCLR strength 0.5: 0.8 * 0.5).
    pub brightness: f32,
    /// Default 0.4.
    pub contrast: f32,
    /// Default 0.4.
    pub saturation: f32,
    /// Default 0.1 (0.2 * 0.5).
    pub hue: f32,
}

impl ColorJitter {
    /// SimCLR's jitter of strength `s`: `(0.8 s, 0.8 s, 0.8 s, 0.2 s)`.
    pub fn simclr(strength: f32) -> Self {
        ColorJitter {
            brightness: 0.8 * strength,
            contrast: 0.8 * strength,
            saturation: 0.8 * strength,
            hue: 0.2 * strength,
        }
    }
}

impl Default for ColorJitter {
    fn default() -> Self {
        ColorJitter::simclr(0.5)
    }
}

/// Gaussian blur settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlurConfig {
    /// Odd kernel size. SimCLR: `0.1 * size`, plus one when even.
    pub kernel_size: usize,
    /// Range of the uniformly drawn sigma. Default (0.1, 2.0).
    pub sigma: (f32, f32),
    /// Probability of blurring. Default 0.5 (pl_bolts' GaussianBlur).
    pub p: f64,
}

impl BlurConfig {
    /// SimCLR's blur for images of side `size`.
    pub fn simclr(size: usize) -> Self {
        let k = (size as f64 * 0.1) as usize;
        BlurConfig {
            kernel_size: if k.is_multiple_of(2) { k + 1 } else { k },
            sigma: (0.1, 2.0),
            p: 0.5,
        }
    }
}

/// Per-channel normalisation `(x - mean) / std` of [0, 1] values. A 1-entry mean/std applies
/// to every channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Channel means.
    pub mean: Vec<f32>,
    /// Channel standard deviations (> 0).
    pub std: Vec<f32>,
}

impl Normalization {
    /// CIFAR-10 (pl_bolts: 125.3, 123.0, 113.9 / 255 and 63.0, 62.1, 66.7 / 255).
    pub fn cifar10() -> Self {
        Self::new(
            &[125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0],
            &[63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0],
        )
    }
    /// ImageNet (also used for TinyImageNet and folders).
    pub fn imagenet() -> Self {
        Self::new(&[0.485, 0.456, 0.406], &[0.229, 0.224, 0.225])
    }
    /// STL-10 (pl_bolts: 0.43, 0.42, 0.39 and 0.27, 0.26, 0.27).
    pub fn stl10() -> Self {
        Self::new(&[0.43, 0.42, 0.39], &[0.27, 0.26, 0.27])
    }
    /// MNIST (0.1307, 0.3081), for every channel.
    pub fn mnist() -> Self {
        Self::new(&[0.1307], &[0.3081])
    }
    /// No change: mean 0, std 1.
    pub fn identity() -> Self {
        Self::new(&[0.0], &[1.0])
    }
    /// From slices.
    pub fn new(mean: &[f32], std: &[f32]) -> Self {
        Normalization {
            mean: mean.to_vec(),
            std: std.to_vec(),
        }
    }
    /// The statistics the official code uses for `format`. CIFAR-100 is normalised with the
    /// CIFAR-10 constants, as the official code does (its CIFAR-100 path reuses pl_bolts'
    /// `cifar10_normalization`), not with CIFAR-100's own statistics.
    pub fn for_format(format: DataFormat) -> Self {
        match format {
            DataFormat::Cifar10 | DataFormat::Cifar100 => Self::cifar10(),
            DataFormat::Mnist => Self::mnist(),
            DataFormat::Stl10 => Self::stl10(),
            DataFormat::ImageFolder | DataFormat::TinyImageNet => Self::imagenet(),
        }
    }
    /// `(scale, shift)` per channel so that `x * scale + shift = (x - mean) / std`.
    fn affine(&self, channels: usize) -> Vec<(f32, f32)> {
        (0..channels)
            .map(|c| {
                let m = self.mean[c.min(self.mean.len() - 1)];
                let s = self.std[c.min(self.std.len() - 1)];
                (1.0 / s, -m / s)
            })
            .collect()
    }
    fn check(&self, channels: usize) -> Result<()> {
        for (name, v) in [
            ("normalization mean", &self.mean),
            ("normalization std", &self.std),
        ] {
            if !(v.len() == 1 || v.len() == channels) {
                return Err(DataError::param(
                    name,
                    format!("{v:?}"),
                    format!("1 or {channels} values"),
                ));
            }
        }
        if self.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err(DataError::param(
                "normalization std",
                format!("{:?}", self.std),
                "positive values",
            ));
        }
        Ok(())
    }
}

/// The names of [`AugmentConfig::named`].
pub const AUGMENT_PRESETS: [&str; 3] = ["auto", "moco-v2", "moco-v2-simclr-views"];

/// The augmentation pipeline's settings. Defaults: [`AugmentConfig::simclr`]`(32, 0.5, false,
/// Normalization::cifar10())`, the official CIFAR-10 pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Output side in pixels (square views).
    pub size: usize,
    /// `Some(p)`: torchvision's `RandomCrop(size, padding=p)` instead of the random resized
    /// crop: the image zero-padded by p pixels on every side, a `size x size` window placed
    /// uniformly, no resizing (the MoCo linear protocol's crop). Default `None`.
    pub pad_crop: Option<usize>,
    /// Crop area as a fraction of the image, drawn uniformly. Default (0.08, 1.0).
    pub crop_scale: (f64, f64),
    /// Crop aspect ratio w/h, drawn log-uniformly. Default (3/4, 4/3).
    pub crop_ratio: (f64, f64),
    /// Probability of a horizontal flip. Default 0.5.
    pub flip_p: f64,
    /// ColorJitter ranges.
    pub jitter: ColorJitter,
    /// Probability of applying the jitter. Default 0.8.
    pub jitter_p: f64,
    /// Probability of grayscale. Default 0.2.
    pub grayscale_p: f64,
    /// Gaussian blur, or `None` (CIFAR).
    pub blur: Option<BlurConfig>,
    /// Final normalisation.
    pub normalization: Normalization,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig::simclr(32, 0.5, false, Normalization::cifar10())
    }
}

impl AugmentConfig {
    /// The SimCLR pipeline at output side `size`, jitter strength `strength`, blur or not.
    pub fn simclr(size: usize, strength: f32, blur: bool, normalization: Normalization) -> Self {
        AugmentConfig {
            size,
            pad_crop: None,
            crop_scale: (0.08, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter: ColorJitter::simclr(strength),
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur: blur.then(|| BlurConfig::simclr(size)),
            normalization,
        }
    }

    /// The official preset for a data set at output side `size`: CIFAR-10/100 and MNIST jitter
    /// strength 0.5 without blur; STL-10, TinyImageNet and folders (ImageNet-like) strength 1.0
    /// with blur.
    pub fn preset(format: DataFormat, size: usize) -> Self {
        let norm = Normalization::for_format(format);
        match format {
            DataFormat::Cifar10 | DataFormat::Cifar100 | DataFormat::Mnist => {
                Self::simclr(size, 0.5, false, norm)
            }
            DataFormat::Stl10 | DataFormat::TinyImageNet | DataFormat::ImageFolder => {
                Self::simclr(size, 1.0, true, norm)
            }
        }
    }

    /// lightly's `MoCoV2Transform` from lightly 1.4.24 on (its current definition) as the
    /// official MoCo calls it (`gaussian_blur=0.0`): crop scale 0.2-1, jitter 0.4/0.4/0.4/0.1
    /// with probability 0.8, grayscale 0.2, flip 0.5, no blur, ImageNet normalisation.
    pub fn moco_v2(size: usize) -> Self {
        AugmentConfig {
            crop_scale: (0.2, 1.0),
            jitter: ColorJitter {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.4,
                hue: 0.1,
            },
            ..Self::moco_v2_simclr_views(size)
        }
    }

    /// lightly's `MoCoV2Transform` before 1.4.24, which was its `SimCLRTransform`: the SimCLR
    /// pipeline at jitter strength 1.0 (0.8/0.8/0.8/0.2), crop scale 0.08-1, no blur, ImageNet
    /// normalisation. (The official repository does not pin lightly.)
    pub fn moco_v2_simclr_views(size: usize) -> Self {
        Self::simclr(size, 1.0, false, Normalization::imagenet())
    }

    /// A pipeline by its name in [`AUGMENT_PRESETS`]: `auto` ([`AugmentConfig::preset`] of
    /// `format`), `moco-v2` ([`AugmentConfig::moco_v2`]) or `moco-v2-simclr-views`
    /// ([`AugmentConfig::moco_v2_simclr_views`]). The CLI and the Python loader choose their
    /// views by these names.
    pub fn named(name: &str, format: DataFormat, size: usize) -> Result<Self> {
        match name {
            "auto" => Ok(Self::preset(format, size)),
            "moco-v2" => Ok(Self::moco_v2(size)),
            "moco-v2-simclr-views" => Ok(Self::moco_v2_simclr_views(size)),
            other => Err(DataError::param(
                "augment",
                other,
                AUGMENT_PRESETS.join(" or "),
            )),
        }
    }

    /// Checks the ranges for images with `channels` channels.
    pub fn validate(&self, channels: usize) -> Result<()> {
        if self.size == 0 {
            return Err(DataError::param("size", 0, "a positive output side"));
        }
        let (lo, hi) = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(DataError::param(
                "crop_scale",
                format!("({lo}, {hi})"),
                "0 < min <= max <= 1",
            ));
        }
        let (lo, hi) = self.crop_ratio;
        if !(lo > 0.0 && lo <= hi) {
            return Err(DataError::param(
                "crop_ratio",
                format!("({lo}, {hi})"),
                "0 < min <= max",
            ));
        }
        for (name, p) in [
            ("flip_p", self.flip_p),
            ("jitter_p", self.jitter_p),
            ("grayscale_p", self.grayscale_p),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(DataError::param(name, p, "a probability in [0, 1]"));
            }
        }
        let j = self.jitter;
        if [j.brightness, j.contrast, j.saturation]
            .iter()
            .any(|x| x.is_nan() || *x < 0.0)
            || !(0.0..=0.5).contains(&j.hue)
        {
            return Err(DataError::param(
                "jitter",
                format!("{j:?}"),
                "brightness, contrast, saturation >= 0 and hue in [0, 0.5]",
            ));
        }
        if let Some(b) = self.blur {
            if b.kernel_size.is_multiple_of(2)
                || !(b.sigma.0 > 0.0 && b.sigma.0 <= b.sigma.1)
                || !(0.0..=1.0).contains(&b.p)
            {
                return Err(DataError::param(
                    "blur",
                    format!("{b:?}"),
                    "an odd kernel, 0 < sigma min <= max, p in [0, 1]",
                ));
            }
        }
        self.normalization.check(channels)
    }
}

/// The coordinates that determine one augmented view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ViewKey {
    /// The run's seed.
    pub seed: u64,
    /// The epoch.
    pub epoch: u64,
    /// The image's index in its data set.
    pub index: u64,
    /// Which view (0 or 1 for SimCLR pairs).
    pub view: u64,
}

impl ViewKey {
    fn rng(&self) -> CounterRng {
        CounterRng::new(&[self.seed, self.epoch, self.index, self.view])
    }
}

/// A crop rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 attempts at a crop of area
/// `U(scale) * H W` and aspect `exp(U(log ratio))`, sides rounded; the first that fits is
/// placed uniformly. Otherwise a central crop clamped to the ratio range.
pub fn random_resized_crop(
    h: usize,
    w: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut CounterRng,
) -> Crop {
    let area = (h * w) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale.0, scale.1);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let top = rng.below((h - ch + 1) as u64) as usize;
            let left = rng.below((w - cw + 1) as u64) as usize;
            return Crop {
                top,
                left,
                height: ch,
                width: cw,
            };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, ((w as f64 / ratio.0).round() as usize).max(1))
    } else if in_ratio > ratio.1 {
        (((h as f64 * ratio.1).round() as usize).max(1), h)
    } else {
        (w, h)
    };
    Crop {
        top: (h - ch) / 2,
        left: (w - cw) / 2,
        height: ch,
        width: cw,
    }
}

/// torchvision's `RandomCrop.get_params` on the image padded by `pad`: a `size x size` window
/// of the padded `(h + 2 pad) x (w + 2 pad)` image, its corner drawn uniformly (in padded
/// coordinates).
pub fn padded_crop(h: usize, w: usize, size: usize, pad: usize, rng: &mut CounterRng) -> Crop {
    let room = |side: usize| ((side + 2 * pad).saturating_sub(size) + 1) as u64;
    let top = rng.below(room(h)) as usize;
    let left = rng.below(room(w)) as usize;
    Crop {
        top,
        left,
        height: size,
        width: size,
    }
}

/// The window `crop` (padded coordinates) of `image` zero-padded by `pad`, as values in [0, 1]
/// (`out`: `[crop.height, crop.width, c]`).
fn copy_padded(image: &[u8], shape: ImageShape, crop: Crop, pad: usize, out: &mut [f32]) {
    let ImageShape {
        height: h,
        width: w,
        channels: c,
    } = shape;
    for y in 0..crop.height {
        let row = &mut out[y * crop.width * c..(y + 1) * crop.width * c];
        let sy = (crop.top + y).checked_sub(pad).filter(|&sy| sy < h);
        for x in 0..crop.width {
            let sx = (crop.left + x).checked_sub(pad).filter(|&sx| sx < w);
            for ch in 0..c {
                row[x * c + ch] = match (sy, sx) {
                    (Some(sy), Some(sx)) => image[(sy * w + sx) * c + ch] as f32 / 255.0,
                    _ => 0.0,
                };
            }
        }
    }
}

/// What was drawn for one view (for tests, statistics and debugging).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewParams {
    /// The crop.
    pub crop: Crop,
    /// Whether the view was flipped.
    pub flipped: bool,
    /// When jitter applied: the order (0 brightness, 1 contrast, 2 saturation, 3 hue) and
    /// the factors `[brightness, contrast, saturation, hue shift]`.
    pub jitter: Option<([usize; 4], [f32; 4])>,
    /// Whether the view was made gray.
    pub grayscale: bool,
    /// The blur sigma, when blurred.
    pub blur_sigma: Option<f32>,
}

/// Scratch buffers reused across views (one per worker thread).
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    work: Vec<f32>,
    tmp: Vec<f32>,
    resized: Vec<f32>,
    /// A decoded image (streamed sets).
    decoded: Vec<u8>,
    /// A file's bytes (streamed sets).
    pub(crate) file: Vec<u8>,
}

/// The image geometry that a view reads: `[height, width, channels]` `u8` HWC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 or 3.
    pub channels: usize,
}

fn draw_factor(rng: &mut CounterRng, x: f32) -> f32 {
    rng.uniform((1.0 - x as f64).max(0.0), 1.0 + x as f64) as f32
}

/// Writes one augmented view of `image` to `out` (normalised, in `layout`) and returns what
/// was drawn. Call [`AugmentConfig::validate`] once beforehand.
///
/// # Shapes
/// `image`: `[h, w, c]` `u8`; `out`: `[c, size, size]` (NCHW) or `[size, size, c]` (NHWC).
pub fn augment_view<T: Element>(
    cfg: &AugmentConfig,
    image: &[u8],
    shape: ImageShape,
    key: ViewKey,
    layout: Layout,
    out: &mut [T],
    scratch: &mut Scratch,
) -> ViewParams {
    let decoded = |_: Option<Crop>, _: &mut Vec<u8>| Ok(shape);
    let mut rng = key.rng();
    let crop = crop_into_work(cfg, Some(image), shape, &mut rng, scratch, decoded)
        .expect("an image in memory always reads");
    finish_view(cfg, rng, crop, layout, out, scratch)
}

/// [`augment_view`] of an image that is decoded only once its crop is known: `decode(crop,
/// buf)` fills `buf` with the image (HWC `u8`, `shape.channels` channels) at any size that
/// keeps its aspect and covers the crop at the output side (a scaled JPEG decode), and returns
/// that size; `crop` is `None` when the whole image is needed. The crop is drawn on `shape`,
/// the original size, so the view is the same whatever the decode's scale, up to resampling.
pub(crate) fn augment_view_decoded<T: Element>(
    cfg: &AugmentConfig,
    shape: ImageShape,
    key: ViewKey,
    layout: Layout,
    out: &mut [T],
    scratch: &mut Scratch,
    decode: impl FnOnce(Option<Crop>, &mut Vec<u8>) -> Result<ImageShape>,
) -> Result<ViewParams> {
    let mut rng = key.rng();
    let crop = crop_into_work(cfg, None, shape, &mut rng, scratch, decode)?;
    Ok(finish_view(cfg, rng, crop, layout, out, scratch))
}

/// Draws the crop of a view on `shape` and writes it, resized to `size x size`, to
/// `scratch.work`. The pixels are `image` when given, else what `decode` writes to
/// `scratch.decoded`.
fn crop_into_work(
    cfg: &AugmentConfig,
    image: Option<&[u8]>,
    shape: ImageShape,
    rng: &mut CounterRng,
    scratch: &mut Scratch,
    decode: impl FnOnce(Option<Crop>, &mut Vec<u8>) -> Result<ImageShape>,
) -> Result<Crop> {
    let ImageShape {
        height: h,
        width: w,
        channels: c,
    } = shape;
    let s = cfg.size;
    let Scratch {
        work, tmp, decoded, ..
    } = scratch;
    work.resize(s * s * c, 0.0);
    let crop = match cfg.pad_crop {
        Some(pad) => padded_crop(h, w, s, pad, rng),
        None => random_resized_crop(h, w, cfg.crop_scale, cfg.crop_ratio, rng),
    };
    let got = decode(cfg.pad_crop.is_none().then_some(crop), decoded)?;
    let pixels = image.unwrap_or(&decoded[..]);
    match cfg.pad_crop {
        Some(pad) => copy_padded(pixels, got, crop, pad, work),
        None => resize_decoded(pixels, got, shape, crop, s, work, tmp),
    }
    Ok(crop)
}

/// The box `crop`, drawn on an image of `shape`, of `pixels`, that image decoded at size `got`
/// (the same, or a scaled decode), resampled to `size x size` into `work` (f32 HWC in [0, 1]).
pub(crate) fn resize_decoded(
    pixels: &[u8],
    got: ImageShape,
    shape: ImageShape,
    crop: Crop,
    size: usize,
    work: &mut [f32],
    tmp: &mut Vec<f32>,
) {
    let c = shape.channels;
    if got == shape {
        let bx = (crop.top, crop.left, crop.height, crop.width);
        return resize_crop(pixels, shape.width, c, bx, (size, size), work, tmp);
    }
    let d = decode_scale(shape, got);
    let bx = (
        crop.top as f64 / d,
        crop.left as f64 / d,
        crop.height as f64 / d,
        crop.width as f64 / d,
    );
    resize_box(
        pixels,
        (got.height, got.width),
        c,
        bx,
        (size, size),
        work,
        tmp,
    )
}

/// How many original pixels one pixel of a decode of size `got` spans: `d` for a decode at
/// 1/d (its last row and column may be partial, so `shape / got` would stretch boxes).
fn decode_scale(shape: ImageShape, got: ImageShape) -> f64 {
    [1.0, 2.0, 4.0, 8.0]
        .into_iter()
        .find(|&d: &f64| {
            (shape.height as f64 / d).ceil() as usize == got.height
                && (shape.width as f64 / d).ceil() as usize == got.width
        })
        .unwrap_or(shape.height as f64 / got.height as f64)
}

/// The steps after the crop (flip, jitter, grayscale, blur, normalisation), drawn from `rng`
/// where the crop left it.
fn finish_view<T: Element>(
    cfg: &AugmentConfig,
    mut rng: CounterRng,
    crop: Crop,
    layout: Layout,
    out: &mut [T],
    scratch: &mut Scratch,
) -> ViewParams {
    let s = cfg.size;
    let c = scratch.work.len() / (s * s);
    let work = &mut scratch.work;
    let flipped = rng.bernoulli(cfg.flip_p);
    if flipped {
        for row in work.chunks_exact_mut(s * c) {
            for x in 0..s / 2 {
                for ch in 0..c {
                    row.swap(x * c + ch, (s - 1 - x) * c + ch);
                }
            }
        }
    }
    let jitter = if rng.bernoulli(cfg.jitter_p) {
        let mut order = [0usize, 1, 2, 3];
        rng.shuffle(&mut order);
        let j = cfg.jitter;
        let factors = [
            draw_factor(&mut rng, j.brightness),
            draw_factor(&mut rng, j.contrast),
            draw_factor(&mut rng, j.saturation),
            rng.uniform(-j.hue as f64, j.hue as f64) as f32,
        ];
        for &op in &order {
            match op {
                0 if j.brightness > 0.0 => adjust_brightness(work, factors[0]),
                1 if j.contrast > 0.0 => adjust_contrast(work, c, factors[1]),
                2 if j.saturation > 0.0 => adjust_saturation(work, c, factors[2]),
                3 if j.hue > 0.0 => adjust_hue(work, c, factors[3]),
                _ => {}
            }
        }
        Some((order, factors))
    } else {
        None
    };
    let grayscale = rng.bernoulli(cfg.grayscale_p);
    if grayscale {
        to_grayscale(work, c);
    }
    let blur_sigma = cfg.blur.and_then(|b| {
        rng.bernoulli(b.p).then(|| {
            let sigma = rng.uniform(b.sigma.0 as f64, b.sigma.1 as f64) as f32;
            gaussian_blur(work, s, s, c, b.kernel_size, sigma, &mut scratch.tmp);
            sigma
        })
    });
    write_normalized(work, s * s, c, &cfg.normalization, layout, out);
    ViewParams {
        crop,
        flipped,
        jitter,
        grayscale,
        blur_sigma,
    }
}

/// Writes `image` without augmentation: resized (antialiased bilinear) to `size x size` when
/// its side differs, then normalised. For features and evaluation.
///
/// # Shapes
/// `image`: `[h, w, c]` `u8`; `out`: `[c, size, size]` (NCHW) or `[size, size, c]` (NHWC).
pub fn eval_view<T: Element>(
    image: &[u8],
    shape: ImageShape,
    size: usize,
    normalization: &Normalization,
    layout: Layout,
    out: &mut [T],
    scratch: &mut Scratch,
) {
    let c = shape.channels;
    resize_whole(
        image,
        shape,
        (size, size),
        &mut scratch.work,
        &mut scratch.tmp,
    );
    write_normalized(&scratch.work, size * size, c, normalization, layout, out);
}

/// The whole `image` resampled to `(out_h, out_w)` into `buf` (f32 HWC in [0, 1]).
fn resize_whole(
    image: &[u8],
    shape: ImageShape,
    (out_h, out_w): (usize, usize),
    buf: &mut Vec<f32>,
    tmp: &mut Vec<f32>,
) {
    let ImageShape {
        height: h,
        width: w,
        channels: c,
    } = shape;
    buf.resize(out_h * out_w * c, 0.0);
    resize_crop(image, w, c, (0, 0, h, w), (out_h, out_w), buf, tmp);
}

/// The side that pl_bolts' evaluation transforms resize to before their centre crop:
/// `int(size + 0.1 * size)` (35 for 32, 105 for 96).
pub fn center_crop_resize(size: usize) -> usize {
    size + size / 10
}

/// The official evaluation view (pl_bolts' `SimCLREvalDataTransform` online view and
/// `SimCLRFinetuneTransform(eval_transform=True)`): `Resize(int(1.1 size))` of the shorter side
/// (the longer one keeps the aspect, truncated, as torchvision), then `CenterCrop(size)` (offsets
/// `round((side - size) / 2)`, ties to even as Python's `round`), then normalisation.
///
/// # Shapes
/// `image`: `[h, w, c]` `u8`; `out`: `[c, size, size]` (NCHW) or `[size, size, c]` (NHWC).
pub fn center_crop_view<T: Element>(
    image: &[u8],
    shape: ImageShape,
    size: usize,
    normalization: &Normalization,
    layout: Layout,
    out: &mut [T],
    scratch: &mut Scratch,
) {
    let short = center_crop_resize(size);
    let side = resized_sides(shape, short);
    let whole = (shape.height as f64, shape.width as f64);
    center_crop_of(image, shape, whole, side, size, scratch);
    let c = shape.channels;
    write_normalized(&scratch.work, size * size, c, normalization, layout, out);
}

/// The side that ImageNet's evaluation transform resizes to before its centre crop, scaled
/// with the output side: `Resize(256)` for `CenterCrop(224)`, so `size * 8 / 7`.
pub fn imagenet_resize(size: usize) -> usize {
    size * 8 / 7
}

/// ImageNet's evaluation view, `Resize(size * 8 / 7)` of the shorter side then
/// `CenterCrop(size)` and normalisation (the views of streamed sets), of an image decoded by
/// `decode(buf)` at any size that keeps its aspect and covers the resized image (a scaled JPEG
/// decode); `shape` is the original size, which sets the resized sides as torchvision does.
pub(crate) fn imagenet_eval_view_decoded<T: Element>(
    shape: ImageShape,
    size: usize,
    normalization: &Normalization,
    layout: Layout,
    out: &mut [T],
    scratch: &mut Scratch,
    decode: impl FnOnce((usize, usize), &mut Vec<u8>) -> Result<ImageShape>,
) -> Result<()> {
    let side = resized_sides(shape, imagenet_resize(size));
    let mut decoded = std::mem::take(&mut scratch.decoded);
    let got = decode(side, &mut decoded);
    if let Ok(got) = got {
        let d = decode_scale(shape, got);
        let whole = (shape.height as f64 / d, shape.width as f64 / d);
        center_crop_of(&decoded, got, whole, side, size, scratch);
    }
    scratch.decoded = decoded;
    got?;
    write_normalized(
        &scratch.work,
        size * size,
        shape.channels,
        normalization,
        layout,
        out,
    );
    Ok(())
}

/// torchvision's `Resize(short)` sides: the shorter side `short`, the longer one keeping the
/// aspect, truncated. Returns `(height, width)`.
pub(crate) fn resized_sides(shape: ImageShape, short: usize) -> (usize, usize) {
    let (h, w) = (shape.height, shape.width);
    if h <= w {
        (short, (short * w / h).max(short))
    } else {
        ((short * h / w).max(short), short)
    }
}

/// The `(height, width)` extent of `image` (of `shape`; the whole image, or less when a scaled
/// decode's last row and column are partial) resized to `(rh, rw)`, then its centre
/// `size x size` (offsets `round((side - size) / 2)`, ties to even as Python's `round`) into
/// `scratch.work`.
fn center_crop_of(
    image: &[u8],
    shape: ImageShape,
    (eh, ew): (f64, f64),
    (rh, rw): (usize, usize),
    size: usize,
    scratch: &mut Scratch,
) {
    let c = shape.channels;
    scratch.resized.resize(rh * rw * c, 0.0);
    resize_box(
        image,
        (shape.height, shape.width),
        c,
        (0.0, 0.0, eh, ew),
        (rh, rw),
        &mut scratch.resized,
        &mut scratch.tmp,
    );
    let offset = |side: usize| ((side - size) as f64 / 2.0).round_ties_even() as usize;
    let (top, left) = (offset(rh), offset(rw));
    scratch.work.clear();
    for y in top..top + size {
        let row = (y * rw + left) * c;
        scratch
            .work
            .extend_from_slice(&scratch.resized[row..row + size * c]);
    }
}

fn write_normalized<T: Element>(
    work: &[f32],
    pixels: usize,
    c: usize,
    norm: &Normalization,
    layout: Layout,
    out: &mut [T],
) {
    let affine = norm.affine(c);
    match layout {
        Layout::Nhwc => {
            for (o, px) in out.chunks_exact_mut(c).zip(work.chunks_exact(c)) {
                for ((d, &v), &(a, b)) in o.iter_mut().zip(px).zip(&affine) {
                    *d = T::from_f32(v * a + b);
                }
            }
        }
        Layout::Nchw => {
            for (ch, &(a, b)) in affine.iter().enumerate() {
                let plane = &mut out[ch * pixels..(ch + 1) * pixels];
                for (p, d) in plane.iter_mut().enumerate() {
                    *d = T::from_f32(work[p * c + ch] * a + b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_pipelines_are_the_presets_and_unknown_names_are_refused() {
        let auto = AugmentConfig::named("auto", DataFormat::Stl10, 64).unwrap();
        assert_eq!(auto, AugmentConfig::preset(DataFormat::Stl10, 64));
        let moco = AugmentConfig::named("moco-v2", DataFormat::Cifar10, 32).unwrap();
        assert_eq!(moco.normalization, Normalization::imagenet());
        assert!(moco.blur.is_none());
        let err = AugmentConfig::named("byol", DataFormat::Cifar10, 32).unwrap_err();
        assert!(err.to_string().contains("augment = byol"), "{err}");
    }

    /// Both MoCo v2 view sets, every field, against lightly's `MoCoV2Transform` as
    /// `moco/moco.py` calls it (`input_size=32, gaussian_blur=0.0`, the other arguments default):
    /// from lightly 1.4.24 on, and before it (when it was `SimCLRTransform`).
    #[test]
    fn the_moco_v2_view_sets_are_lightlys_field_by_field() {
        let imagenet = Normalization::new(&[0.485, 0.456, 0.406], &[0.229, 0.224, 0.225]);
        let lightly = |crop_min: f64, jitter: [f32; 4]| AugmentConfig {
            size: 32,
            pad_crop: None,
            crop_scale: (crop_min, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter: ColorJitter {
                brightness: jitter[0],
                contrast: jitter[1],
                saturation: jitter[2],
                hue: jitter[3],
            },
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur: None,
            normalization: imagenet.clone(),
        };
        for (name, want) in [
            ("moco-v2", lightly(0.2, [0.4, 0.4, 0.4, 0.1])),
            ("moco-v2-simclr-views", lightly(0.08, [0.8, 0.8, 0.8, 0.2])),
        ] {
            // The data set does not change them (the official CIFAR-100 and TinyImageNet runs
            // call the same transform).
            for format in [DataFormat::Cifar10, DataFormat::TinyImageNet] {
                let got = AugmentConfig::named(name, format, 32).unwrap();
                assert_eq!(got, want, "{name} on {format:?}");
            }
        }
    }

    fn key(index: u64, view: u64) -> ViewKey {
        ViewKey {
            seed: 1,
            epoch: 2,
            index,
            view,
        }
    }

    fn gradient_image(side: usize) -> Vec<u8> {
        (0..side * side)
            .flat_map(|p| [(p % side * 8) as u8, (p / side * 8) as u8, 128])
            .collect()
    }

    #[test]
    fn crop_scale_and_ratio_distribution() {
        // A first attempt with area fraction A and log-ratio l ~ U(-L, L), L = ln(4/3), fits
        // iff A <= exp(-|l|), so the accepted area has density proportional to
        // w(A) = min(1, -ln(A) / L) on [0.08, 1]: mean 0.4778 and P(A < 0.5) = 0.42 / 0.7890
        // (closed form; a large image makes side rounding negligible).
        let mut areas = Vec::new();
        let mut log_ratios = Vec::new();
        for i in 0..40_000 {
            let mut rng = key(i, 0).rng();
            let c = random_resized_crop(512, 512, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(
                c.top + c.height <= 512 && c.left + c.width <= 512 && c.height > 0 && c.width > 0
            );
            areas.push((c.height * c.width) as f64 / (512.0 * 512.0));
            log_ratios.push((c.width as f64 / c.height as f64).ln());
        }
        let n = areas.len() as f64;
        let mean = areas.iter().sum::<f64>() / n;
        assert!((mean - 0.4778).abs() < 0.005, "mean area {mean}");
        let below_half = areas.iter().filter(|&&a| a < 0.5).count() as f64 / n;
        assert!(
            (below_half - 0.42 / 0.7890).abs() < 0.01,
            "P(area < 0.5) = {below_half}"
        );
        let lr = log_ratios.iter().sum::<f64>() / n;
        assert!(lr.abs() < 0.01, "mean log ratio {lr}");
        assert!(log_ratios
            .iter()
            .all(|r| r.abs() < (4.0f64 / 3.0).ln() + 0.01));
        assert!(areas.iter().all(|&a| a > 0.079 && a <= 1.0));
    }

    #[test]
    fn crop_falls_back_to_the_centre() {
        // A scale range no 1-row image can satisfy at ratios near 1 -> central fallback with
        // the ratio clamped: in_ratio 10 > 4/3 gives h = 1, w = round(4/3) = 1.
        let mut rng = key(0, 0).rng();
        let c = random_resized_crop(1, 10, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!(
            c,
            Crop {
                top: 0,
                left: 4,
                height: 1,
                width: 1
            }
        );
    }

    #[test]
    fn views_are_deterministic_per_key_and_differ_otherwise() {
        let cfg = AugmentConfig::preset(DataFormat::Stl10, 16);
        cfg.validate(3).unwrap();
        let img = gradient_image(16);
        let shape = ImageShape {
            height: 16,
            width: 16,
            channels: 3,
        };
        let run = |k: ViewKey| {
            let mut out = vec![0.0f32; 3 * 16 * 16];
            augment_view(
                &cfg,
                &img,
                shape,
                k,
                Layout::Nchw,
                &mut out,
                &mut Scratch::default(),
            );
            out
        };
        let a = run(key(5, 0));
        assert_eq!(a, run(key(5, 0)));
        for other in [
            key(5, 1),
            key(6, 0),
            ViewKey {
                epoch: 3,
                ..key(5, 0)
            },
            ViewKey {
                seed: 9,
                ..key(5, 0)
            },
        ] {
            assert_ne!(a, run(other), "{other:?}");
        }
    }

    #[test]
    fn padded_crop_is_the_shifted_image_with_a_black_border() {
        // RandomCrop(8, padding=2) on an 8 x 8 image: every corner of the 12 x 12 padded image
        // that leaves room for the window comes up, and the view is the image shifted there.
        let cfg = AugmentConfig {
            pad_crop: Some(2),
            flip_p: 0.0,
            jitter_p: 0.0,
            grayscale_p: 0.0,
            ..AugmentConfig::simclr(8, 0.5, false, Normalization::identity())
        };
        let img = gradient_image(8);
        let shape = ImageShape {
            height: 8,
            width: 8,
            channels: 3,
        };
        let mut corners = std::collections::HashSet::new();
        for i in 0..400 {
            let mut out = vec![0.0f32; 3 * 64];
            let p = augment_view(
                &cfg,
                &img,
                shape,
                key(i, 0),
                Layout::Nhwc,
                &mut out,
                &mut Scratch::default(),
            );
            assert_eq!((p.crop.height, p.crop.width), (8, 8));
            corners.insert((p.crop.top, p.crop.left));
            for y in 0..8 {
                for x in 0..8 {
                    let (sy, sx) = (y + p.crop.top, x + p.crop.left);
                    for ch in 0..3 {
                        let want = if (2..10).contains(&sy) && (2..10).contains(&sx) {
                            img[((sy - 2) * 8 + sx - 2) * 3 + ch] as f32 / 255.0
                        } else {
                            0.0
                        };
                        assert_eq!(out[(y * 8 + x) * 3 + ch], want, "view {i} at ({y}, {x})");
                    }
                }
            }
        }
        assert_eq!(corners.len(), 25, "corners drawn: {corners:?}");
        assert!(corners.iter().all(|&(t, l)| t <= 4 && l <= 4));
    }

    #[test]
    fn flip_is_a_mirror_and_layouts_agree() {
        // No crop change (scale 1, ratio 1), no colour: flipped and unflipped views mirror.
        let cfg = AugmentConfig {
            crop_scale: (1.0, 1.0),
            crop_ratio: (1.0, 1.0),
            jitter_p: 0.0,
            grayscale_p: 0.0,
            blur: None,
            normalization: Normalization::identity(),
            ..AugmentConfig::simclr(8, 0.5, false, Normalization::identity())
        };
        let img = gradient_image(8);
        let shape = ImageShape {
            height: 8,
            width: 8,
            channels: 3,
        };
        let mut seen = [None, None];
        for i in 0..40 {
            let mut out = vec![0.0f32; 3 * 64];
            let p = augment_view(
                &cfg,
                &img,
                shape,
                key(i, 0),
                Layout::Nhwc,
                &mut out,
                &mut Scratch::default(),
            );
            seen[p.flipped as usize] = Some(out);
        }
        let (plain, flipped) = (seen[0].take().unwrap(), seen[1].take().unwrap());
        for y in 0..8 {
            for x in 0..8 {
                for ch in 0..3 {
                    assert_eq!(
                        plain[(y * 8 + x) * 3 + ch],
                        flipped[(y * 8 + 7 - x) * 3 + ch]
                    );
                    assert!(
                        (plain[(y * 8 + x) * 3 + ch] - img[(y * 8 + x) * 3 + ch] as f32 / 255.0)
                            .abs()
                            < 1e-6
                    );
                }
            }
        }
        // NCHW holds the same numbers as NHWC, planar.
        let mut nchw = vec![0.0f32; 3 * 64];
        let mut nhwc = vec![0.0f32; 3 * 64];
        augment_view(
            &cfg,
            &img,
            shape,
            key(3, 0),
            Layout::Nchw,
            &mut nchw,
            &mut Scratch::default(),
        );
        augment_view(
            &cfg,
            &img,
            shape,
            key(3, 0),
            Layout::Nhwc,
            &mut nhwc,
            &mut Scratch::default(),
        );
        for p in 0..64 {
            for ch in 0..3 {
                assert_eq!(nchw[ch * 64 + p], nhwc[p * 3 + ch]);
            }
        }
    }

    #[test]
    fn probabilities_match_their_settings() {
        let cfg = AugmentConfig::preset(DataFormat::TinyImageNet, 8);
        let img = gradient_image(8);
        let shape = ImageShape {
            height: 8,
            width: 8,
            channels: 3,
        };
        let n = 4000;
        let (mut flips, mut jit, mut gray, mut blur) = (0, 0, 0, 0);
        let mut out = vec![half::bf16::ZERO; 3 * 64];
        let mut scratch = Scratch::default();
        for i in 0..n {
            let p = augment_view(
                &cfg,
                &img,
                shape,
                key(i, 1),
                Layout::Nchw,
                &mut out,
                &mut scratch,
            );
            flips += p.flipped as usize;
            jit += p.jitter.is_some() as usize;
            gray += p.grayscale as usize;
            if let Some(s) = p.blur_sigma {
                assert!((0.1..=2.0).contains(&s));
                blur += 1;
            }
            if let Some((_, f)) = p.jitter {
                assert!(
                    (0.2..=1.8).contains(&f[0]) && (-0.2..=0.2).contains(&f[3]),
                    "{f:?}"
                );
            }
        }
        let frac = |k: usize| k as f64 / n as f64;
        assert!((frac(flips) - 0.5).abs() < 0.03);
        assert!((frac(jit) - 0.8).abs() < 0.03);
        assert!((frac(gray) - 0.2).abs() < 0.03);
        assert!((frac(blur) - 0.5).abs() < 0.03);
        assert_eq!(BlurConfig::simclr(64).kernel_size, 7);
        assert_eq!(BlurConfig::simclr(96).kernel_size, 9);
    }

    #[test]
    fn normalization_and_eval_view() {
        // A flat image of 0.5 with CIFAR statistics.
        let img = vec![255u8 / 2 + 1; 4 * 4 * 3]; // 128/255
        let norm = Normalization::cifar10();
        let mut out = vec![0.0f32; 3 * 4 * 4];
        let shape = ImageShape {
            height: 4,
            width: 4,
            channels: 3,
        };
        eval_view(
            &img,
            shape,
            4,
            &norm,
            Layout::Nchw,
            &mut out,
            &mut Scratch::default(),
        );
        for ch in 0..3 {
            let want = (128.0 / 255.0 - norm.mean[ch]) / norm.std[ch];
            assert!(out[ch * 16..(ch + 1) * 16]
                .iter()
                .all(|v| (v - want).abs() < 1e-5));
        }
        let bad = AugmentConfig {
            normalization: Normalization::new(&[0.5, 0.5], &[1.0, 1.0]),
            ..Default::default()
        };
        assert!(bad
            .validate(3)
            .unwrap_err()
            .to_string()
            .contains("normalization mean"));
        let bad = AugmentConfig {
            crop_scale: (0.5, 0.2),
            ..Default::default()
        };
        assert!(bad
            .validate(3)
            .unwrap_err()
            .to_string()
            .contains("crop_scale"));
    }

    /// `(4 y + 8 x + 30 c + (x y mod 7) 5) mod 256`, HWC.
    fn pattern(h: usize, w: usize) -> Vec<u8> {
        (0..h * w * 3)
            .map(|i| {
                let (y, x, c) = (i / (w * 3), i / 3 % w, i % 3);
                ((4 * y + 8 * x + 30 * c + (x * y) % 7 * 5) % 256) as u8
            })
            .collect()
    }

    /// The official evaluation view against torchvision 0.26's output, generated by
    ///
    /// ```python
    /// import torch, torchvision.transforms.functional as F
    /// def pat(h, w):
    ///     return torch.tensor([[[(4*y + 8*x + 30*c + (x*y) % 7 * 5) % 256 for x in range(w)]
    ///                           for y in range(h)] for c in range(3)], dtype=torch.float32) / 255
    /// o = F.center_crop(F.resize(pat(12, 16), 11, antialias=True), [10, 10])  # o[1]
    /// o2 = F.center_crop(F.resize(pat(32, 32), 35, antialias=True), [32, 32])
    /// # o2[0, 0], o2[2, 31], o2.sum(dim=(1, 2))
    /// ```
    #[test]
    fn center_crop_view_matches_torchvision() {
        let view = |h: usize, w: usize, size: usize| {
            let mut out = vec![0.0f32; 3 * size * size];
            let shape = ImageShape {
                height: h,
                width: w,
                channels: 3,
            };
            let id = Normalization::identity();
            center_crop_view(
                &pattern(h, w),
                shape,
                size,
                &id,
                Layout::Nchw,
                &mut out,
                &mut Scratch::default(),
            );
            out
        };
        let close = |got: &[f32], want: &[f32], what: &str| {
            assert_eq!(got.len(), want.len());
            for (k, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() < 2e-6, "{what} [{k}]: {g} vs torchvision {w}");
            }
        };
        // 12 x 16 -> Resize(11) -> 11 x 14 -> CenterCrop(10): rows 0-9, columns 2-11.
        assert_eq!(center_crop_resize(10), 11);
        let small = view(12, 16, 10);
        #[rustfmt::skip]
        let channel1 = [
            0.199807, 0.237180, 0.274552, 0.311924, 0.338025, 0.376240, 0.415678, 0.453050, 0.490422, 0.527795,
            0.267144, 0.314781, 0.362418, 0.423253, 0.371866, 0.416472, 0.480669, 0.531239, 0.575943, 0.636777,
            0.320111, 0.331674, 0.343238, 0.413164, 0.386537, 0.456704, 0.535395, 0.553997, 0.558522, 0.624342,
            0.319407, 0.348567, 0.377728, 0.416273, 0.401207, 0.489434, 0.538210, 0.562678, 0.596531, 0.630384,
            0.309318, 0.365460, 0.421602, 0.431113, 0.415877, 0.515496, 0.522256, 0.580744, 0.634540, 0.652849,
            0.345861, 0.382353, 0.418845, 0.421024, 0.430547, 0.555728, 0.565251, 0.594118, 0.638235, 0.640414,
            0.334012, 0.359653, 0.385294, 0.410935, 0.441050, 0.520941, 0.551056, 0.576697, 0.602338, 0.627979,
            0.343280, 0.392383, 0.441487, 0.490590, 0.466833, 0.506160, 0.557977, 0.607081, 0.656184, 0.705287,
            0.410617, 0.433032, 0.455447, 0.528012, 0.489005, 0.546392, 0.622968, 0.656528, 0.667798, 0.740364,
            0.434842, 0.449925, 0.465008, 0.517924, 0.503676, 0.586624, 0.657164, 0.662862, 0.687330, 0.727929,
        ];
        close(&small[100..200], &channel1, "12x16 channel 1");
        // The CIFAR case: Resize(35) + CenterCrop(32), offsets round(1.5) = 2.
        assert_eq!(center_crop_resize(32), 35);
        let cifar = view(32, 32, 32);
        #[rustfmt::skip]
        let c0_row0 = [
            0.146559, 0.207255, 0.201705, 0.220804, 0.281501, 0.293177, 0.265638, 0.326335,
            0.387031, 0.446186, 0.408283, 0.461277, 0.521973, 0.490512, 0.506110, 0.566807,
            0.627503, 0.652765, 0.641052, 0.701749, 0.752641, 0.687847, 0.746583, 0.807279,
            0.867975, 0.859344, 0.881525, 0.942221, 0.949976, 0.926359, 0.818026, 0.231296,
        ];
        #[rustfmt::skip]
        let c2_row31 = [
            0.838451, 0.892941, 0.881016, 0.892397, 0.950920, 0.968744, 0.912316, 0.722646,
            0.075350, 0.124602, 0.082089, 0.125514, 0.189584, 0.164270, 0.186014, 0.252857,
            0.312389, 0.329596, 0.311845, 0.365326, 0.422365, 0.363718, 0.428599, 0.495442,
            0.549428, 0.534590, 0.548884, 0.607911, 0.621813, 0.604342, 0.671185, 0.735758,
        ];
        close(&cifar[..32], &c0_row0, "32x32 channel 0 row 0");
        close(
            &cifar[2 * 1024 + 31 * 32..3 * 1024],
            &c2_row31,
            "32x32 channel 2 row 31",
        );
        for (c, want) in [534.5383f64, 520.3881, 512.3500].iter().enumerate() {
            let sum: f64 = cifar[c * 1024..(c + 1) * 1024]
                .iter()
                .map(|&v| v as f64)
                .sum();
            assert!((sum - want).abs() < 1e-3, "channel {c} sum {sum} vs {want}");
        }
    }
}
