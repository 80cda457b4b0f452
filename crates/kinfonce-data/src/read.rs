//! [`DataConfig`]: one entry point that reads any format and cuts it into three splits:
//! `train` (the official training images minus `val`, then `subset`), `val` (a seeded,
//! class-balanced `val_fraction` of the official training images) and `test` (the official
//! test set).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::cifar::read_cifar;
use crate::dataset::{Dataset, OfficialSplits};
use crate::error::{DataError, Result};
use crate::folder::{read_image_folder, read_tiny_imagenet, FolderOptions};
use crate::format::DataFormat;
use crate::mnist::read_mnist;
use crate::split::{class_balanced_subset, class_balanced_val_split};
use crate::stl10::read_stl10;

/// A split of a data set: `train`, `val` (both cut from the official training images) or
/// `test` (the official test set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training images minus the validation split (then `--subset`, if any).
    Train,
    /// A seeded, class-balanced `val_fraction` of the training images.
    Val,
    /// The official test set.
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            _ => Err(DataError::param("split", s, "train, val or test")),
        }
    }
}

/// Where the data is and how to cut it.
///
/// ```no_run
/// use kinfonce_data::{DataConfig, Split};
/// let cfg = DataConfig::new("data/cifar-10-binary.tar.gz");
/// let splits = cfg.load_splits(true)?; // train 45,000 / val 5,000 / test 10,000
/// # Ok::<(), kinfonce_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DataConfig {
    /// A file or folder in any supported layout.
    pub path: PathBuf,
    /// The layout; default `None`: detected from the path ([`DataFormat::detect`]).
    pub format: Option<DataFormat>,
    /// Fraction of the training images held out as `val`, in [0, 1). Default 0.1.
    pub val_fraction: f64,
    /// Seed of the validation split and the subset. Default 0.
    pub seed: u64,
    /// Keep a class-balanced, seeded subset of this many `train` images. Default `None` (all).
    pub subset: Option<usize>,
    /// Image size and resizing for ImageFolder / TinyImageNet. Default: size of the first image
    /// (64x64 for TinyImageNet), no resizing.
    pub folder: FolderOptions,
    /// Replicate grayscale images to 3 channels (MNIST in an RGB pipeline). Default `false`.
    pub rgb: bool,
}

/// The three splits of a data set.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The layout that was read.
    pub format: DataFormat,
    /// Training images (minus `val`, after `subset`).
    pub train: Dataset,
    /// Held-out training images (empty when `val_fraction` is 0).
    pub val: Dataset,
    /// The official test set, when the layout has one (and it was asked for).
    pub test: Option<Dataset>,
}

impl DataConfig {
    /// A configuration with the documented defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataConfig {
            path: path.into(),
            format: None,
            val_fraction: 0.1,
            seed: 0,
            subset: None,
            folder: FolderOptions::default(),
            rgb: false,
        }
    }

    /// The format given, else the one detected from the path.
    pub fn resolved_format(&self) -> Result<DataFormat> {
        match self.format {
            Some(f) => Ok(f),
            None => DataFormat::detect(&self.path),
        }
    }

    /// Reads the official train and/or test sets, without splitting.
    pub fn read_official(&self, train: bool, test: bool) -> Result<OfficialSplits> {
        if !self.path.exists() {
            return Err(DataError::Missing {
                path: self.path.clone(),
                what: "data path (no such file or folder)".into(),
            });
        }
        let p = &self.path;
        let mut s = match self.resolved_format()? {
            DataFormat::Cifar10 => read_cifar(p, false, train, test)?,
            DataFormat::Cifar100 => read_cifar(p, true, train, test)?,
            DataFormat::Mnist => read_mnist(p, train, test)?,
            DataFormat::Stl10 => read_stl10(p, train, test)?,
            DataFormat::ImageFolder => read_image_folder(p, &self.folder, train, test)?,
            DataFormat::TinyImageNet => read_tiny_imagenet(p, &self.folder, train, test)?,
        };
        if self.rgb {
            s.train = s.train.map(Dataset::into_rgb);
            s.test = s.test.map(Dataset::into_rgb);
        }
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(DataError::param(
                "val_fraction",
                self.val_fraction,
                "a fraction in [0, 1)",
            ));
        }
        if self.subset == Some(0) {
            return Err(DataError::param("subset", 0, "at least 1 image"));
        }
        Ok(())
    }

    /// Cuts `train` (official training images) into (train, val) per this configuration.
    pub fn split_train(&self, official_train: &Dataset) -> Result<(Dataset, Dataset)> {
        self.check()?;
        let (train_idx, val_idx) =
            class_balanced_val_split(official_train, self.val_fraction, self.seed);
        let train_idx = match self.subset {
            Some(n) => {
                let sub = class_balanced_subset(official_train, &train_idx, n, self.seed)?;
                sub.into_iter().map(|i| train_idx[i]).collect()
            }
            None => train_idx,
        };
        Ok((
            official_train.select(&train_idx)?,
            official_train.select(&val_idx)?,
        ))
    }

    /// Reads the data once and returns train, val and (when `with_test` and the layout has one)
    /// test.
    pub fn load_splits(&self, with_test: bool) -> Result<Splits> {
        self.check()?;
        let format = self.resolved_format()?;
        let official = self.read_official(true, with_test)?;
        let full = official.train.expect("reader returns train when asked");
        let (train, val) = self.split_train(&full)?;
        Ok(Splits {
            format,
            train,
            val,
            test: official.test,
        })
    }

    /// Reads one split. `Test` fails with a clear message when the layout has no test set.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        self.check()?;
        match split {
            Split::Test => {
                self.read_official(false, true)?
                    .test
                    .ok_or_else(|| DataError::Missing {
                        path: self.path.clone(),
                        what: "a test split (for an ImageFolder: test/ or val/ beside train/)"
                            .into(),
                    })
            }
            Split::Train | Split::Val => {
                let full = self.read_official(true, false)?.train.expect("train asked");
                let (train, val) = self.split_train(&full)?;
                Ok(if split == Split::Train { train } else { val })
            }
        }
    }
}
