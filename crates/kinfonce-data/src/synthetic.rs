//! A built-in, procedurally generated image set, so that demos complete offline without any
//! download: ten classes of 32x32 RGB images, each class a shape drawn at a random position,
//! size, foreground and background colour, with pixel noise. Colour says nothing about the
//! class, so a network has to learn shape, as on real images.
//!
//! The set is written in the CIFAR-10 binary layout (`data_batch_1..5.bin`, `test_batch.bin`,
//! `batches.meta.txt`), so every reader, loader and evaluation treats it exactly as CIFAR-10.
//! Each image is a pure function of (seed, split, index).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::rng::CounterRng;

/// The class names, in label order.
pub const SYNTHETIC_CLASSES: [&str; 10] = [
    "disc",
    "square",
    "ring",
    "cross",
    "horizontal-stripes",
    "vertical-stripes",
    "checkerboard",
    "triangle",
    "diagonal-stripes",
    "dots",
];

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;

/// Whether pixel (x, y) (in shape coordinates u, v in [-1, 1] around the shape's centre) is
/// foreground for `class`.
fn inside(class: usize, u: f64, v: f64, phase: f64) -> bool {
    let r = (u * u + v * v).sqrt();
    let box_ = u.abs() <= 1.0 && v.abs() <= 1.0;
    match class {
        0 => r <= 1.0,
        1 => u.abs() <= 0.8 && v.abs() <= 0.8,
        2 => (0.55..=1.0).contains(&r),
        3 => box_ && (u.abs() <= 0.3 || v.abs() <= 0.3),
        4 => box_ && ((v + phase) * 2.0).rem_euclid(1.0) < 0.5,
        5 => box_ && ((u + phase) * 2.0).rem_euclid(1.0) < 0.5,
        6 => box_ && (((u + 1.0) * 2.0).floor() + ((v + 1.0) * 2.0).floor()) as i64 % 2 == 0,
        7 => (-0.9..=0.9).contains(&v) && u.abs() <= (v + 0.9) / 1.8,
        8 => box_ && ((u + v + phase) * 1.5).rem_euclid(1.0) < 0.5,
        _ => {
            let (fu, fv) = ((u + 1.0) * 1.5, (v + 1.0) * 1.5);
            let (du, dv) = (fu - fu.floor() - 0.5, fv - fv.floor() - 0.5);
            box_ && du * du + dv * dv <= 0.09
        }
    }
}

/// Image `index` of `class` in CIFAR's planar layout (1024 red, 1024 green, 1024 blue bytes).
///
/// # Shapes
/// output `[3, 32, 32]` as `u8`, flattened.
pub fn synthetic_image(class: usize, seed: u64, split: u64, index: u64) -> Vec<u8> {
    let mut rng = CounterRng::new(&[seed, split, index, class as u64]);
    let colour = |rng: &mut CounterRng| -> [f64; 3] {
        [
            rng.uniform(0.0, 255.0),
            rng.uniform(0.0, 255.0),
            rng.uniform(0.0, 255.0),
        ]
    };
    let background = colour(&mut rng);
    let mut foreground = colour(&mut rng);
    // Keep the shape visible: at least 90 grey levels between the two colours.
    let grey = |c: &[f64; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    if (grey(&foreground) - grey(&background)).abs() < 90.0 {
        let up = grey(&background) < 128.0;
        for c in foreground.iter_mut() {
            *c = if up { 255.0 - *c * 0.3 } else { *c * 0.3 };
        }
    }
    let half = rng.uniform(7.0, 13.0);
    let cx = rng.uniform(half - 2.0, SIDE as f64 - half + 2.0);
    let cy = rng.uniform(half - 2.0, SIDE as f64 - half + 2.0);
    let phase = rng.unit();
    let mut out = vec![0u8; 3 * PLANE];
    for y in 0..SIDE {
        for x in 0..SIDE {
            let u = (x as f64 + 0.5 - cx) / half;
            let v = (y as f64 + 0.5 - cy) / half;
            let c = if inside(class, u, v, phase) {
                &foreground
            } else {
                &background
            };
            for (ch, value) in c.iter().enumerate() {
                let noisy = value + rng.uniform(-12.0, 12.0);
                out[ch * PLANE + y * SIDE + x] = noisy.clamp(0.0, 255.0).round() as u8;
            }
        }
    }
    out
}

/// Writes the set under `dir/cifar-10-batches-bin/` (5 training batches of `train_per_batch`
/// images, one test batch of `test_images`, classes balanced and interleaved) unless it is
/// already there, and returns that folder. Files appear whole or not at all (written to a
/// temporary name, then renamed).
pub fn write_synthetic_cifar(
    dir: &Path,
    train_per_batch: usize,
    test_images: usize,
    seed: u64,
) -> Result<PathBuf> {
    let root = dir.join("cifar-10-batches-bin");
    fs::create_dir_all(&root).map_err(|e| DataError::io(&root, e))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = root.join(name);
        if path.exists() {
            return Ok(());
        }
        let tmp = root.join(format!(".{name}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| DataError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| DataError::io(&path, e))
    };
    let batch = |split: u64, first: usize, n: usize| -> Vec<u8> {
        let mut bytes = Vec::with_capacity(n * (1 + 3 * PLANE));
        for i in first..first + n {
            let class = i % SYNTHETIC_CLASSES.len();
            bytes.push(class as u8);
            bytes.extend(synthetic_image(class, seed, split, i as u64));
        }
        bytes
    };
    write(
        "batches.meta.txt",
        (SYNTHETIC_CLASSES.join("\n") + "\n").as_bytes(),
    )?;
    for b in 0..5 {
        let name = format!("data_batch_{}.bin", b + 1);
        write(&name, &batch(0, b * train_per_batch, train_per_batch))?;
    }
    write("test_batch.bin", &batch(1, 0, test_images))?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataConfig, DataFormat};

    #[test]
    fn images_are_deterministic_and_classes_differ_in_shape() {
        assert_eq!(synthetic_image(3, 7, 0, 11), synthetic_image(3, 7, 0, 11));
        assert_ne!(synthetic_image(3, 7, 0, 11), synthetic_image(3, 7, 0, 12));
        // The foreground masks of two classes at the same draw differ.
        let mask = |class: usize| -> Vec<bool> {
            (0..PLANE)
                .map(|p| {
                    let (u, v) = (
                        (p % SIDE) as f64 / 16.0 - 1.0,
                        (p / SIDE) as f64 / 16.0 - 1.0,
                    );
                    inside(class, u, v, 0.0)
                })
                .collect()
        };
        for a in 0..10 {
            for b in a + 1..10 {
                assert_ne!(mask(a), mask(b), "classes {a} and {b} draw the same shape");
            }
        }
    }

    #[test]
    fn written_set_reads_as_balanced_cifar10() {
        let dir = tempfile::tempdir().unwrap();
        let root = write_synthetic_cifar(dir.path(), 20, 30, 1).unwrap();
        let cfg = DataConfig::new(&root);
        assert_eq!(cfg.resolved_format().unwrap(), DataFormat::Cifar10);
        let official = cfg.read_official(true, true).unwrap();
        let (train, test) = (official.train.unwrap(), official.test.unwrap());
        assert_eq!((train.len(), test.len()), (100, 30));
        assert_eq!(train.class_counts(), vec![10; 10]);
        assert_eq!(train.class_names()[6], "checkerboard");
        // A second call keeps the files as they are.
        let before = fs::read(root.join("test_batch.bin")).unwrap();
        write_synthetic_cifar(dir.path(), 20, 30, 1).unwrap();
        assert_eq!(fs::read(root.join("test_batch.bin")).unwrap(), before);
    }
}
