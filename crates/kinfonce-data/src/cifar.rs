//! CIFAR-10 and CIFAR-100 binary readers (folder, single batch file, or the official `.tar.gz`).
//!
//! A record is `label_bytes` label bytes (CIFAR-10: 1; CIFAR-100: coarse then fine) followed
//! by 3072 pixel bytes: the 1024 red values of the 32x32 image in row-major order, then the
//! 1024 green, then the 1024 blue. Pixels are converted to HWC.

use std::path::Path;

use rayon::prelude::*;

use crate::archive::{find_in_dir, is_tar_gz, read_members, Member};
use crate::dataset::{Dataset, OfficialSplits};
use crate::error::{DataError, Result};

const SIDE: usize = 32;
const PIXELS: usize = SIDE * SIDE * 3;

/// The ten CIFAR-10 class names (as in `batches.meta.txt`), used when the file is absent.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

struct Layout {
    archive: &'static str,
    train: &'static [&'static str],
    test: &'static str,
    names: &'static str,
    label_bytes: usize,
    classes: usize,
}

const CIFAR10: Layout = Layout {
    archive: "cifar-10-binary.tar.gz",
    train: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    test: "test_batch.bin",
    names: "batches.meta.txt",
    label_bytes: 1,
    classes: 10,
};

const CIFAR100: Layout = Layout {
    archive: "cifar-100-binary.tar.gz",
    train: &["train.bin"],
    test: "test.bin",
    names: "fine_label_names.txt",
    label_bytes: 2,
    classes: 100,
};

/// Reads CIFAR-10 (`hundred = false`) or CIFAR-100 from `path`: an extracted folder (or its
/// parent), the official `.tar.gz` (or a folder holding it), or one batch file, which then
/// serves as both the train and the test split.
pub(crate) fn read_cifar(
    path: &Path,
    hundred: bool,
    train: bool,
    test: bool,
) -> Result<OfficialSplits> {
    let layout = if hundred { &CIFAR100 } else { &CIFAR10 };
    let record = layout.label_bytes + PIXELS;
    if path.is_file() && !is_tar_gz(path) {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let member = Member {
            path: path.to_path_buf(),
            bytes,
        };
        let names = default_names(layout);
        let set = parse_members(&[&member], layout, names, record)?;
        return Ok(OfficialSplits {
            train: train.then(|| set.clone()),
            test: test.then_some(set),
        });
    }
    // A folder with the archive but no extracted batches reads the archive.
    let source = if path.is_dir() && find_in_dir(path, layout.test).is_none() {
        find_in_dir(path, layout.archive).unwrap_or_else(|| path.to_path_buf())
    } else {
        path.to_path_buf()
    };
    let mut wanted: Vec<&str> = vec![layout.names];
    if train {
        wanted.extend_from_slice(layout.train);
    }
    if test {
        wanted.push(layout.test);
    }
    let members = read_members(&source, &wanted)?;
    let names = match members.get(layout.names) {
        Some(m) => parse_names(m, layout.classes)?,
        None => default_names(layout),
    };
    let missing = |name: &str| DataError::Missing {
        path: source.clone(),
        what: format!("{name} (expected in the CIFAR binary layout)"),
    };
    let mut out = OfficialSplits::default();
    if train {
        let parts = layout
            .train
            .iter()
            .map(|n| members.get(*n).ok_or_else(|| missing(n)))
            .collect::<Result<Vec<_>>>()?;
        out.train = Some(parse_members(&parts, layout, names.clone(), record)?);
    }
    if test {
        let m = members
            .get(layout.test)
            .ok_or_else(|| missing(layout.test))?;
        out.test = Some(parse_members(&[m], layout, names, record)?);
    }
    Ok(out)
}

fn default_names(layout: &Layout) -> Vec<String> {
    if layout.classes == 10 {
        CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..layout.classes).map(|i| format!("class_{i}")).collect()
    }
}

fn parse_names(member: &Member, classes: usize) -> Result<Vec<String>> {
    let text = String::from_utf8_lossy(&member.bytes);
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != classes {
        return Err(DataError::format(
            &member.path,
            format!("{} class names; expected {classes}", names.len()),
        ));
    }
    Ok(names)
}

fn parse_members(
    parts: &[&Member],
    layout: &Layout,
    names: Vec<String>,
    record: usize,
) -> Result<Dataset> {
    let mut count = 0;
    for m in parts {
        if m.bytes.is_empty() || !m.bytes.len().is_multiple_of(record) {
            return Err(DataError::record(
                &m.path,
                m.bytes.len() / record,
                format!(
                    "incomplete record: the file has {} bytes, not a multiple of the {record}-byte record ({} label byte(s) + 3072 pixels)",
                    m.bytes.len(),
                    layout.label_bytes
                ),
            ));
        }
        count += m.bytes.len() / record;
    }
    let mut pixels = vec![0u8; count * PIXELS];
    let mut labels = Vec::with_capacity(count);
    let mut start = 0;
    for m in parts {
        let n = m.bytes.len() / record;
        for (i, rec) in m.bytes.chunks_exact(record).enumerate() {
            // CIFAR-100: the fine label is the last label byte.
            let label = rec[layout.label_bytes - 1] as usize;
            if label >= layout.classes {
                return Err(DataError::record(
                    &m.path,
                    i,
                    format!("label {label}; expected 0..{}", layout.classes - 1),
                ));
            }
            labels.push(label as u32);
        }
        pixels[start * PIXELS..(start + n) * PIXELS]
            .par_chunks_exact_mut(PIXELS)
            .zip(m.bytes.par_chunks_exact(record))
            .for_each(|(out, rec)| planes_to_hwc(&rec[layout.label_bytes..], out));
        start += n;
    }
    Dataset::new(pixels, labels, SIDE, SIDE, 3, names)
}

/// `[3, H, W]` planes to `[H, W, 3]`.
fn planes_to_hwc(chw: &[u8], hwc: &mut [u8]) {
    let plane = chw.len() / 3;
    let (r, rest) = chw.split_at(plane);
    let (g, b) = rest.split_at(plane);
    for (p, px) in hwc.chunks_exact_mut(3).enumerate() {
        px[0] = r[p];
        px[1] = g[p];
        px[2] = b[p];
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::archive::test_util::write_tar_gz;

    /// A CIFAR record whose R plane is `label`, G plane is the pixel index mod 256, B is 7.
    pub fn record(labels: &[u8], label: u8) -> Vec<u8> {
        let mut r = labels.to_vec();
        r.extend(std::iter::repeat_n(label, 1024));
        r.extend((0..1024).map(|p| (p % 256) as u8));
        r.extend(std::iter::repeat_n(7u8, 1024));
        r
    }

    #[test]
    fn cifar100_archive_fine_labels_and_hwc() {
        let dir = tempfile::tempdir().unwrap();
        let mut train = Vec::new();
        for i in 0..6u8 {
            train.extend(record(&[i % 20, i * 10], i * 10));
        }
        let test = record(&[3, 99], 99);
        let names: String = (0..100).map(|i| format!("fine{i}\n")).collect();
        let archive = dir.path().join("cifar-100-binary.tar.gz");
        write_tar_gz(
            &archive,
            &[
                ("cifar-100-binary/fine_label_names.txt", names.as_bytes()),
                ("cifar-100-binary/train.bin", &train),
                ("cifar-100-binary/test.bin", &test),
            ],
        );
        let s = read_cifar(&archive, true, true, true).unwrap();
        let train = s.train.unwrap();
        assert_eq!(train.labels(), &[0, 10, 20, 30, 40, 50]);
        assert_eq!(train.num_classes(), 100);
        assert_eq!(train.class_names()[99], "fine99");
        // Pixel (0, 1) of image 2: R = label 20, G = 1, B = 7.
        assert_eq!(&train.image(2)[3..6], &[20, 1, 7]);
        let test = s.test.unwrap();
        assert_eq!(test.labels(), &[99]);
    }

    #[test]
    fn bad_length_and_bad_label_name_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test_batch.bin");
        let mut bytes = record(&[1], 1);
        bytes.extend(record(&[2], 2));
        bytes.truncate(3073 + 100);
        std::fs::write(&p, &bytes).unwrap();
        let err = read_cifar(&p, false, false, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("test_batch.bin") && err.contains("record 1") && err.contains("3073"),
            "{err}"
        );
        let mut bytes = record(&[1], 1);
        bytes.extend(record(&[12], 2));
        std::fs::write(&p, &bytes).unwrap();
        let err = read_cifar(&p, false, false, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("record 1") && err.contains("label 12"),
            "{err}"
        );
    }

    #[test]
    fn folder_missing_batch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("test_batch.bin"), record(&[4], 4)).unwrap();
        let s = read_cifar(dir.path(), false, false, true).unwrap();
        assert_eq!(s.test.unwrap().class_names()[4], "deer");
        let err = read_cifar(dir.path(), false, true, false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("data_batch_1.bin"), "{err}");
    }
}
