//! [`DataFormat`]: the supported layouts, their names, and detection from a path.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::archive::{find_in_dir, is_tar_gz};
use crate::error::{DataError, Result};

/// A supported on-disk layout. Names (for `--format`): `cifar10`, `cifar100`, `mnist`,
/// `stl10`, `imagefolder`, `tiny-imagenet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataFormat {
    /// CIFAR-10 binary: `cifar-10-binary.tar.gz` or its extracted `cifar-10-batches-bin/`
    /// (records of 1 label byte + 3072 pixel bytes, R then G then B planes), or one batch file.
    Cifar10,
    /// CIFAR-100 binary: `cifar-100-binary.tar.gz` or `cifar-100-binary/` (records of a coarse
    /// and a fine label byte + 3072 pixel bytes); the 100 fine labels are used.
    Cifar100,
    /// MNIST or Fashion-MNIST IDX files (`train-images-idx3-ubyte[.gz]` etc.) in a folder.
    Mnist,
    /// STL-10 binary: `stl10_binary.tar.gz` or `stl10_binary/` (96x96, column-major planes).
    Stl10,
    /// Class sub-folders of JPEG/PNG images (`root/<class>/*.png`), optionally under
    /// `root/train/` and `root/test/` (or `root/val/`); images directly in `root` are unlabelled.
    ImageFolder,
    /// TinyImageNet-200: `wnids.txt`, `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` with
    /// `val/val_annotations.txt`.
    TinyImageNet,
}

impl DataFormat {
    /// All formats, in `--help` order.
    pub const ALL: [DataFormat; 6] = [
        DataFormat::Cifar10,
        DataFormat::Cifar100,
        DataFormat::Mnist,
        DataFormat::Stl10,
        DataFormat::ImageFolder,
        DataFormat::TinyImageNet,
    ];

    /// The `--format` name.
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Cifar10 => "cifar10",
            DataFormat::Cifar100 => "cifar100",
            DataFormat::Mnist => "mnist",
            DataFormat::Stl10 => "stl10",
            DataFormat::ImageFolder => "imagefolder",
            DataFormat::TinyImageNet => "tiny-imagenet",
        }
    }

    /// Detects the format of `path` from file names (and, for an unnamed `.tar.gz`, from its
    /// first member), never from image content.
    pub fn detect(path: &Path) -> Result<DataFormat> {
        let unknown = |detail: &str| DataError::UnknownFormat {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        };
        if !path.exists() {
            return Err(DataError::Missing {
                path: path.to_path_buf(),
                what: "data path (no such file or folder)".into(),
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if path.is_file() {
            if is_tar_gz(path) {
                if let Some(f) = from_marker_name(&name) {
                    return Ok(f);
                }
                return first_member_format(path)?
                    .ok_or_else(|| unknown("archive of an unknown layout"));
            }
            if name.contains("-ubyte") {
                return Ok(DataFormat::Mnist);
            }
            if name.ends_with(".bin") {
                let len = std::fs::metadata(path)
                    .map_err(|e| DataError::io(path, e))?
                    .len();
                if len > 0 && len.is_multiple_of(3073) {
                    return Ok(DataFormat::Cifar10);
                }
                if len > 0 && len.is_multiple_of(3074) {
                    return Ok(DataFormat::Cifar100);
                }
            }
            if name.ends_with(".zip") {
                return Err(unknown("zip archives are not read directly: extract it first (`kinfonce data fetch tiny-imagenet` extracts for you)"));
            }
            return Err(unknown("not a known data file"));
        }
        // A folder: look for the marker files of each layout, one level deep.
        let has = |n: &str| find_in_dir(path, n).is_some();
        if has("wnids.txt") {
            return Ok(DataFormat::TinyImageNet);
        }
        if has("data_batch_1.bin") || has("test_batch.bin") || has("cifar-10-binary.tar.gz") {
            return Ok(DataFormat::Cifar10);
        }
        if has("fine_label_names.txt") || has("cifar-100-binary.tar.gz") {
            return Ok(DataFormat::Cifar100);
        }
        if has("train_X.bin") || has("test_X.bin") || has("stl10_binary.tar.gz") {
            return Ok(DataFormat::Stl10);
        }
        for n in [
            "train-images-idx3-ubyte",
            "train-images-idx3-ubyte.gz",
            "t10k-images-idx3-ubyte",
            "t10k-images-idx3-ubyte.gz",
        ] {
            if has(n) {
                return Ok(DataFormat::Mnist);
            }
        }
        Ok(DataFormat::ImageFolder)
    }
}

/// Formats recognisable from an archive or folder name.
fn from_marker_name(name: &str) -> Option<DataFormat> {
    if name.contains("cifar-100") || name.contains("cifar100") {
        Some(DataFormat::Cifar100)
    } else if name.contains("cifar-10") || name.contains("cifar10") {
        Some(DataFormat::Cifar10)
    } else if name.contains("stl10") || name.contains("stl-10") {
        Some(DataFormat::Stl10)
    } else {
        None
    }
}

fn first_member_format(path: &Path) -> Result<Option<DataFormat>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut entries = archive
        .entries()
        .map_err(|e| DataError::format(path, format!("corrupt archive: {e}")))?;
    let Some(first) = entries.next() else {
        return Ok(None);
    };
    let first = first.map_err(|e| DataError::format(path, format!("corrupt archive: {e}")))?;
    let inner = first
        .path()
        .map_err(|e| DataError::format(path, format!("corrupt archive: {e}")))?
        .to_string_lossy()
        .to_lowercase();
    Ok(from_marker_name(&inner))
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataFormat {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        let key = s.to_ascii_lowercase().replace('_', "-");
        let alias = match key.as_str() {
            "cifar-10" => "cifar10",
            "cifar-100" => "cifar100",
            "fashion-mnist" | "fashionmnist" => "mnist",
            "stl-10" => "stl10",
            "image-folder" | "folder" => "imagefolder",
            "tinyimagenet" | "tiny-imagenet-200" => "tiny-imagenet",
            k => k,
        };
        DataFormat::ALL
            .into_iter()
            .find(|f| f.name() == alias)
            .ok_or_else(|| {
                DataError::param(
                    "format",
                    s,
                    "one of cifar10, cifar100, mnist, stl10, imagefolder, tiny-imagenet",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for f in DataFormat::ALL {
            assert_eq!(f.name().parse::<DataFormat>().unwrap(), f);
        }
        assert_eq!(
            "Fashion-MNIST".parse::<DataFormat>().unwrap(),
            DataFormat::Mnist
        );
        let err = "svhn".parse::<DataFormat>().unwrap_err().to_string();
        assert!(
            err.contains("svhn") && err.contains("tiny-imagenet"),
            "{err}"
        );
    }

    #[test]
    fn detects_layouts_from_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("c10/cifar-10-batches-bin")).unwrap();
        std::fs::write(
            p.join("c10/cifar-10-batches-bin/test_batch.bin"),
            [0u8; 3073],
        )
        .unwrap();
        assert_eq!(
            DataFormat::detect(&p.join("c10")).unwrap(),
            DataFormat::Cifar10
        );
        std::fs::write(p.join("one.bin"), [0u8; 3074 * 2]).unwrap();
        assert_eq!(
            DataFormat::detect(&p.join("one.bin")).unwrap(),
            DataFormat::Cifar100
        );
        std::fs::create_dir_all(p.join("mn")).unwrap();
        std::fs::write(p.join("mn/t10k-images-idx3-ubyte.gz"), b"").unwrap();
        assert_eq!(
            DataFormat::detect(&p.join("mn")).unwrap(),
            DataFormat::Mnist
        );
        std::fs::create_dir_all(p.join("tin/tiny-imagenet-200")).unwrap();
        std::fs::write(p.join("tin/tiny-imagenet-200/wnids.txt"), b"n01\n").unwrap();
        assert_eq!(
            DataFormat::detect(&p.join("tin")).unwrap(),
            DataFormat::TinyImageNet
        );
        std::fs::create_dir_all(p.join("folder/cat")).unwrap();
        assert_eq!(
            DataFormat::detect(&p.join("folder")).unwrap(),
            DataFormat::ImageFolder
        );
        let err = DataFormat::detect(&p.join("nope")).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
