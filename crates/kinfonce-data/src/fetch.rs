//! Downloading the standard data sets into a cache folder: canonical URLs, published
//! checksums, HTTP `Range` resume from a `.part` file, and an atomic rename, so a final file
//! is never half-written.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checksum::Checksum;
use crate::error::{DataError, Result};
use crate::format::DataFormat;

/// One file of a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// File name in the cache folder (and the last segment of each URL).
    pub file_name: &'static str,
    /// URL folders to try in order; the file URL is `folder + file_name`.
    pub bases: &'static [&'static str],
    /// The published checksum.
    pub md5: &'static str,
}

/// A data set that `kinfonce data fetch` knows.
#[derive(Clone, Debug, PartialEq)]
pub struct KnownDataset {
    /// `cifar10`, `cifar100`, `mnist`, `stl10` or `tiny-imagenet`.
    pub name: &'static str,
    /// Its layout.
    pub format: DataFormat,
    /// The files to download.
    pub resources: &'static [Resource],
    /// Size of the download in bytes (for the message before it starts).
    pub approx_bytes: u64,
    /// Path (relative to `cache/name`) to give [`crate::DataConfig`] once fetched.
    pub data_path: &'static str,
    /// The zip archive to extract after the download (TinyImageNet), into `data_path`.
    pub extract_zip: Option<&'static str>,
}

const TORONTO: &[&str] = &["https://www.cs.toronto.edu/~kriz/"];
const MNIST_BASES: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Every data set `fetch` knows, with the checksums their authors (or torchvision) publish.
pub const KNOWN_DATASETS: &[KnownDataset] = &[
    KnownDataset {
        name: "cifar10",
        format: DataFormat::Cifar10,
        resources: &[Resource {
            file_name: "cifar-10-binary.tar.gz",
            bases: TORONTO,
            md5: "c32a1d4ab5d03f1284b67883e8d87530",
        }],
        approx_bytes: 170_052_171,
        data_path: "cifar-10-binary.tar.gz",
        extract_zip: None,
    },
    KnownDataset {
        name: "cifar100",
        format: DataFormat::Cifar100,
        resources: &[Resource {
            file_name: "cifar-100-binary.tar.gz",
            bases: TORONTO,
            md5: "03b5dce01913d631647c71ecec9e9cb8",
        }],
        approx_bytes: 168_513_733,
        data_path: "cifar-100-binary.tar.gz",
        extract_zip: None,
    },
    KnownDataset {
        name: "mnist",
        format: DataFormat::Mnist,
        resources: &[
            Resource {
                file_name: "train-images-idx3-ubyte.gz",
                bases: MNIST_BASES,
                md5: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            },
            Resource {
                file_name: "train-labels-idx1-ubyte.gz",
                bases: MNIST_BASES,
                md5: "d53e105ee54ea40749a09fcbcd1e9432",
            },
            Resource {
                file_name: "t10k-images-idx3-ubyte.gz",
                bases: MNIST_BASES,
                md5: "9fb629c4189551a2d022fa330f9573f3",
            },
            Resource {
                file_name: "t10k-labels-idx1-ubyte.gz",
                bases: MNIST_BASES,
                md5: "ec29112dd5afa0611ce80d1b7f02629c",
            },
        ],
        approx_bytes: 11_594_722,
        data_path: ".",
        extract_zip: None,
    },
    KnownDataset {
        name: "stl10",
        format: DataFormat::Stl10,
        resources: &[Resource {
            file_name: "stl10_binary.tar.gz",
            bases: &["http://ai.stanford.edu/~acoates/stl10/"],
            md5: "91f7769df0f17e558f3565bffb0c7dfb",
        }],
        approx_bytes: 2_640_397_119,
        data_path: "stl10_binary.tar.gz",
        extract_zip: None,
    },
    KnownDataset {
        name: "tiny-imagenet",
        format: DataFormat::TinyImageNet,
        resources: &[Resource {
            file_name: "tiny-imagenet-200.zip",
            bases: &["http://cs231n.stanford.edu/"],
            md5: "90528d7ca1a48142e341f4ef8d21d0de",
        }],
        approx_bytes: 248_100_043,
        data_path: "tiny-imagenet-200",
        extract_zip: Some("tiny-imagenet-200.zip"),
    },
];

/// The data set called `name` (`cifar10`, `cifar100`, `mnist`, `stl10`, `tiny-imagenet`).
pub fn known_dataset(name: &str) -> Result<&'static KnownDataset> {
    let key = name.to_ascii_lowercase().replace(['_', ' '], "-");
    let key = match key.as_str() {
        "cifar-10" => "cifar10",
        "cifar-100" => "cifar100",
        "stl-10" => "stl10",
        "tinyimagenet" | "tiny-imagenet-200" => "tiny-imagenet",
        k => k,
    }
    .to_string();
    KNOWN_DATASETS
        .iter()
        .find(|d| d.name == key)
        .ok_or_else(|| {
            DataError::param(
                "data set",
                name,
                "one of cifar10, cifar100, mnist, stl10, tiny-imagenet",
            )
        })
}

/// The cache folder: `$KINFONCE_DATA`, else `$XDG_CACHE_HOME/kinfonce`, else
/// `~/.cache/kinfonce`, else `./.kinfonce-data`.
pub fn default_cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("KINFONCE_DATA") {
        return p;
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        return p.join("kinfonce");
    }
    if let Some(p) = env("HOME") {
        return p.join(".cache").join("kinfonce");
    }
    PathBuf::from(".kinfonce-data")
}

/// The path to read `dataset` from in `cache`, when it was fetched completely.
pub fn locate(dataset: &KnownDataset, cache: &Path) -> Option<PathBuf> {
    let dir = cache.join(dataset.name);
    let path = dir.join(dataset.data_path);
    let complete = match dataset.extract_zip {
        Some(_) => path.is_dir(),
        None => dataset
            .resources
            .iter()
            .all(|r| dir.join(r.file_name).is_file()),
    };
    complete.then_some(path)
}

/// How to download.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Show a progress bar on stderr. Default true.
    pub progress: bool,
    /// Replaces the canonical URL folders (e.g. a local mirror `http://host/data/`).
    /// Default `None`.
    pub mirror: Option<String>,
    /// Time allowed to connect and to wait for each response. Default 30 s.
    pub timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            progress: true,
            mirror: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What `download` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The verified file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// False when the file was already there and verified.
    pub transferred: bool,
    /// Bytes of an earlier `.part` that were kept (0 for a fresh download).
    pub resumed_from: u64,
}

/// Downloads `url` to `dest`, verifying `checksum`.
///
/// - `dest` present: verified and kept (an error when it does not match);
/// - `dest.part` present: the transfer resumes with `Range: bytes=N-` (a server that answers
///   200 instead of 206 restarts it);
/// - a transfer that breaks leaves `dest.part` for the next call and returns an error;
/// - after a complete transfer the `.part` is verified, then renamed to `dest` (an atomic
///   rename in one folder); on a checksum mismatch the `.part` is deleted.
pub fn download(
    url: &str,
    dest: &Path,
    checksum: &Checksum,
    opts: &FetchOptions,
) -> Result<Downloaded> {
    download_any(&[url.to_string()], dest, checksum, opts)
}

/// As [`download`], trying `urls` in order until one answers.
pub fn download_any(
    urls: &[String],
    dest: &Path,
    checksum: &Checksum,
    opts: &FetchOptions,
) -> Result<Downloaded> {
    if dest.is_file() {
        verify(
            dest,
            checksum,
            urls.first().map_or("", |u| u.as_str()),
            false,
        )?;
        let bytes = std::fs::metadata(dest)
            .map_err(|e| DataError::io(dest, e))?
            .len();
        return Ok(Downloaded {
            path: dest.to_path_buf(),
            bytes,
            transferred: false,
            resumed_from: 0,
        });
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let part = part_path(dest);
    let mut last_err = None;
    for url in urls {
        match transfer(url, &part, opts) {
            Ok(resumed_from) => {
                verify(&part, checksum, url, true)?;
                std::fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
                let bytes = std::fs::metadata(dest)
                    .map_err(|e| DataError::io(dest, e))?
                    .len();
                return Ok(Downloaded {
                    path: dest.to_path_buf(),
                    bytes,
                    transferred: true,
                    resumed_from,
                });
            }
            Err(e) => {
                if opts.progress && urls.len() > 1 {
                    eprintln!("{e}");
                }
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| DataError::param("urls", "[]", "at least one URL")))
}

/// `name.part` beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn verify(path: &Path, checksum: &Checksum, url: &str, remove_on_mismatch: bool) -> Result<()> {
    let actual = checksum.compute(path)?;
    if actual == checksum.expected() {
        return Ok(());
    }
    let what = if remove_on_mismatch {
        let _ = std::fs::remove_file(path);
        "the download was deleted; run again to download it afresh"
    } else {
        "delete the file to download it again"
    };
    Err(DataError::Fetch {
        url: url.to_string(),
        detail: format!(
            "checksum mismatch for {}: {} {actual}, expected {} ({what})",
            path.display(),
            checksum.algorithm(),
            checksum.expected()
        ),
    })
}

/// Appends the rest of `url` to `part`; returns how many bytes were already there.
fn transfer(url: &str, part: &Path, opts: &FetchOptions) -> Result<u64> {
    let fetch_err = |detail: String| DataError::Fetch {
        url: url.to_string(),
        detail,
    };
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .build()
        .into();
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request
        .call()
        .map_err(|e| fetch_err(format!("request failed: {e}")))?;
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut file, start) = match status {
        206 if have > 0 => {
            let f = OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(|e| DataError::io(part, e))?;
            (f, have)
        }
        200 | 206 => (File::create(part).map_err(|e| DataError::io(part, e))?, 0),
        // The .part already holds the whole file.
        416 if have > 0 => return Ok(have),
        s => return Err(fetch_err(format!("HTTP status {s}"))),
    };
    let total = length.map(|l| l + start);
    let bar = progress_bar(opts.progress, total, start, part);
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                bar.abandon();
                return Err(fetch_err(format!(
                    "transfer interrupted after {written} bytes ({e}); {} is kept: run again to resume",
                    part.display()
                )));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| DataError::io(part, e))?;
        written += n as u64;
        bar.set_position(written);
    }
    file.sync_all().map_err(|e| DataError::io(part, e))?;
    bar.finish_and_clear();
    if let Some(t) = total {
        if written != t {
            return Err(fetch_err(format!(
                "transfer ended after {written} of {t} bytes; {} is kept: run again to resume",
                part.display()
            )));
        }
    }
    Ok(start)
}

fn progress_bar(show: bool, total: Option<u64>, start: u64, part: &Path) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let name = part
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".part").to_string());
    bar.set_message(name.unwrap_or_default());
    bar.set_position(start);
    bar
}

/// The result of [`fetch_dataset`].
#[derive(Clone, Debug)]
pub struct FetchReport {
    /// The path to read the data set from (give it to [`crate::DataConfig::new`]).
    pub data_path: PathBuf,
    /// One entry per file.
    pub files: Vec<Downloaded>,
    /// Whether an archive was extracted now.
    pub extracted: bool,
}

/// Downloads (or verifies) every file of `dataset` into `cache/<name>/`, then extracts a zip
/// archive when the layout needs it (into a temporary folder renamed when complete).
pub fn fetch_dataset(
    dataset: &KnownDataset,
    cache: &Path,
    opts: &FetchOptions,
) -> Result<FetchReport> {
    let dir = cache.join(dataset.name);
    let mut files = Vec::new();
    for r in dataset.resources {
        let urls: Vec<String> = match &opts.mirror {
            Some(m) => vec![format!("{}/{}", m.trim_end_matches('/'), r.file_name)],
            None => r
                .bases
                .iter()
                .map(|b| format!("{b}{}", r.file_name))
                .collect(),
        };
        files.push(download_any(
            &urls,
            &dir.join(r.file_name),
            &Checksum::Md5(r.md5.into()),
            opts,
        )?);
    }
    let data_path = dir.join(dataset.data_path);
    let mut extracted = false;
    if let Some(zip_name) = dataset.extract_zip {
        if !data_path.is_dir() {
            extract_zip(&dir.join(zip_name), &dir, &data_path)?;
            extracted = true;
        }
    }
    Ok(FetchReport {
        data_path,
        files,
        extracted,
    })
}

/// Extracts `archive` into `dir/.extracting`, then renames its single top folder (or the
/// whole temporary folder) to `target`.
fn extract_zip(archive: &Path, dir: &Path, target: &Path) -> Result<()> {
    let tmp = dir.join(".extracting");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| DataError::format(archive, format!("corrupt zip archive: {e}")))?;
    zip.extract(&tmp)
        .map_err(|e| DataError::format(archive, format!("cannot extract: {e}")))?;
    let top = target.file_name().map(|n| tmp.join(n));
    let source = match top {
        Some(t) if t.is_dir() => t,
        _ => tmp.clone(),
    };
    std::fs::rename(&source, target).map_err(|e| DataError::io(target, e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_is_extracted_to_its_top_folder_and_located() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let ds = known_dataset("tiny-imagenet").unwrap();
        let folder = cache.join(ds.name);
        std::fs::create_dir_all(&folder).unwrap();
        let zip_path = folder.join("tiny-imagenet-200.zip");
        let mut w = zip::ZipWriter::new(File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("tiny-imagenet-200/wnids.txt", opts).unwrap();
        w.write_all(b"n01\n").unwrap();
        w.finish().unwrap();
        assert!(locate(ds, cache).is_none());
        let target = folder.join(ds.data_path);
        extract_zip(&zip_path, &folder, &target).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("wnids.txt")).unwrap(),
            "n01\n"
        );
        assert_eq!(locate(ds, cache), Some(target));
        assert!(!folder.join(".extracting").exists());
        // A corrupt archive is named.
        std::fs::write(&zip_path, b"PK not really").unwrap();
        let err = extract_zip(&zip_path, &folder, &folder.join("again"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tiny-imagenet-200.zip") && err.contains("zip"),
            "{err}"
        );
    }

    #[test]
    fn aliases_and_part_paths() {
        let name = known_dataset("cifar-100").unwrap().name;
        assert_eq!(name, "cifar100");
        assert_eq!(
            part_path(Path::new("/a/b.tar.gz")),
            PathBuf::from("/a/b.tar.gz.part")
        );
    }
}
