//! MNIST / Fashion-MNIST IDX reader (`.gz` or raw), grayscale 28x28 (1 channel).
//!
//! IDX: a big-endian header `00 00 08 D` (unsigned bytes, `D` dimensions), then `D` u32 sizes,
//! then the data. Images are `[N, rows, cols]` (D = 3), labels `[N]` (D = 1).

use std::path::{Path, PathBuf};

use crate::archive::{find_in_dir, read_maybe_gz};
use crate::dataset::{Dataset, OfficialSplits};
use crate::error::{DataError, Result};

/// Reads the `train-*` and `t10k-*` IDX pairs from `path` (a folder, or one of the files).
pub(crate) fn read_mnist(path: &Path, train: bool, test: bool) -> Result<OfficialSplits> {
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let mut out = OfficialSplits::default();
    if train {
        out.train = Some(read_pair(&dir, "train")?);
    }
    if test {
        out.test = Some(read_pair(&dir, "t10k")?);
    }
    Ok(out)
}

fn find_idx(dir: &Path, prefix: &str, kind: &str) -> Result<PathBuf> {
    let candidates = [
        format!("{prefix}-{kind}-ubyte"),
        format!("{prefix}-{kind}-ubyte.gz"),
        // Some mirrors write `train-images.idx3-ubyte`.
        format!("{prefix}-{}-ubyte", kind.replacen('-', ".", 1)),
    ];
    for c in &candidates {
        if let Some(p) = find_in_dir(dir, c) {
            return Ok(p);
        }
        let raw = dir.join("raw").join(c);
        if raw.is_file() {
            return Ok(raw);
        }
    }
    Err(DataError::Missing {
        path: dir.to_path_buf(),
        what: format!("{} or {} (MNIST IDX)", candidates[0], candidates[1]),
    })
}

fn read_pair(dir: &Path, prefix: &str) -> Result<Dataset> {
    let images_path = find_idx(dir, prefix, "images-idx3")?;
    let labels_path = find_idx(dir, prefix, "labels-idx1")?;
    let (dims, images) = parse_idx(&images_path, 3)?;
    let (ldims, labels) = parse_idx(&labels_path, 1)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if ldims[0] != n {
        return Err(DataError::format(
            &labels_path,
            format!(
                "{} labels for the {n} images of {}",
                ldims[0],
                images_path.display()
            ),
        ));
    }
    let labels = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if l < 10 {
                Ok(l as u32)
            } else {
                Err(DataError::record(
                    &labels_path,
                    i,
                    format!("label {l}; expected 0..9"),
                ))
            }
        })
        .collect::<Result<Vec<u32>>>()?;
    let names = (0..10).map(|d| d.to_string()).collect();
    Dataset::new(images.to_vec(), labels, rows, cols, 1, names)
}

/// Parses an unsigned-byte IDX file with `ndim` dimensions; returns the sizes and the data.
fn parse_idx(path: &Path, ndim: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::format(
            path,
            format!("{} bytes; too short for an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] as usize != ndim {
        return Err(DataError::format(
            path,
            format!(
                "IDX magic {:02x} {:02x} {:02x} {:02x}; expected 00 00 08 {ndim:02x} (unsigned bytes, {ndim} dimensions)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    // Sizes from a damaged header can overflow: no product of them is larger than the file.
    let item = dims[1..].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let expected = item.and_then(|i| dims[0].checked_mul(i));
    let data = &bytes[header..];
    let (Some(item), Some(expected)) = (item, expected) else {
        return Err(DataError::format(
            path,
            format!("IDX header sizes {dims:?} multiply beyond any file's length"),
        ));
    };
    if data.len() != expected {
        return Err(DataError::record(
            path,
            data.len() / item.max(1),
            format!(
                "{} data bytes; the header {dims:?} requires {expected}",
                data.len()
            ),
        ));
    }
    Ok((dims, data.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_gz_and_raw_and_checks_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<u8> = (0..2 * 4 * 3).map(|i| i as u8).collect();
        let gz = std::fs::File::create(dir.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
        let mut enc = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
        enc.write_all(&idx(&[2, 4, 3], &images)).unwrap();
        enc.finish().unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx(&[2], &[7, 1]),
        )
        .unwrap();
        let s = read_mnist(dir.path(), false, true).unwrap().test.unwrap();
        assert_eq!((s.len(), s.height(), s.width(), s.channels()), (2, 4, 3, 1));
        assert_eq!(s.labels(), &[7, 1]);
        assert_eq!(s.image(1)[0], 12);
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx(&[2], &[7])).unwrap();
        let err = read_mnist(dir.path(), false, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("t10k-labels-idx1-ubyte") && err.contains("requires 2"),
            "{err}"
        );
        let err = read_mnist(dir.path(), true, false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    }
}
