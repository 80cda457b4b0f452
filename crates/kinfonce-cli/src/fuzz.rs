//! `kinfonce bench fuzz`: every reader of the project fed mutated bytes of small valid inputs.
//! A reader may accept an input or refuse it with an error that names the file; it may not
//! panic, and it must finish within 2 s.

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The longest a reader may take on one input.
const TIME_LIMIT_S: f64 = 2.0;
/// Images per small input: enough for every reader's structure, small enough to be fast.
const IMAGES: usize = 8;

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Mutated inputs per format.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Seed of the mutations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A CIFAR-10 binary batch file (records of 1 label byte + 3,072 pixel bytes) whose first
    /// records become the image inputs. [default: the built-in synthetic images]
    #[arg(long, value_name = "FILE")]
    pub cifar: Option<PathBuf>,
    /// Only these formats, comma-separated. [default: all]
    #[arg(long, value_delimiter = ',')]
    pub formats: Vec<String>,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// What one format's inputs did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FormatReport {
    pub format: String,
    pub tried: usize,
    pub accepted: usize,
    pub refused: usize,
    /// Panic messages (with the input's number).
    pub panics: Vec<String>,
    /// Inputs that took longer than the limit.
    pub slow: usize,
    /// Errors that do not name the input's file.
    pub unnamed: Vec<String>,
    pub max_ms: f64,
}

impl FormatReport {
    pub fn clean(&self) -> bool {
        self.panics.is_empty() && self.slow == 0 && self.unnamed.is_empty()
    }
}

type Reader = fn(&Path) -> anyhow::Result<()>;

/// A small valid input: its files (relative path, bytes), and the reader with what it is given
/// (the case folder joined with `target`).
pub struct Format {
    pub name: &'static str,
    files: Vec<(String, Vec<u8>)>,
    target: &'static str,
    read: Reader,
}

/// The images the inputs are made of: CIFAR records (label, then 32 x 32 planar RGB).
fn records(cifar: Option<&Path>) -> anyhow::Result<Vec<(u8, Vec<u8>)>> {
    const RECORD: usize = 1 + 3 * 1024;
    match cifar {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading --cifar {}", path.display()))?;
            if bytes.len() < IMAGES * RECORD {
                bail!(
                    "--cifar {}: fewer than {IMAGES} CIFAR records",
                    path.display()
                );
            }
            Ok(bytes
                .chunks_exact(RECORD)
                .take(IMAGES)
                .map(|r| (r[0], r[1..].to_vec()))
                .collect())
        }
        None => Ok((0..IMAGES)
            .map(|i| {
                let class = i % 10;
                (
                    class as u8,
                    kinfonce_data::synthetic_image(class, 0, 0, i as u64),
                )
            })
            .collect()),
    }
}

fn cifar_batch(images: &[(u8, Vec<u8>)]) -> Vec<u8> {
    images
        .iter()
        .flat_map(|(label, pixels)| std::iter::once(*label).chain(pixels.iter().copied()))
        .collect()
}

fn tar_gz(members: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, *bytes)?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// IDX: magic (0, 0, type 8 = u8, dims), big-endian sizes, then the bytes.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

/// A 28 x 28 grey image from the red plane's top-left corner.
fn grey28(pixels: &[u8]) -> Vec<u8> {
    (0..28)
        .flat_map(|y| (0..28).map(move |x| pixels[y * 32 + x]))
        .collect()
}

fn encoded(pixels: &[u8], format: image::ImageFormat) -> anyhow::Result<Vec<u8>> {
    let rgb: Vec<u8> = (0..1024)
        .flat_map(|i| [pixels[i], pixels[1024 + i], pixels[2048 + i]])
        .collect();
    let img = image::RgbImage::from_raw(32, 32, rgb).context("32 x 32 image")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format)?;
    Ok(out.into_inner())
}

fn read_data(path: &Path, format: kinfonce_data::DataFormat) -> anyhow::Result<()> {
    let mut dc = kinfonce_data::DataConfig::new(path);
    dc.format = Some(format);
    dc.read_official(true, true)?;
    Ok(())
}

fn image_folder(images: &[(u8, Vec<u8>)], ext: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let format = match ext {
        "png" => image::ImageFormat::Png,
        _ => image::ImageFormat::Jpeg,
    };
    images
        .iter()
        .enumerate()
        .map(|(i, (_, pixels))| {
            let split = if i < IMAGES / 2 { "train" } else { "test" };
            let class = ["cat", "dog"][i % 2];
            Ok((
                format!("{split}/{class}/{i}.{ext}"),
                encoded(pixels, format)?,
            ))
        })
        .collect()
}

fn edge_list() -> Vec<u8> {
    b"# a ring of 6 and a chord\n0 1\n1 2 0.5\n2 3\n3 4 2\n4 5\n5 0\n0 3 0.25\n".to_vec()
}

fn loss_cases() -> Vec<u8> {
    br#"{"cases": [
  {"name": "laplacian", "kind": "exp", "params": {"gamma": 1.0, "tau": 0.2, "p": 2},
   "inputs": [[[0.6, 0.8], [1.0, 0.0]], [[0.8, 0.6], [0.0, 1.0]]]},
  {"name": "mix", "kind": "kernel_mixture", "params": {"components": [[0.5, 1.0, 0.2], [0.5, 2.0, 0.4]]},
   "inputs": [[[0.6, 0.8], [1.0, 0.0]], [[0.8, 0.6], [0.0, 1.0]]]},
  {"name": "moco", "kind": "moco", "params": {"gamma": 2.0, "tau": 0.5},
   "inputs": [[[0.6, 0.8]], [[0.8, 0.6]], [[1.0, 0.0], [0.0, 1.0]]]}
]}"#
    .to_vec()
}

/// Every format the project reads, built from `images`.
pub fn formats(images: &[(u8, Vec<u8>)]) -> anyhow::Result<Vec<Format>> {
    use kinfonce_data::DataFormat;
    let batch = cifar_batch(images);
    let half = cifar_batch(&images[..IMAGES / 2]);
    let archive = tar_gz(&[
        ("cifar-10-batches-bin/data_batch_1.bin", &half),
        ("cifar-10-batches-bin/data_batch_2.bin", &half),
        ("cifar-10-batches-bin/data_batch_3.bin", &half),
        ("cifar-10-batches-bin/data_batch_4.bin", &half),
        ("cifar-10-batches-bin/data_batch_5.bin", &half),
        ("cifar-10-batches-bin/test_batch.bin", &half),
    ])?;
    let grey: Vec<u8> = images.iter().flat_map(|(_, p)| grey28(p)).collect();
    let labels: Vec<u8> = images.iter().map(|(l, _)| *l).collect();
    let n = IMAGES as u32;
    let mnist = vec![
        ("train-images-idx3-ubyte".into(), idx(&[n, 28, 28], &grey)),
        ("train-labels-idx1-ubyte".into(), idx(&[n], &labels)),
        ("t10k-images-idx3-ubyte".into(), idx(&[n, 28, 28], &grey)),
        ("t10k-labels-idx1-ubyte".into(), idx(&[n], &labels)),
    ];
    let all = vec![
        Format {
            name: "cifar10-batch",
            files: vec![("data_batch_1.bin".into(), batch)],
            target: "data_batch_1.bin",
            read: |p| read_data(p, DataFormat::Cifar10),
        },
        Format {
            name: "cifar10-tar.gz",
            files: vec![("cifar-10-binary.tar.gz".into(), archive)],
            target: "cifar-10-binary.tar.gz",
            read: |p| read_data(p, DataFormat::Cifar10),
        },
        Format {
            name: "mnist-idx",
            files: mnist,
            target: "",
            read: |p| read_data(p, DataFormat::Mnist),
        },
        Format {
            name: "imagefolder-jpeg",
            files: image_folder(images, "jpg")?,
            target: "",
            read: |p| read_data(p, DataFormat::ImageFolder),
        },
        Format {
            name: "imagefolder-png",
            files: image_folder(images, "png")?,
            target: "",
            read: |p| read_data(p, DataFormat::ImageFolder),
        },
        Format {
            name: "edge-list",
            files: vec![("graph.txt".into(), edge_list())],
            target: "graph.txt",
            read: |p| {
                kinfonce_graph::edge_list::read_edge_list(p)?;
                Ok(())
            },
        },
        Format {
            name: "loss-cases-json",
            files: vec![("cases.json".into(), loss_cases())],
            target: "cases.json",
            read: |p| {
                crate::loss_cmd::evaluate_file(p, "f64")?;
                Ok(())
            },
        },
    ];
    #[cfg(feature = "torch")]
    let all = all.into_iter().chain(torch_formats()?).collect();
    Ok(all)
}

/// The run-folder files libtorch's side reads: a checkpoint (with and without the checksums
/// that guard it) and a run's config.toml.
#[cfg(feature = "torch")]
fn torch_formats() -> anyhow::Result<Vec<Format>> {
    use kinfonce_train::checkpoint;
    use kinfonce_train::tch::{Device, Kind, Tensor};
    let dir = tempfile_dir("template")?;
    let w = Tensor::arange(48, (Kind::Float, Device::Cpu)).reshape([4, 12]);
    let tensors = vec![("conv1.weight".to_string(), w)];
    let state = checkpoint::TrainingState {
        step: 3,
        epoch: 0,
        batch_in_epoch: 3,
        optimizer_step: 3,
        probe_optimizer_step: 3,
        seed: 0,
        last_loss: 1.5,
        elapsed_s: 0.5,
        queue_ptr: 0,
    };
    let saved = checkpoint::save(&dir, &tensors, &tensors, &tensors, &state, 1)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&saved)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        files.push((name, std::fs::read(&path)?));
    }
    files.sort();
    let _ = std::fs::remove_dir_all(&dir);
    let unguarded: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter(|(name, _)| name != "checksums.json")
        .cloned()
        .collect();
    let config = format!(
        "[config]\n{}\n[provenance]\nsteps_per_epoch = 10\ncommand = \"kinfonce pretrain\"\n",
        toml::to_string(&kinfonce_train::TrainConfig::default())?
    );
    let load: Reader = |p| {
        checkpoint::load(p)?;
        Ok(())
    };
    Ok(vec![
        Format {
            name: "checkpoint",
            files,
            target: "",
            read: load,
        },
        Format {
            name: "checkpoint-without-checksums",
            files: unguarded,
            target: "",
            read: load,
        },
        Format {
            name: "config-toml",
            files: vec![("config.toml".into(), config.into_bytes())],
            target: "",
            read: |p| {
                kinfonce_train::config::read_run_config(p)?;
                Ok(())
            },
        },
    ])
}

fn tempfile_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kinfonce-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// One to eight random edits: flipped bits, overwritten bytes, cuts, insertions, truncation,
/// a repeated chunk.
fn mutate(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..rng.gen_range(1..=8) {
        let len = b.len();
        if len == 0 {
            b.push(rng.gen());
            continue;
        }
        let at = rng.gen_range(0..len);
        match rng.gen_range(0..6) {
            0 => b[at] ^= 1 << rng.gen_range(0..8),
            1 => b[at] = [0, 0xff, 0x7f, 0x80, rng.gen()][rng.gen_range(0..5)],
            2 => {
                let end = (at + rng.gen_range(1..=16)).min(len);
                b.drain(at..end);
            }
            3 => {
                let insert: Vec<u8> = (0..rng.gen_range(1..=16)).map(|_| rng.gen()).collect();
                b.splice(at..at, insert);
            }
            4 => b.truncate(at),
            _ => {
                let end = (at + rng.gen_range(1..=64)).min(len);
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
        }
    }
    b
}

/// Feeds `count` mutants of `format` to its reader.
pub fn fuzz_format(format: &Format, count: usize, seed: u64) -> anyhow::Result<FormatReport> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let root = tempfile_dir(format.name)?;
    let mut report = FormatReport {
        format: format.name.into(),
        ..Default::default()
    };
    for i in 0..count {
        let case = root.join(format!("case-{i:06}"));
        let victim = rng.gen_range(0..format.files.len());
        for (k, (name, bytes)) in format.files.iter().enumerate() {
            let path = case.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let body = if k == victim {
                mutate(bytes, &mut rng)
            } else {
                bytes.clone()
            };
            std::fs::File::create(&path)?.write_all(&body)?;
        }
        let target = case.join(format.target);
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| (format.read)(&target)));
        let ms = start.elapsed().as_secs_f64() * 1e3;
        report.tried += 1;
        report.max_ms = report.max_ms.max(ms);
        if ms > TIME_LIMIT_S * 1e3 {
            report.slow += 1;
        }
        match outcome {
            Ok(Ok(())) => report.accepted += 1,
            Ok(Err(e)) => {
                report.refused += 1;
                let message = format!("{e:#}");
                if !message.contains(&format!("case-{i:06}")) {
                    report.unnamed.push(format!("input {i}: {message}"));
                }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                report.panics.push(format!("input {i}: {message}"));
            }
        }
        let _ = std::fs::remove_dir_all(&case);
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(report)
}

/// Runs every selected format; panics are counted, not printed.
pub fn fuzz(args: &FuzzArgs) -> anyhow::Result<Vec<FormatReport>> {
    let images = records(args.cifar.as_deref())?;
    let all = formats(&images)?;
    for wanted in &args.formats {
        if !all.iter().any(|f| f.name == wanted) {
            let names: Vec<&str> = all.iter().map(|f| f.name).collect();
            bail!(
                "--formats: unknown format `{wanted}`; expected any of {}",
                names.join(", ")
            );
        }
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut reports = Vec::new();
    for (k, format) in all.iter().enumerate() {
        if !args.formats.is_empty() && !args.formats.iter().any(|f| f == format.name) {
            continue;
        }
        eprintln!("fuzzing {} ({} inputs)", format.name, args.count);
        reports.push(fuzz_format(
            format,
            args.count,
            args.seed.wrapping_add(k as u64),
        ));
    }
    std::panic::set_hook(previous);
    reports.into_iter().collect()
}

pub fn run(args: FuzzArgs) -> anyhow::Result<()> {
    let reports = fuzz(&args)?;
    println!(
        "{:<30} {:>7} {:>9} {:>8} {:>7} {:>5} {:>8} {:>9}",
        "format", "tried", "accepted", "refused", "panics", "slow", "unnamed", "max ms"
    );
    for r in &reports {
        println!(
            "{:<30} {:>7} {:>9} {:>8} {:>7} {:>5} {:>8} {:>9.1}",
            r.format,
            r.tried,
            r.accepted,
            r.refused,
            r.panics.len(),
            r.slow,
            r.unnamed.len(),
            r.max_ms
        );
        for line in r.panics.iter().chain(&r.unnamed).take(5) {
            println!("    {line}");
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "formats": reports }));
    }
    if reports.iter().any(|r| !r.clean()) {
        bail!(
            "some inputs panicked, took over {TIME_LIMIT_S} s, or failed without naming their file"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmutated_inputs_are_accepted() {
        let images = records(None).unwrap();
        for format in formats(&images).unwrap() {
            let dir = tempfile_dir(&format!("valid-{}", format.name)).unwrap();
            for (name, bytes) in &format.files {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
            (format.read)(&dir.join(format.target))
                .unwrap_or_else(|e| panic!("{}: the valid input is refused: {e:#}", format.name));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn mutations_change_the_bytes_and_stay_reproducible() {
        let seed: Vec<u8> = (0..=255).collect();
        let run = |s| {
            let mut rng = ChaCha8Rng::seed_from_u64(s);
            (0..50).map(|_| mutate(&seed, &mut rng)).collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert!(
            a.iter().filter(|m| **m != seed).count() >= 45,
            "most mutants differ"
        );
    }
}
