//! Streamed image folders: an index of the files built at start, each view decoded from its
//! file on the loader threads.
//!
//! The index holds, per image, its path relative to the folder, its size read from the
//! file's header (`height`, `width`) and its byte count: `path length + 20` bytes, plus 8 per
//! image of a split (its entry and label). It is cached in the folder as [`INDEX_FILE`] (when the folder
//! is writable) and checked against the listing at every start: a file whose name or byte
//! count changed is read again.
//!
//! A view's crop box is drawn on the original size; a JPEG is then decoded with the largest
//! DCT scaling (1/8, 1/4, 1/2) whose scaled box still covers the output side, so a small crop
//! of a large photo decodes at a fraction of the cost ([`dct_denominator`]). PNG, and JPEGs in
//! CMYK, decode at full size. EXIF orientation is ignored, as torchvision's `ImageFolder` does.
//!
//! Errors name the file: one that is not a JPEG or PNG fails when the index is built; one that
//! is damaged past its header (truncated, corrupt) fails the step that reads it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::augment::{resize_decoded, Crop, ImageShape};
use crate::error::{DataError, Result};

/// The index cache's file name inside the folder (hidden, so listings skip it).
pub const INDEX_FILE: &str = ".kinfonce-index.tsv";
const INDEX_HEADER: &str = "kinfonce-index 1";

/// The files of a streamed folder: relative paths and header sizes.
#[derive(Debug, PartialEq)]
pub struct StreamIndex {
    root: PathBuf,
    /// The relative paths, one after another (UTF-8 or lossy).
    paths: String,
    /// Where each path ends in `paths`.
    ends: Vec<u32>,
    /// `[height, width]` of each image.
    sizes: Vec<[u32; 2]>,
    /// Byte count of each file (the cache's check).
    bytes: Vec<u64>,
    /// Whether the cache on disk differs from this index.
    stale: bool,
}

/// What the cache remembers of one file.
#[derive(Clone, Copy)]
struct Cached {
    bytes: u64,
    height: u32,
    width: u32,
}

impl StreamIndex {
    /// Indexes `files` (paths under `root`), reading the header of every file the cache does
    /// not know ([`StreamIndex::save_cache`] writes what changed).
    pub fn build(root: &Path, files: &[PathBuf]) -> Result<StreamIndex> {
        let cache_path = root.join(INDEX_FILE);
        let cache = read_cache(&cache_path);
        let rel: Vec<String> = files
            .iter()
            .map(|f| {
                f.strip_prefix(root)
                    .unwrap_or(f)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let found = files
            .par_iter()
            .zip(&rel)
            .map(|(file, rel)| {
                let bytes = std::fs::metadata(file)
                    .map_err(|e| DataError::io(file, e))?
                    .len();
                match cache.get(rel.as_str()) {
                    Some(c) if c.bytes == bytes => Ok((*c, true)),
                    _ => {
                        let (height, width) = header_size(file)?;
                        Ok((
                            Cached {
                                bytes,
                                height,
                                width,
                            },
                            false,
                        ))
                    }
                }
            })
            .collect::<Result<Vec<(Cached, bool)>>>()?;
        let stale = cache.len() != files.len() || found.iter().any(|(_, hit)| !hit);
        let mut paths = String::new();
        let mut ends = Vec::with_capacity(files.len());
        for r in &rel {
            paths.push_str(r);
            let end = u32::try_from(paths.len()).map_err(|_| {
                DataError::format(root, "more than 4 GiB of file names in one folder")
            })?;
            ends.push(end);
        }
        Ok(StreamIndex {
            root: root.to_path_buf(),
            paths,
            ends,
            sizes: found.iter().map(|(c, _)| [c.height, c.width]).collect(),
            bytes: found.iter().map(|(c, _)| c.bytes).collect(),
            stale,
        })
    }

    /// Writes the cache into the folder when it differs from this index. A read-only folder
    /// keeps no cache; its headers are then read again at every start.
    pub fn save_cache(&self) {
        if self.stale {
            let _ = self.write_cache(&self.root.join(INDEX_FILE));
        }
    }

    fn write_cache(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tsv.tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(out, "{INDEX_HEADER}")?;
        for i in 0..self.len() {
            let [h, w] = self.sizes[i];
            writeln!(out, "{}\t{h}\t{w}\t{}", self.bytes[i], self.rel(i))?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    /// True when the index has no file.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    fn rel(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.paths[start..self.ends[i] as usize]
    }
    /// The full path of file `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(self.rel(i))
    }
    /// The size of image `i` (3 channels: every image is read as RGB).
    pub fn shape(&self, i: usize) -> ImageShape {
        let [height, width] = self.sizes[i];
        ImageShape {
            height: height as usize,
            width: width as usize,
            channels: 3,
        }
    }
    /// Bytes the index holds per image (names, offsets, sizes and byte counts).
    pub fn bytes_per_image(&self) -> f64 {
        let total =
            self.paths.len() + self.ends.len() * 4 + self.sizes.len() * 8 + self.bytes.len() * 8;
        total as f64 / self.len().max(1) as f64
    }
    /// Feeds entry `i` (name and size) to a fingerprint.
    pub(crate) fn hash_entry(&self, i: usize, h: &mut Sha256) {
        h.update(self.rel(i).as_bytes());
        h.update([0u8]);
        for v in self.sizes[i] {
            h.update(v.to_le_bytes());
        }
        h.update(self.bytes[i].to_le_bytes());
    }
}

/// `(height, width)` from the header of `path`, which must be a JPEG or PNG (by content).
fn header_size(path: &Path) -> Result<(u32, u32)> {
    let bad =
        |e: &dyn std::fmt::Display| DataError::format(path, format!("not a readable image: {e}"));
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    match reader.format() {
        Some(image::ImageFormat::Jpeg | image::ImageFormat::Png) => {}
        other => {
            return Err(DataError::format(
                path,
                format!(
                    "not a JPEG or PNG file (content: {})",
                    other.map_or("unknown".into(), |f| format!("{f:?}"))
                ),
            ))
        }
    }
    let (w, h) = reader.into_dimensions().map_err(|e| bad(&e))?;
    if w == 0 || h == 0 {
        return Err(DataError::format(path, format!("image is {h}x{w}")));
    }
    Ok((h, w))
}

fn read_cache(path: &Path) -> HashMap<String, Cached> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(INDEX_HEADER) {
        return HashMap::new();
    }
    lines
        .filter_map(|line| {
            let mut f = line.splitn(4, '\t');
            let bytes = f.next()?.parse().ok()?;
            let height = f.next()?.parse().ok()?;
            let width = f.next()?.parse().ok()?;
            let rel = f.next()?.to_string();
            Some((
                rel,
                Cached {
                    bytes,
                    height,
                    width,
                },
            ))
        })
        .collect()
}

/// The largest JPEG DCT scaling denominator `d` in {8, 4, 2} (else 1) such that the box
/// `(box_h, box_w)` of an `(h, w)` image, decoded at `(ceil(h / d), ceil(w / d))`, still covers
/// `(out_h, out_w)` pixels: the decode then never upsamples what a full decode would shrink.
pub fn dct_denominator(
    (h, w): (usize, usize),
    (box_h, box_w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> usize {
    [8, 4, 2]
        .into_iter()
        .find(|&d| box_h * h.div_ceil(d) >= out_h * h && box_w * w.div_ceil(d) >= out_w * w)
        .unwrap_or(1)
}

/// The box `crop` (in the original pixels) of the image file `path` resampled to `size x size`
/// as a streamed view takes it: decoded at the largest DCT scaling that still covers the box
/// at `size` ([`dct_denominator`]), then resampled with the antialiased bilinear filter.
/// Returns the pixels (`[size, size, 3]`, RGB, f32 in [0, 1]) and the scaling denominator
/// (1 for a full decode).
pub fn crop_at_decode(path: &Path, crop: Crop, size: usize) -> Result<(Vec<f32>, usize)> {
    let (height, width) = header_size(path)?;
    let shape = ImageShape {
        height: height as usize,
        width: width as usize,
        channels: 3,
    };
    if size == 0 || crop.height == 0 || crop.width == 0 {
        return Err(DataError::param(
            "size",
            size,
            "a positive side and a non-empty box",
        ));
    }
    if crop.top + crop.height > shape.height || crop.left + crop.width > shape.width {
        return Err(DataError::param(
            "crop",
            format!("{crop:?}"),
            format!("a box inside the {height}x{width} image {}", path.display()),
        ));
    }
    let (mut file, mut decoded) = (Vec::new(), Vec::new());
    let cover = ((crop.height, crop.width), (size, size));
    let got = decode_file(path, shape, Some(cover), &mut file, &mut decoded)?;
    let mut out = vec![0.0; size * size * 3];
    resize_decoded(&decoded, got, shape, crop, size, &mut out, &mut Vec::new());
    let d = if got == shape {
        1
    } else {
        dct_denominator((shape.height, shape.width), cover.0, cover.1)
    };
    Ok((out, d))
}

/// Reads `path` (of header size `shape`) into `out` as RGB, at the largest DCT scaling that
/// keeps the box `cover.0` at least `cover.1` pixels (full size when `cover` is `None` or the
/// file is not a JPEG the scaled decoder takes); returns the decoded size.
pub(crate) fn decode_file(
    path: &Path,
    shape: ImageShape,
    cover: Option<((usize, usize), (usize, usize))>,
    file: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<ImageShape> {
    use std::io::Read;
    file.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(file))
        .map_err(|e| DataError::io(path, e))?;
    let dims = (shape.height, shape.width);
    let d = match cover {
        Some((b, o)) if !full_decode_forced() => dct_denominator(dims, b, o),
        _ => 1,
    };
    let got = match decode_jpeg_scaled(path, file, d, out)? {
        Some(got) => got,
        None => decode_full(path, file, out)?,
    };
    // The file must still be the one indexed (same aspect at any scale).
    if (got.height, got.width) != (shape.height.div_ceil(d), shape.width.div_ceil(d))
        && (got.height, got.width) != dims
    {
        return Err(DataError::format(
            path,
            format!(
                "image is now {}x{} (HxW), indexed as {}x{}: delete {INDEX_FILE} to re-index",
                got.height, got.width, shape.height, shape.width
            ),
        ));
    }
    Ok(got)
}

/// `KINFONCE_FULL_DECODE=1` turns the DCT scaling off (every image decodes at full size): a
/// switch for measuring what the scaling gains, read at every decode.
pub const FULL_DECODE_ENV: &str = "KINFONCE_FULL_DECODE";

fn full_decode_forced() -> bool {
    std::env::var_os(FULL_DECODE_ENV).is_some_and(|v| v == "1")
}

/// Any JPEG or PNG at full size, as RGB (the `image` crate).
fn decode_full(path: &Path, data: &[u8], out: &mut Vec<u8>) -> Result<ImageShape> {
    let img = image::load_from_memory(data)
        .map_err(|e| DataError::format(path, format!("cannot decode image: {e}")))?
        .into_rgb8();
    let shape = ImageShape {
        height: img.height() as usize,
        width: img.width() as usize,
        channels: 3,
    };
    out.clear();
    out.extend_from_slice(img.as_raw());
    Ok(shape)
}

fn is_jpeg(data: &[u8]) -> bool {
    data.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// A JPEG decoded by libjpeg-turbo at scale `1 / d`; `None` when `data` is not a JPEG it
/// converts to RGB (PNG; CMYK).
#[cfg(feature = "turbojpeg")]
fn decode_jpeg_scaled(
    path: &Path,
    data: &[u8],
    d: usize,
    out: &mut Vec<u8>,
) -> Result<Option<ImageShape>> {
    use std::cell::RefCell;
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};
    thread_local! {
        // One decompressor per loader thread, reused for every image.
        static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    }
    if !is_jpeg(data) {
        return Ok(None);
    }
    let bad = |e: turbojpeg::Error| DataError::format(path, format!("cannot decode image: {e}"));
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(Decompressor::new().map_err(bad)?);
        }
        let dec = cell.as_mut().expect("set above");
        let header = dec.read_header(data).map_err(bad)?;
        if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
            return Ok(None);
        }
        let (height, width) = (header.height.div_ceil(d), header.width.div_ceil(d));
        out.clear();
        out.resize(height * width * 3, 0);
        // Given a smaller output, libjpeg-turbo picks the largest scaling that fits: 1/d.
        let image = Image {
            pixels: &mut out[..],
            width,
            pitch: width * 3,
            height,
            format: PixelFormat::RGB,
        };
        dec.decompress(data, image).map_err(bad)?;
        Ok(Some(ImageShape {
            height,
            width,
            channels: 3,
        }))
    })
}

/// Without libjpeg-turbo every image decodes at full size.
#[cfg(not(feature = "turbojpeg"))]
fn decode_jpeg_scaled(
    _path: &Path,
    data: &[u8],
    _d: usize,
    _out: &mut Vec<u8>,
) -> Result<Option<ImageShape>> {
    let _ = is_jpeg(data);
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resize::resize_crop;
    use crate::rng::CounterRng;

    /// A photo-like `w x h` image (gradients, a texture and noise) from `seed`: RGB, or gray.
    pub(crate) fn photo(w: u32, h: u32, gray: bool, seed: u64) -> image::DynamicImage {
        let mut rng = CounterRng::new(&[seed]);
        let mut px = |x: u32, y: u32, ch: u32| {
            let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
            let tex = ((x as f64 * 0.21 + ch as f64).sin() * (y as f64 * 0.17).cos()) * 40.0;
            let v = 60.0 + 120.0 * fx * (1.0 - fy) + 50.0 * fy + tex + rng.uniform(-25.0, 25.0);
            v.clamp(0.0, 255.0) as u8
        };
        if gray {
            image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
                image::Luma([px(x, y, 0)])
            }))
        } else {
            image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([px(x, y, 0), px(x, y, 1), px(x, y, 2)])
            }))
        }
    }

    /// Writes `img` as a JPEG of quality 90.
    pub(crate) fn write_jpeg(path: &Path, img: &image::DynamicImage) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut out = std::fs::File::create(path).unwrap();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .unwrap();
    }

    #[test]
    fn a_scaled_decode_is_the_full_decode_resized_on_the_same_box() {
        // Tolerance, in [0, 1] units: mean |difference| below 0.012 (3 levels of 255) and
        // every pixel within 0.2. The DCT scaling averages 2x2 to 8x8 blocks where the
        // resampler's triangle filter weighs them; the two agree on the smooth parts and
        // differ a little on edges and noise.
        let dir = tempfile::tempdir().unwrap();
        let cases = [(1203, 901, false), (517, 389, false), (811, 1299, true)];
        for (k, &(w, h, gray)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{k}.jpg"));
            write_jpeg(&path, &photo(w, h, gray, k as u64));
            let full = image::open(&path).unwrap().into_rgb8();
            let size = 64;
            let boxes = [
                Crop {
                    top: 0,
                    left: 0,
                    height: h as usize,
                    width: w as usize,
                },
                Crop {
                    top: 37,
                    left: 51,
                    height: 301,
                    width: 283,
                },
                Crop {
                    top: 101,
                    left: 9,
                    height: 150,
                    width: 211,
                },
                Crop {
                    top: 3,
                    left: 5,
                    height: 70,
                    width: 60,
                },
            ];
            let mut seen = Vec::new();
            for crop in boxes {
                let (got, d) = crop_at_decode(&path, crop, size).unwrap();
                seen.push(d);
                let mut want = vec![0.0; size * size * 3];
                let bx = (crop.top, crop.left, crop.height, crop.width);
                resize_crop(
                    full.as_raw(),
                    w as usize,
                    3,
                    bx,
                    (size, size),
                    &mut want,
                    &mut Vec::new(),
                );
                let diffs: Vec<f32> = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).collect();
                let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
                let max = diffs.iter().cloned().fold(0.0, f32::max);
                assert!(
                    mean < 0.012 && max < 0.2,
                    "{w}x{h} {crop:?} 1/{d}: mean {mean} max {max}"
                );
            }
            assert!(
                seen.contains(&1) && seen.iter().any(|&d| d >= 4),
                "{seen:?}"
            );
        }
    }

    #[test]
    fn the_denominator_is_the_largest_that_still_covers_the_output() {
        // A 1000 x 800 image, the whole box at 224: 1/2 gives 400 >= 224, 1/4 gives 200 < 224.
        assert_eq!(dct_denominator((800, 1000), (800, 1000), (224, 224)), 2);
        // A 100 x 100 box at 224 upsamples already: no scaling.
        assert_eq!(dct_denominator((800, 1000), (100, 100), (224, 224)), 1);
        // A 4000 x 3000 photo seen whole at 224: 1/8 (500 x 375).
        assert_eq!(dct_denominator((3000, 4000), (3000, 4000), (224, 224)), 8);
        // Both axes must cover: a wide box, too short after 1/4.
        assert_eq!(dct_denominator((1000, 1000), (800, 1000), (224, 224)), 2);
        // Rounding up the scaled side counts: 449 / 2 = 225 (ceil) still covers 224 for the
        // whole image.
        assert_eq!(dct_denominator((449, 449), (449, 449), (224, 224)), 2);
    }
}
