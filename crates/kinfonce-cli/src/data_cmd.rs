//! `kinfonce data ...`: download, inspect and benchmark data sets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use kinfonce_data::fetch::{
    default_cache_dir, fetch_dataset, known_dataset, locate, FetchOptions, KNOWN_DATASETS,
};
use kinfonce_data::{
    augment_view, sha256_file, AugmentConfig, ContrastiveLoader, DataConfig, DataFormat, Dataset,
    Dtype, Element, ImageShape, Layout, LoaderConfig, Scratch, Split, ViewKey,
};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Download a data set into the cache folder, verify its published checksum, resume an
    /// interrupted download (HTTP Range on NAME.part), and rename atomically when verified.
    #[command(after_help = "\
Data sets and sources (checksum: the publisher's md5):
  cifar10        cifar-10-binary.tar.gz    163 MB  www.cs.toronto.edu/~kriz
  cifar100       cifar-100-binary.tar.gz   161 MB  www.cs.toronto.edu/~kriz
  mnist          4 IDX .gz files            11 MB  ossci-datasets mirror, then yann.lecun.com
  stl10          stl10_binary.tar.gz       2.5 GB  ai.stanford.edu/~acoates
  tiny-imagenet  tiny-imagenet-200.zip     237 MB  cs231n.stanford.edu (extracted after download)
Cache folder: --dir, else $KINFONCE_DATA, else $XDG_CACHE_HOME/kinfonce, else ~/.cache/kinfonce.

Example:
  kinfonce data fetch cifar10 && kinfonce data info ~/.cache/kinfonce/cifar10/cifar-10-binary.tar.gz")]
    Fetch(FetchArgs),
    /// Read a data set (any format) and print its splits, sizes, classes, channel means and
    /// checksums (file sha256 and the pixel fingerprint used for provenance).
    Info(InfoArgs),
    /// List the data sets `fetch` knows and whether they are in the cache folder.
    List(ListArgs),
    /// Measure the augmentation pipeline: two-view batches per second on N threads.
    BenchAugment(BenchArgs),
    /// Write the two augmented views of chosen training images to a safetensors file: the
    /// views the trainer and the Python loader (`kinfonce.data`) draw for the same seed, epoch
    /// and image indices.
    #[command(after_help = "\
Each view is a pure function of (seed, epoch, index, view): `--seed` seeds both the validation
split (so the indices are those of the same train split) and the augmentations, as in
`kinfonce pretrain --seed` and `kinfonce.data.TwoViewLoader(seed=...)`.

The file holds `view1` and `view2` ([N, C, S, S], or [N, S, S, C] with --channels-last; F32 or
BF16), `labels` and `indices` (I64, [N]).

Example:
  kinfonce data views cifar-10-binary.tar.gz --seed 3 --epoch 1 --indices 0,17,42 --out views.safetensors")]
    Views(ViewsArgs),
}

#[derive(clap::Args)]
pub struct FetchArgs {
    /// cifar10, cifar100, mnist, stl10 or tiny-imagenet.
    name: String,
    /// Cache folder (the data set goes to DIR/NAME/). Default: $KINFONCE_DATA or ~/.cache/kinfonce.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Download from this URL folder instead of the canonical one (file names are appended).
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Seconds to wait for a connection or a response before giving up.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// No progress bar on stderr.
    #[arg(long)]
    quiet: bool,
    /// Print one JSON object (the last line of stdout).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DataArgs {
    /// A data file or folder: CIFAR .tar.gz/folder/.bin, MNIST IDX folder, STL-10, ImageFolder,
    /// TinyImageNet.
    path: PathBuf,
    /// Layout, when detection from the path is not enough.
    #[arg(long, value_parser = parse_format, value_name = "cifar10|cifar100|mnist|stl10|imagefolder|tiny-imagenet")]
    format: Option<DataFormat>,
    /// Fraction of the training images held out as the validation split, class-balanced.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Seed of the validation split and the subset.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep a class-balanced subset of N training images.
    #[arg(long, value_name = "N")]
    subset: Option<usize>,
    /// Image size HxW (e.g. 64x64) for ImageFolder/TinyImageNet; default: the first image's.
    #[arg(long, value_parser = parse_size, value_name = "HxW")]
    image_size: Option<(usize, usize)>,
    /// Resize ImageFolder images of another size to --image-size instead of failing.
    #[arg(long)]
    resize: bool,
}

impl DataArgs {
    fn config(&self) -> DataConfig {
        let mut cfg = DataConfig::new(&self.path);
        cfg.format = self.format;
        cfg.val_fraction = self.val_fraction;
        cfg.seed = self.seed;
        cfg.subset = self.subset;
        cfg.folder.image_size = self.image_size;
        cfg.folder.resize = self.resize;
        cfg
    }
}

#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object (the last line of stdout).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Cache folder. Default: $KINFONCE_DATA or ~/.cache/kinfonce.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print one JSON object (the last line of stdout).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Augmentation worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Pairs per batch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Batches to time (after one warm-up batch).
    #[arg(long, default_value_t = 40)]
    batches: usize,
    /// Write channels-last (NHWC) buffers.
    #[arg(long)]
    channels_last: bool,
    /// Write bf16 buffers.
    #[arg(long)]
    bf16: bool,
    /// Print one JSON object (the last line of stdout).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ViewsArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The epoch of the views.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// Indices of images in the train split, comma-separated (e.g. 0,17,42).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1.., value_name = "I,J,...")]
    indices: Vec<usize>,
    /// The views' augmentation: `auto` (the data set's SimCLR preset) or `moco-v2`.
    #[arg(long, default_value = "auto")]
    augment: String,
    /// Side of the views in pixels; default: the images' larger side (as the trainer).
    #[arg(long, value_name = "PIXELS")]
    size: Option<usize>,
    /// Write channels-last ([N, S, S, C]) views.
    #[arg(long)]
    channels_last: bool,
    /// Write bf16 views.
    #[arg(long)]
    bf16: bool,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE.safetensors")]
    out: PathBuf,
}

fn parse_format(s: &str) -> Result<DataFormat, String> {
    s.parse()
        .map_err(|e: kinfonce_data::DataError| e.to_string())
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("image size {s:?}: expected HxW, e.g. 64x64");
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (h, w) = (
        h.trim().parse().map_err(|_| bad())?,
        w.trim().parse().map_err(|_| bad())?,
    );
    if h == 0 || w == 0 {
        return Err(bad());
    }
    Ok((h, w))
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Fetch(a) => fetch(a),
        DataCommand::Info(a) => info(a),
        DataCommand::List(a) => list(a),
        DataCommand::BenchAugment(a) => bench(a),
        DataCommand::Views(a) => views(a),
    }
}

fn fetch(a: FetchArgs) -> anyhow::Result<()> {
    let ds = known_dataset(&a.name)?;
    let cache = a.dir.unwrap_or_else(default_cache_dir);
    let opts = FetchOptions {
        progress: !a.quiet,
        mirror: a.mirror,
        timeout: std::time::Duration::from_secs(a.timeout.max(1)),
    };
    if !a.quiet && locate(ds, &cache).is_none() {
        eprintln!(
            "fetching {} (about {:.0} MB) into {}",
            ds.name,
            ds.approx_bytes as f64 / 1e6,
            cache.join(ds.name).display()
        );
    }
    let report =
        fetch_dataset(ds, &cache, &opts).with_context(|| format!("fetching {}", ds.name))?;
    let transferred = report.files.iter().filter(|f| f.transferred).count();
    if a.json {
        let files: Vec<_> = report
            .files
            .iter()
            .map(|f| json!({"path": f.path, "bytes": f.bytes, "transferred": f.transferred, "resumed_from": f.resumed_from}))
            .collect();
        println!(
            "{}",
            json!({"dataset": ds.name, "format": ds.format.name(), "path": report.data_path, "files": files, "verified": true, "extracted": report.extracted})
        );
    } else {
        let what = if transferred == 0 {
            "already present, checksum verified"
        } else {
            "downloaded, checksum verified"
        };
        println!("{}: {what}", ds.name);
        println!("path: {}", report.data_path.display());
        println!("use it with: --data {}", report.data_path.display());
    }
    Ok(())
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let cache = a.dir.unwrap_or_else(default_cache_dir);
    let rows: Vec<_> = KNOWN_DATASETS
        .iter()
        .map(|d| (d, locate(d, &cache)))
        .collect();
    if a.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(d, p)| json!({"name": d.name, "format": d.format.name(), "bytes": d.approx_bytes, "path": p}))
            .collect();
        println!("{}", json!({"cache": cache, "datasets": items}));
    } else {
        println!("cache folder: {}", cache.display());
        for (d, p) in rows {
            let state = p.map_or("not fetched".to_string(), |p| p.display().to_string());
            println!(
                "  {:<14} {:>8.0} MB  {state}",
                d.name,
                d.approx_bytes as f64 / 1e6
            );
        }
    }
    Ok(())
}

fn describe(d: &Dataset) -> serde_json::Value {
    let counts = d.class_counts();
    json!({
        "images": d.len(),
        "height": d.height(),
        "width": d.width(),
        "channels": d.channels(),
        "min_per_class": counts.iter().min(),
        "max_per_class": counts.iter().max(),
        "channel_mean": d.channel_mean().iter().map(|m| (m * 1e4).round() / 1e4).collect::<Vec<_>>(),
        "fingerprint": d.fingerprint(),
    })
}

fn info(a: InfoArgs) -> anyhow::Result<()> {
    let cfg = a.data.config();
    let t0 = Instant::now();
    let splits = cfg
        .load_splits(true)
        .with_context(|| format!("reading {}", cfg.path.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let file_sha256 = if cfg.path.is_file() {
        Some(sha256_file(&cfg.path)?)
    } else {
        None
    };
    let classes = splits.train.class_names().to_vec();
    let value = json!({
        "path": cfg.path,
        "format": splits.format.name(),
        "num_classes": splits.train.num_classes(),
        "classes": classes,
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
        "subset": cfg.subset,
        "train": describe(&splits.train),
        "val": describe(&splits.val),
        "test": splits.test.as_ref().map(describe),
        "file_sha256": file_sha256,
        "read_seconds": (secs * 1000.0).round() / 1000.0,
    });
    if a.json {
        println!("{value}");
        return Ok(());
    }
    println!(
        "{} ({}), read in {secs:.2} s",
        cfg.path.display(),
        splits.format
    );
    let shown: Vec<&str> = classes.iter().take(10).map(String::as_str).collect();
    let more = if classes.len() > 10 { ", ..." } else { "" };
    println!("classes: {} ({}{more})", classes.len(), shown.join(", "));
    let mut rows = vec![("train", Some(&splits.train)), ("val", Some(&splits.val))];
    rows.push(("test", splits.test.as_ref()));
    for (name, d) in rows {
        match d {
            Some(d) => {
                let m = d.channel_mean();
                let means: Vec<String> = m.iter().map(|v| format!("{v:.4}")).collect();
                println!(
                    "  {name:<5} {:>7} images  {}x{}x{}  channel mean {}  fingerprint {}",
                    d.len(),
                    d.height(),
                    d.width(),
                    d.channels(),
                    means.join(" "),
                    &d.fingerprint()[..16]
                );
            }
            None => println!("  {name:<5} (none in this layout)"),
        }
    }
    if let Some(s) = value["file_sha256"].as_str() {
        println!("file sha256: {s}");
    }
    Ok(())
}

fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let cfg = a.data.config();
    let format = cfg.resolved_format()?;
    let data = cfg.load(Split::Train)?;
    let size = data.height();
    let loader_cfg = LoaderConfig {
        batch_size: a.batch,
        threads: a.threads,
        layout: if a.channels_last {
            Layout::Nhwc
        } else {
            Layout::Nchw
        },
        dtype: if a.bf16 { Dtype::Bf16 } else { Dtype::F32 },
        ..Default::default()
    };
    let loader = ContrastiveLoader::new(
        Arc::new(data),
        AugmentConfig::preset(format, size),
        loader_cfg,
    )?;
    let per_epoch = loader.batches_per_epoch();
    loader.batch(0, 0)?;
    let t0 = Instant::now();
    let (mut views, mut done, mut epoch) = (0usize, 0usize, 0u64);
    'outer: loop {
        for b in loader.epoch(epoch).take(per_epoch) {
            views += b?.rows();
            done += 1;
            if done >= a.batches {
                break 'outer;
            }
        }
        epoch += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let vps = views as f64 / secs;
    if a.json {
        println!(
            "{}",
            json!({"format": format.name(), "size": size, "threads": a.threads, "batch": a.batch, "views": views,
                   "seconds": secs, "views_per_s": vps, "channels_last": a.channels_last, "bf16": a.bf16})
        );
    } else {
        println!(
            "{format} {size}x{size}: {views} views in {secs:.2} s = {vps:.0} views/s on {} threads ({:.1} us per view per thread)",
            a.threads,
            secs * 1e6 * a.threads as f64 / views as f64
        );
    }
    Ok(())
}

fn views(a: ViewsArgs) -> anyhow::Result<()> {
    let cfg = a.data.config();
    let format = cfg.resolved_format()?;
    let data = cfg
        .load(Split::Train)
        .with_context(|| format!("reading {}", cfg.path.display()))?;
    if data.is_streamed() {
        anyhow::bail!(
            "{}: a streamed folder (images of different sizes or too many to hold); `data views` \
             draws views of images held in memory: pass --image-size H W --resize",
            cfg.path.display()
        );
    }
    if let Some(&bad) = a.indices.iter().find(|&&i| i >= data.len()) {
        anyhow::bail!(
            "--indices: {bad} is out of range: the train split has {} images",
            data.len()
        );
    }
    if a.size == Some(0) {
        anyhow::bail!("--size: 0 is not a positive side");
    }
    let size = a.size.unwrap_or(data.height().max(data.width()));
    let augment = AugmentConfig::named(&a.augment, format, size)?;
    augment.validate(data.channels())?;
    let layout = if a.channels_last {
        Layout::Nhwc
    } else {
        Layout::Nchw
    };
    let channels = data.channels();
    let shape = data.shape();
    let n = a.indices.len();
    let view_shape = match layout {
        Layout::Nchw => vec![n, channels, size, size],
        Layout::Nhwc => vec![n, size, size, channels],
    };
    // View v of every listed image, exactly as the loader draws it.
    fn draw<T: Element>(
        a: &ViewsArgs,
        data: &Dataset,
        augment: &AugmentConfig,
        shape: ImageShape,
        layout: Layout,
        view: u64,
    ) -> Vec<T> {
        let item = shape.channels * augment.size * augment.size;
        let mut out = vec![T::default(); a.indices.len() * item];
        let mut scratch = Scratch::default();
        for (&index, row) in a.indices.iter().zip(out.chunks_mut(item)) {
            let key = ViewKey {
                seed: a.data.seed,
                epoch: a.epoch,
                index: index as u64,
                view,
            };
            augment_view(
                augment,
                data.image(index),
                shape,
                key,
                layout,
                row,
                &mut scratch,
            );
        }
        out
    }
    let (dtype, view_bytes): (safetensors::Dtype, Vec<Vec<u8>>) = if a.bf16 {
        let bytes = (0..2)
            .map(|v| {
                draw::<half::bf16>(&a, &data, &augment, shape, layout, v)
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect()
            })
            .collect();
        (safetensors::Dtype::BF16, bytes)
    } else {
        let bytes = (0..2)
            .map(|v| {
                draw::<f32>(&a, &data, &augment, shape, layout, v)
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect()
            })
            .collect();
        (safetensors::Dtype::F32, bytes)
    };
    let labels: Vec<u8> = a
        .indices
        .iter()
        .flat_map(|&i| (data.labels()[i] as i64).to_le_bytes())
        .collect();
    let indices: Vec<u8> = a
        .indices
        .iter()
        .flat_map(|&i| (i as i64).to_le_bytes())
        .collect();
    let tensor = |dtype, shape: Vec<usize>, bytes| {
        safetensors::tensor::TensorView::new(dtype, shape, bytes)
            .map_err(|e| anyhow::anyhow!("building the safetensors header: {e:?}"))
    };
    let tensors = vec![
        ("view1", tensor(dtype, view_shape.clone(), &view_bytes[0])?),
        ("view2", tensor(dtype, view_shape, &view_bytes[1])?),
        ("labels", tensor(safetensors::Dtype::I64, vec![n], &labels)?),
        (
            "indices",
            tensor(safetensors::Dtype::I64, vec![n], &indices)?,
        ),
    ];
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), format.name().to_string()),
        ("seed".to_string(), a.data.seed.to_string()),
        ("epoch".to_string(), a.epoch.to_string()),
        ("augment".to_string(), a.augment.clone()),
    ]);
    safetensors::tensor::serialize_to_file(tensors, &Some(metadata), &a.out)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e:?}", a.out.display()))?;
    println!(
        "{}: views of {n} images ({format}, seed {}, epoch {}, {size}x{size})",
        a.out.display(),
        a.data.seed,
        a.epoch
    );
    Ok(())
}
