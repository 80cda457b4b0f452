//! STL-10 binary reader: `train_X.bin` / `train_y.bin` (5,000), `test_X.bin` / `test_y.bin`
//! (8,000), `class_names.txt`, from `stl10_binary/`, the official `.tar.gz`, or a folder
//! holding it.
//!
//! Each image is 3 x 96 x 96 bytes, one plane per channel, each plane **column-major**
//! (byte `c * 9216 + col * 96 + row`); labels are one byte each, 1..=10. Pixels become HWC and
//! labels 0..=9.

use std::path::Path;

use rayon::prelude::*;

use crate::archive::{find_in_dir, read_members, Member};
use crate::dataset::{Dataset, OfficialSplits};
use crate::error::{DataError, Result};

const SIDE: usize = 96;
const IMAGE: usize = SIDE * SIDE * 3;

/// STL-10's class names, used when `class_names.txt` is absent.
pub const STL10_CLASSES: [&str; 10] = [
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
];

pub(crate) fn read_stl10(path: &Path, train: bool, test: bool) -> Result<OfficialSplits> {
    let source = if path.is_dir()
        && find_in_dir(path, "test_X.bin").is_none()
        && find_in_dir(path, "train_X.bin").is_none()
    {
        find_in_dir(path, "stl10_binary.tar.gz").unwrap_or_else(|| path.to_path_buf())
    } else {
        path.to_path_buf()
    };
    let mut wanted = vec!["class_names.txt"];
    if train {
        wanted.extend(["train_X.bin", "train_y.bin"]);
    }
    if test {
        wanted.extend(["test_X.bin", "test_y.bin"]);
    }
    let members = read_members(&source, &wanted)?;
    let names: Vec<String> = match members.get("class_names.txt") {
        Some(m) => String::from_utf8_lossy(&m.bytes)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => STL10_CLASSES.iter().map(|s| s.to_string()).collect(),
    };
    if names.len() != 10 {
        return Err(DataError::format(
            &members["class_names.txt"].path,
            format!("{} class names; expected 10", names.len()),
        ));
    }
    let get = |n: &str| {
        members.get(n).ok_or_else(|| DataError::Missing {
            path: source.clone(),
            what: format!("{n} (expected in the STL-10 binary layout)"),
        })
    };
    let mut out = OfficialSplits::default();
    if train {
        out.train = Some(parse(
            get("train_X.bin")?,
            get("train_y.bin")?,
            names.clone(),
        )?);
    }
    if test {
        out.test = Some(parse(get("test_X.bin")?, get("test_y.bin")?, names)?);
    }
    Ok(out)
}

fn parse(images: &Member, labels: &Member, names: Vec<String>) -> Result<Dataset> {
    if !images.bytes.len().is_multiple_of(IMAGE) {
        return Err(DataError::record(
            &images.path,
            images.bytes.len() / IMAGE,
            format!(
                "incomplete image: {} bytes is not a multiple of {IMAGE} (3x96x96)",
                images.bytes.len()
            ),
        ));
    }
    let n = images.bytes.len() / IMAGE;
    if labels.bytes.len() != n {
        return Err(DataError::format(
            &labels.path,
            format!(
                "{} labels for the {n} images of {}",
                labels.bytes.len(),
                images.path.display()
            ),
        ));
    }
    let labels = labels
        .bytes
        .iter()
        .enumerate()
        .map(|(i, &l)| match l {
            1..=10 => Ok(l as u32 - 1),
            _ => Err(DataError::record(
                &labels.path,
                i,
                format!("label {l}; expected 1..10"),
            )),
        })
        .collect::<Result<Vec<u32>>>()?;
    let mut pixels = vec![0u8; n * IMAGE];
    pixels
        .par_chunks_exact_mut(IMAGE)
        .zip(images.bytes.par_chunks_exact(IMAGE))
        .for_each(|(hwc, src)| column_major_planes_to_hwc(src, hwc, SIDE));
    Dataset::new(pixels, labels, SIDE, SIDE, 3, names)
}

/// `[3, W, H]` (column-major planes) to `[H, W, 3]`.
fn column_major_planes_to_hwc(src: &[u8], hwc: &mut [u8], side: usize) {
    let plane = side * side;
    for c in 0..3 {
        for col in 0..side {
            for row in 0..side {
                hwc[(row * side + col) * 3 + c] = src[c * plane + col * side + row];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::test_util::write_tar_gz;

    /// An STL image whose red value at (row, col) is row, green is col, blue is `tag`.
    fn image(tag: u8) -> Vec<u8> {
        let mut v = vec![0u8; IMAGE];
        for col in 0..SIDE {
            for row in 0..SIDE {
                v[col * SIDE + row] = row as u8;
                v[SIDE * SIDE + col * SIDE + row] = col as u8;
                v[2 * SIDE * SIDE + col * SIDE + row] = tag;
            }
        }
        v
    }

    #[test]
    fn archive_is_read_column_major_with_labels_shifted() {
        let dir = tempfile::tempdir().unwrap();
        let mut x = image(1);
        x.extend(image(2));
        let archive = dir.path().join("stl10_binary.tar.gz");
        write_tar_gz(
            &archive,
            &[
                ("stl10_binary/test_X.bin", &x),
                ("stl10_binary/test_y.bin", &[10, 1]),
            ],
        );
        let s = read_stl10(dir.path(), false, true).unwrap().test.unwrap();
        assert_eq!((s.len(), s.height(), s.width()), (2, 96, 96));
        assert_eq!(s.labels(), &[9, 0]);
        assert_eq!(s.class_names()[9], "truck");
        // Pixel at row 5, column 40 of image 1.
        let px = &s.image(1)[(5 * 96 + 40) * 3..][..3];
        assert_eq!(px, &[5, 40, 2]);
    }

    #[test]
    fn bad_label_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train_X.bin"), image(0)).unwrap();
        std::fs::write(dir.path().join("train_y.bin"), [0u8]).unwrap();
        let err = read_stl10(dir.path(), true, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("train_y.bin") && err.contains("record 0") && err.contains("label 0"),
            "{err}"
        );
    }
}
