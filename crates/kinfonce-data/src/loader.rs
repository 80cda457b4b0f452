//! Prefetching batch loaders: [`ContrastiveLoader`] (augmented views for pretraining) and
//! [`EvalLoader`] (plain normalised images for features).
//!
//! One producer thread per epoch builds batches in order on a private rayon pool of
//! `threads` workers (one image view per task) and hands them over a bounded channel, so at most
//! `prefetch` finished batches plus the one being built exist at once: memory is bounded and
//! the model computes while the next batches are augmented. Batches are plain contiguous
//! buffers: give `Batch::as_f32()` to `Tensor::from_slice(..).view(batch.memory_shape())`.
//!
//! A streamed set ([`Dataset::is_streamed`]) is read from its files by the same workers, one
//! view at a time, so at most `threads` files and decoded images are held besides the batches.
//! A file that fails to decode ends the epoch with one error naming it.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::augment::{
    augment_view, augment_view_decoded, center_crop_view, eval_view, imagenet_eval_view_decoded,
    AugmentConfig, Normalization, Scratch, ViewKey,
};
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::rng::CounterRng;
use crate::stream::decode_file;
use crate::tensor::{Dtype, Element, Layout};

const SHUFFLE_STREAM: u64 = 0x5348_5546_464C_4545; // "SHUFFLEE"

/// Settings of [`ContrastiveLoader`].
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch (pairs, for 2 views). Default 256.
    pub batch_size: usize,
    /// Augmented views per image. Default 2 (SimCLR pairs).
    pub views: usize,
    /// Worker threads that augment. Default 2.
    pub threads: usize,
    /// Finished batches that may wait for the consumer. Default 2.
    pub prefetch: usize,
    /// Shuffle every epoch (seeded by `(seed, epoch)`). Default true.
    pub shuffle: bool,
    /// Drop the last incomplete batch (a batch of one breaks BatchNorm). Default true.
    pub drop_last: bool,
    /// Seed of the shuffles and augmentations. Default 0.
    pub seed: u64,
    /// Buffer order. Default NCHW.
    pub layout: Layout,
    /// Buffer element type. Default f32.
    pub dtype: Dtype,
    /// `(index, count)`: this process builds slice `index` of `count` equal, disjoint slices of
    /// every batch (data parallelism; `batch_size` stays the global batch, and the views, keyed
    /// by data-set index, do not depend on the count). Default (0, 1).
    pub shard: (usize, usize),
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 256,
            views: 2,
            threads: 2,
            prefetch: 2,
            shuffle: true,
            drop_last: true,
            seed: 0,
            layout: Layout::Nchw,
            dtype: Dtype::F32,
            shard: (0, 1),
        }
    }
}

/// A batch buffer in its element type.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// bfloat16.
    Bf16(Vec<half::bf16>),
}

/// One batch.
///
/// # Shapes
/// - `shape`: the logical NCHW shape `[views * B, C, H, W]`; rows `v * B .. (v + 1) * B` are
///   view `v` of images `indices[0..B]` (so for pairs: view 1 first, then view 2).
/// - the buffer: `memory_shape()`, `[N, C, H, W]` (NCHW) or `[N, H, W, C]` (NHWC), contiguous.
/// - `labels`, `indices`: `[B]`, per image (identical for every view).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The pixels, normalised.
    pub data: BatchData,
    /// `[views * B, C, H, W]`.
    pub shape: [usize; 4],
    /// Memory order of `data`.
    pub layout: Layout,
    /// Class labels of the B images (0 for unlabelled data).
    pub labels: Vec<i64>,
    /// Indices of the B images in the data set.
    pub indices: Vec<usize>,
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Its position in the epoch.
    pub batch: usize,
}

impl Batch {
    /// Images in the batch (B; pairs for 2 views).
    pub fn images(&self) -> usize {
        self.indices.len()
    }
    /// Rows of the buffer (`views * B`).
    pub fn rows(&self) -> usize {
        self.shape[0]
    }
    /// The buffer's shape in memory: `[N, C, H, W]` or `[N, H, W, C]`.
    pub fn memory_shape(&self) -> [usize; 4] {
        let [n, c, h, w] = self.shape;
        match self.layout {
            Layout::Nchw => [n, c, h, w],
            Layout::Nhwc => [n, h, w, c],
        }
    }
    /// The f32 buffer, when `dtype` is f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            BatchData::F32(v) => Some(v),
            BatchData::Bf16(_) => None,
        }
    }
    /// The bf16 buffer, when `dtype` is bf16.
    pub fn as_bf16(&self) -> Option<&[half::bf16]> {
        match &self.data {
            BatchData::Bf16(v) => Some(v),
            BatchData::F32(_) => None,
        }
    }
    /// Labels of every row, `[views * B]` (view-major, like the buffer).
    pub fn row_labels(&self) -> Vec<i64> {
        let views = self.rows() / self.images().max(1);
        (0..views)
            .flat_map(|_| self.labels.iter().copied())
            .collect()
    }
}

fn build_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    if threads == 0 {
        return Err(DataError::param("threads", 0, "at least 1 worker thread"));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("kinfonce-data-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| DataError::Loader(format!("cannot start {threads} worker threads: {e}")))
}

/// Writes one row of a batch; fails with an error that names the file at fault.
type RowWrite<'a, T> = dyn Fn(usize, &mut [T], &mut Scratch) -> Result<()> + Sync + 'a;

/// Fills a `[rows, item]` buffer in parallel; `write(row, out, scratch)` fills one row.
fn fill<T: Element>(
    pool: &rayon::ThreadPool,
    rows: usize,
    item: usize,
    write: &RowWrite<'_, T>,
) -> Result<Vec<T>> {
    let mut data = vec![T::default(); rows * item];
    pool.install(|| {
        data.par_chunks_mut(item)
            .enumerate()
            .try_for_each_init(Scratch::default, |scratch, (row, out)| {
                write(row, out, scratch)
            })
    })?;
    Ok(data)
}

fn fill_any(
    pool: &rayon::ThreadPool,
    dtype: Dtype,
    rows: usize,
    item: usize,
    f32_write: &RowWrite<'_, f32>,
    bf16_write: &RowWrite<'_, half::bf16>,
) -> Result<BatchData> {
    Ok(match dtype {
        Dtype::F32 => BatchData::F32(fill(pool, rows, item, f32_write)?),
        Dtype::Bf16 => BatchData::Bf16(fill(pool, rows, item, bf16_write)?),
    })
}

/// One augmented view of image `i` of `d` into `out`: from memory, or decoded from its file
/// at the scale its crop needs.
#[allow(clippy::too_many_arguments)]
fn write_view<T: Element>(
    d: &Dataset,
    i: usize,
    aug: &AugmentConfig,
    key: ViewKey,
    layout: Layout,
    out: &mut [T],
    sc: &mut Scratch,
) -> Result<()> {
    let Some((path, shape)) = d.file(i) else {
        let shape = d.shape();
        augment_view(aug, d.image(i), shape, key, layout, out, sc);
        return Ok(());
    };
    let mut file = std::mem::take(&mut sc.file);
    let s = aug.size;
    let done = augment_view_decoded(aug, shape, key, layout, out, sc, |crop, buf| {
        let cover = crop.map(|c| ((c.height, c.width), (s, s)));
        decode_file(&path, shape, cover, &mut file, buf)
    });
    sc.file = file;
    done.map(|_| ())
}

/// The evaluation view of image `i` of `d` at side `s`: a streamed set's is ImageNet's
/// (resize to `s * 8 / 7`, centre crop); a set in memory's is [`eval_view`], or
/// [`center_crop_view`] when `center_crop`.
#[allow(clippy::too_many_arguments)]
fn write_eval_view<T: Element>(
    d: &Dataset,
    i: usize,
    s: usize,
    center_crop: bool,
    norm: &Normalization,
    layout: Layout,
    out: &mut [T],
    sc: &mut Scratch,
) -> Result<()> {
    let Some((path, shape)) = d.file(i) else {
        let shape = d.shape();
        let view = if center_crop {
            center_crop_view::<T>
        } else {
            eval_view::<T>
        };
        view(d.image(i), shape, s, norm, layout, out, sc);
        return Ok(());
    };
    let mut file = std::mem::take(&mut sc.file);
    let done = imagenet_eval_view_decoded(shape, s, norm, layout, out, sc, |side, buf| {
        let whole = (shape.height, shape.width);
        decode_file(&path, shape, Some((whole, side)), &mut file, buf)
    });
    sc.file = file;
    done
}

/// An iterator over batches built ahead on a background thread. Dropping it stops the
/// producer after the batch in progress.
pub struct Batches {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Batches {
    fn spawn(
        start: usize,
        end: usize,
        prefetch: usize,
        make: impl Fn(usize) -> Result<Batch> + Send + 'static,
    ) -> Batches {
        // The channel holds `prefetch` batches; one more may be in progress.
        let (tx, rx) = sync_channel(prefetch.max(1) - 1);
        let handle = std::thread::Builder::new()
            .name("kinfonce-data-producer".into())
            .spawn(move || {
                for b in start..end {
                    let batch = make(b);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return; // the consumer is gone, or told of the error
                    }
                }
            })
            .expect("spawning the loader thread");
        Batches {
            rx: Some(rx),
            handle: Some(handle),
            remaining: end.saturating_sub(start),
        }
    }
}

/// Batches in order; an error (a file that does not decode) is the last item.
impl Iterator for Batches {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        match self.rx.as_ref()?.recv() {
            Ok(Ok(b)) => {
                self.remaining -= 1;
                Some(Ok(b))
            }
            Ok(Err(e)) => {
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                // The producer ended early: it panicked. Surface its panic here.
                self.remaining = 0;
                if let Some(h) = self.handle.take() {
                    if let Err(panic) = h.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                None
            }
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Augmented multi-view batches for contrastive pretraining.
///
/// ```no_run
/// use std::sync::Arc;
/// use kinfonce_data::{AugmentConfig, ContrastiveLoader, DataConfig, DataFormat, LoaderConfig};
/// let splits = DataConfig::new("data/cifar-10-binary.tar.gz").load_splits(false)?;
/// let aug = AugmentConfig::preset(DataFormat::Cifar10, 32);
/// let loader = ContrastiveLoader::new(Arc::new(splits.train), aug, LoaderConfig::default())?;
/// for batch in loader.epoch(0) {
///     let batch = batch?; // a streamed file that does not decode is an error
///     let x: &[f32] = batch.as_f32().unwrap(); // [512, 3, 32, 32]
/// #   let _ = x;
/// }
/// # Ok::<(), kinfonce_data::DataError>(())
/// ```
pub struct ContrastiveLoader {
    dataset: Arc<Dataset>,
    augment: Arc<AugmentConfig>,
    /// The pipeline of one more view per image, after the `views` of `augment`.
    extra_view: Option<Arc<AugmentConfig>>,
    cfg: LoaderConfig,
    pool: Arc<rayon::ThreadPool>,
}

impl ContrastiveLoader {
    /// Checks the settings against the data set and starts the worker pool.
    pub fn new(dataset: Arc<Dataset>, augment: AugmentConfig, cfg: LoaderConfig) -> Result<Self> {
        augment.validate(dataset.channels())?;
        if cfg.batch_size == 0 || cfg.views == 0 {
            return Err(DataError::param(
                "batch_size/views",
                format!("{}/{}", cfg.batch_size, cfg.views),
                "at least 1",
            ));
        }
        let (shard, shards) = cfg.shard;
        if shards == 0 || shard >= shards || !cfg.batch_size.is_multiple_of(shards) {
            return Err(DataError::param(
                "shard",
                format!("{shard} of {shards} (batch {})", cfg.batch_size),
                "an index below a count that divides the batch",
            ));
        }
        if cfg.drop_last && dataset.len() < cfg.batch_size {
            return Err(DataError::param(
                "batch_size",
                cfg.batch_size,
                format!(
                    "at most the {} training images (the last incomplete batch is dropped)",
                    dataset.len()
                ),
            ));
        }
        Ok(ContrastiveLoader {
            pool: build_pool(cfg.threads)?,
            dataset,
            augment: Arc::new(augment),
            extra_view: None,
            cfg,
        })
    }

    /// Adds one more view of every image, drawn with its own pipeline (view index `views` of
    /// its [`ViewKey`]): pl_bolts' online-evaluation view beside the SimCLR pair. Batches then
    /// hold `(views + 1) * B` rows, the extra view last. Its side must be the other views'.
    pub fn with_extra_view(mut self, augment: AugmentConfig) -> Result<Self> {
        augment.validate(self.dataset.channels())?;
        if augment.size != self.augment.size {
            return Err(DataError::param(
                "extra view size",
                augment.size,
                format!("the other views' side, {}", self.augment.size),
            ));
        }
        self.extra_view = Some(Arc::new(augment));
        Ok(self)
    }

    /// The data set.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }
    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }
    /// The augmentation settings.
    pub fn augment(&self) -> &AugmentConfig {
        &self.augment
    }

    /// Batches in one epoch: `len / B`, rounded down with `drop_last`, else up.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.dataset.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The order of the data set's indices in `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.cfg.shuffle {
            CounterRng::new(&[SHUFFLE_STREAM, self.cfg.seed, epoch]).shuffle(&mut order);
        }
        order
    }

    /// All batches of `epoch`, prefetched.
    pub fn epoch(&self, epoch: u64) -> Batches {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `start` on (exact resume mid-epoch).
    pub fn epoch_from(&self, epoch: u64, start: usize) -> Batches {
        let order = Arc::new(self.epoch_order(epoch));
        let this = self.shallow_clone();
        let end = self.batches_per_epoch();
        Batches::spawn(start.min(end), end, self.cfg.prefetch, move |b| {
            this.batch_of(&order, epoch, b)
        })
    }

    /// Batch `batch` of `epoch`, built now on the worker pool (no prefetching).
    pub fn batch(&self, epoch: u64, batch: usize) -> Result<Batch> {
        self.batch_of(&self.epoch_order(epoch), epoch, batch)
    }

    fn shallow_clone(&self) -> ContrastiveLoader {
        ContrastiveLoader {
            dataset: Arc::clone(&self.dataset),
            augment: Arc::clone(&self.augment),
            extra_view: self.extra_view.clone(),
            cfg: self.cfg.clone(),
            pool: Arc::clone(&self.pool),
        }
    }

    fn batch_of(&self, order: &[usize], epoch: u64, batch: usize) -> Result<Batch> {
        let b = self.cfg.batch_size;
        let global = &order[batch * b..((batch + 1) * b).min(order.len())];
        // This shard's slice of the global batch (the whole batch unsharded).
        let (shard, shards) = self.cfg.shard;
        let per = global.len().div_ceil(shards);
        let indices: Vec<usize> =
            global[(shard * per).min(global.len())..((shard + 1) * per).min(global.len())].to_vec();
        let n = indices.len();
        let d = &*self.dataset;
        let (c, s) = (d.channels(), self.augment.size);
        let (seed, layout, views) = (self.cfg.seed, self.cfg.layout, self.cfg.views);
        let extra = self.extra_view.as_deref();
        // Rows are view-major: view `row / n` of image `row % n`.
        let aug_of = |row: usize| match extra {
            Some(e) if row / n >= views => e,
            _ => &*self.augment,
        };
        let key = |row: usize| ViewKey {
            seed,
            epoch,
            index: indices[row % n] as u64,
            view: (row / n) as u64,
        };
        let f32_write = |row: usize, out: &mut [f32], sc: &mut Scratch| {
            write_view(d, indices[row % n], aug_of(row), key(row), layout, out, sc)
        };
        let bf16_write = |row: usize, out: &mut [half::bf16], sc: &mut Scratch| {
            write_view(d, indices[row % n], aug_of(row), key(row), layout, out, sc)
        };
        let rows = (views + usize::from(extra.is_some())) * n;
        let data = fill_any(
            &self.pool,
            self.cfg.dtype,
            rows,
            c * s * s,
            &f32_write,
            &bf16_write,
        )?;
        Ok(Batch {
            data,
            shape: [rows, c, s, s],
            layout,
            labels: indices.iter().map(|&i| d.labels()[i] as i64).collect(),
            indices,
            epoch,
            batch,
        })
    }
}

/// Settings of [`EvalLoader`].
#[derive(Clone, Debug, PartialEq)]
pub struct EvalConfig {
    /// Images per batch. Default 256.
    pub batch_size: usize,
    /// Worker threads. Default 2.
    pub threads: usize,
    /// Finished batches that may wait. Default 2.
    pub prefetch: usize,
    /// Output side; `None` (default) keeps the images' own size (they must be square then
    /// or are resized to their height).
    pub size: Option<usize>,
    /// Resize to `int(1.1 size)` then centre-crop to `size` ([`center_crop_view`], the official
    /// evaluation transform) instead of resizing to `size`. Default false. A streamed set
    /// always takes ImageNet's view, `Resize(size * 8 / 7)` then `CenterCrop(size)`.
    pub center_crop: bool,
    /// Normalisation (use the pretraining one). Default CIFAR-10.
    pub normalization: Normalization,
    /// Buffer order. Default NCHW.
    pub layout: Layout,
    /// Element type. Default f32.
    pub dtype: Dtype,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            batch_size: 256,
            threads: 2,
            prefetch: 2,
            size: None,
            center_crop: false,
            normalization: Normalization::cifar10(),
            layout: Layout::Nchw,
            dtype: Dtype::F32,
        }
    }
}

/// Every image once, in order, without augmentation (batches of one view; the last may be
/// smaller).
pub struct EvalLoader {
    dataset: Arc<Dataset>,
    cfg: EvalConfig,
    pool: Arc<rayon::ThreadPool>,
}

impl EvalLoader {
    /// Checks the settings and starts the worker pool.
    pub fn new(dataset: Arc<Dataset>, cfg: EvalConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(DataError::param("batch_size", 0, "at least 1"));
        }
        if cfg.size == Some(0) {
            return Err(DataError::param("size", 0, "a positive side"));
        }
        let probe = AugmentConfig {
            normalization: cfg.normalization.clone(),
            ..AugmentConfig::default()
        };
        probe.validate(dataset.channels())?;
        Ok(EvalLoader {
            pool: build_pool(cfg.threads)?,
            dataset,
            cfg,
        })
    }

    /// Number of batches (the last may be partial).
    pub fn num_batches(&self) -> usize {
        self.dataset.len().div_ceil(self.cfg.batch_size)
    }

    /// All batches, in data-set order, prefetched.
    pub fn batches(&self) -> Batches {
        let this = EvalLoader {
            dataset: Arc::clone(&self.dataset),
            cfg: self.cfg.clone(),
            pool: Arc::clone(&self.pool),
        };
        Batches::spawn(0, self.num_batches(), self.cfg.prefetch, move |b| {
            this.batch(b)
        })
    }

    /// Batch `batch`, built now.
    pub fn batch(&self, batch: usize) -> Result<Batch> {
        let d = &*self.dataset;
        let b = self.cfg.batch_size;
        let indices: Vec<usize> = (batch * b..((batch + 1) * b).min(d.len())).collect();
        let c = d.channels();
        let s = self.cfg.size.unwrap_or(d.height());
        let (norm, layout) = (&self.cfg.normalization, self.cfg.layout);
        let center_crop = self.cfg.center_crop;
        let f32_write = |row: usize, out: &mut [f32], sc: &mut Scratch| {
            write_eval_view(d, indices[row], s, center_crop, norm, layout, out, sc)
        };
        let bf16_write = |row: usize, out: &mut [half::bf16], sc: &mut Scratch| {
            write_eval_view(d, indices[row], s, center_crop, norm, layout, out, sc)
        };
        let data = fill_any(
            &self.pool,
            self.cfg.dtype,
            indices.len(),
            c * s * s,
            &f32_write,
            &bf16_write,
        )?;
        Ok(Batch {
            data,
            shape: [indices.len(), c, s, s],
            layout,
            labels: indices.iter().map(|&i| d.labels()[i] as i64).collect(),
            indices,
            epoch: 0,
            batch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{ImageShape, Normalization};

    fn toy(n: usize, side: usize) -> Arc<Dataset> {
        let pixels: Vec<u8> = (0..n * side * side * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let labels = (0..n as u32).map(|i| i % 3).collect();
        Arc::new(
            Dataset::new(
                pixels,
                labels,
                side,
                side,
                3,
                vec!["a".into(), "b".into(), "c".into()],
            )
            .unwrap(),
        )
    }

    fn cfg(batch: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size: batch,
            ..Default::default()
        }
    }

    #[test]
    fn epoch_covers_each_image_once_with_drop_last() {
        let loader = ContrastiveLoader::new(
            toy(10, 8),
            AugmentConfig::simclr(8, 0.5, false, Normalization::cifar10()),
            cfg(4),
        )
        .unwrap();
        assert_eq!(loader.batches_per_epoch(), 2);
        let batches: Vec<Batch> = loader.epoch(3).map(Result::unwrap).collect();
        assert_eq!(batches.len(), 2);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(seen.len(), 8);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8);
        let b = &batches[0];
        assert_eq!(b.shape, [8, 3, 8, 8]);
        assert_eq!(b.as_f32().unwrap().len(), 8 * 3 * 64);
        assert_eq!(
            b.labels,
            b.indices
                .iter()
                .map(|&i| (i % 3) as i64)
                .collect::<Vec<_>>()
        );
        assert_eq!(b.row_labels().len(), 8);
        // Different epochs shuffle differently; the same epoch repeats exactly.
        assert_ne!(loader.epoch_order(3), loader.epoch_order(4));
        let again: Vec<Batch> = loader.epoch(3).map(Result::unwrap).collect();
        assert_eq!(again, batches);
    }

    #[test]
    fn rows_are_the_views_of_the_listed_images() {
        let aug = AugmentConfig::simclr(8, 0.5, false, Normalization::cifar10());
        let mut c = cfg(3);
        c.layout = Layout::Nhwc;
        let data = toy(6, 8);
        let loader = ContrastiveLoader::new(data.clone(), aug.clone(), c).unwrap();
        let b = loader.batch(1, 1).unwrap();
        let buf = b.as_f32().unwrap();
        let item = 3 * 64;
        let shape = ImageShape {
            height: 8,
            width: 8,
            channels: 3,
        };
        for row in 0..6 {
            let mut want = vec![0.0f32; item];
            let key = ViewKey {
                seed: 0,
                epoch: 1,
                index: b.indices[row % 3] as u64,
                view: (row / 3) as u64,
            };
            augment_view(
                &aug,
                data.image(b.indices[row % 3]),
                shape,
                key,
                Layout::Nhwc,
                &mut want,
                &mut Scratch::default(),
            );
            assert_eq!(&buf[row * item..(row + 1) * item], &want[..], "row {row}");
        }
        assert_eq!(b.memory_shape(), [6, 8, 8, 3]);
    }

    #[test]
    fn the_extra_view_follows_the_pair_with_its_own_pipeline() {
        let pair = AugmentConfig::simclr(8, 0.5, false, Normalization::cifar10());
        let mut crop_flip = pair.clone();
        crop_flip.jitter_p = 0.0;
        crop_flip.grayscale_p = 0.0;
        let data = toy(6, 8);
        let plain = ContrastiveLoader::new(data.clone(), pair.clone(), cfg(3)).unwrap();
        let three = ContrastiveLoader::new(data.clone(), pair, cfg(3))
            .unwrap()
            .with_extra_view(crop_flip.clone())
            .unwrap();
        let (p, t) = (plain.batch(2, 1).unwrap(), three.batch(2, 1).unwrap());
        assert_eq!(t.shape, [9, 3, 8, 8]);
        assert_eq!(t.row_labels().len(), 9);
        let item = 3 * 64;
        let (p, t) = (p.as_f32().unwrap(), t.as_f32().unwrap());
        // The pair is unchanged by the extra view.
        assert_eq!(&t[..6 * item], p);
        let shape = ImageShape {
            height: 8,
            width: 8,
            channels: 3,
        };
        let indices = three.batch(2, 1).unwrap().indices;
        for (k, &index) in indices.iter().enumerate() {
            let mut want = vec![0.0f32; item];
            let key = ViewKey {
                seed: 0,
                epoch: 2,
                index: index as u64,
                view: 2,
            };
            let params = augment_view(
                &crop_flip,
                data.image(index),
                shape,
                key,
                Layout::Nchw,
                &mut want,
                &mut Scratch::default(),
            );
            assert!(params.jitter.is_none() && !params.grayscale);
            let row = 6 + k;
            assert_eq!(&t[row * item..(row + 1) * item], &want[..], "row {row}");
        }
        let small = AugmentConfig::simclr(4, 0.5, false, Normalization::cifar10());
        let err = ContrastiveLoader::new(data, crop_flip, cfg(3))
            .unwrap()
            .with_extra_view(small)
            .err()
            .unwrap();
        assert!(err.to_string().contains("extra view size"), "{err}");
    }

    #[test]
    fn shards_are_disjoint_slices_whose_union_is_the_global_batch() {
        let aug = AugmentConfig::simclr(8, 0.5, false, Normalization::cifar10());
        let whole = ContrastiveLoader::new(toy(12, 8), aug.clone(), cfg(6)).unwrap();
        let global = whole.batch(1, 1).unwrap();
        let item = 3 * 64;
        let mut rows_of_shards = [Vec::new(), Vec::new()];
        let mut indices = Vec::new();
        for (k, rows) in rows_of_shards.iter_mut().enumerate() {
            let shard = ContrastiveLoader::new(
                toy(12, 8),
                aug.clone(),
                LoaderConfig {
                    shard: (k, 2),
                    ..cfg(6)
                },
            )
            .unwrap();
            assert_eq!(shard.batches_per_epoch(), whole.batches_per_epoch());
            let b = shard.batch(1, 1).unwrap();
            assert_eq!(b.images(), 3);
            indices.extend(b.indices.clone());
            *rows = b.as_f32().unwrap().to_vec();
        }
        assert_eq!(
            indices, global.indices,
            "slices in rank order make the global batch"
        );
        // View v of image i is the same whoever builds it.
        let g = global.as_f32().unwrap();
        for (k, rows) in rows_of_shards.iter().enumerate() {
            for view in 0..2 {
                let want = &g[(view * 6 + 3 * k) * item..(view * 6 + 3 * k + 3) * item];
                assert_eq!(&rows[view * 3 * item..(view + 1) * 3 * item], want);
            }
        }
        let err = ContrastiveLoader::new(
            toy(12, 8),
            aug,
            LoaderConfig {
                shard: (0, 4),
                ..cfg(6)
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("shard"), "{err}");
    }

    #[test]
    fn resume_mid_epoch_bf16_and_thread_count_do_not_change_batches() {
        let aug = AugmentConfig::simclr(8, 0.5, false, Normalization::cifar10());
        let one = ContrastiveLoader::new(
            toy(12, 8),
            aug.clone(),
            LoaderConfig {
                threads: 1,
                ..cfg(3)
            },
        )
        .unwrap();
        let three = ContrastiveLoader::new(
            toy(12, 8),
            aug.clone(),
            LoaderConfig {
                threads: 3,
                ..cfg(3)
            },
        )
        .unwrap();
        let full: Vec<Batch> = one.epoch(0).map(Result::unwrap).collect();
        let tail: Vec<Batch> = three.epoch_from(0, 2).map(Result::unwrap).collect();
        assert_eq!(&full[2..], &tail[..]);
        let bf = ContrastiveLoader::new(
            toy(12, 8),
            aug,
            LoaderConfig {
                dtype: Dtype::Bf16,
                ..cfg(3)
            },
        )
        .unwrap();
        let b = bf.batch(0, 0).unwrap();
        let f = full[0].as_f32().unwrap();
        for (x, y) in b.as_bf16().unwrap().iter().zip(f) {
            assert!((x.to_f32() - y).abs() <= y.abs() / 128.0 + 1e-6);
        }
    }

    #[test]
    fn dropping_mid_epoch_stops_the_producer_and_errors_are_named() {
        let loader = ContrastiveLoader::new(
            toy(40, 8),
            AugmentConfig::simclr(8, 0.5, false, Normalization::cifar10()),
            cfg(2),
        )
        .unwrap();
        let mut it = loader.epoch(0);
        assert_eq!(it.len(), 20);
        it.next().unwrap().unwrap();
        drop(it); // must not hang
        let err = ContrastiveLoader::new(
            toy(4, 8),
            AugmentConfig::simclr(8, 0.5, false, Normalization::cifar10()),
            cfg(8),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("batch_size"), "{err}");
    }

    #[test]
    fn eval_batches_are_in_order_and_plain() {
        let data = toy(5, 4);
        let norm = Normalization::identity();
        let loader = EvalLoader::new(
            data.clone(),
            EvalConfig {
                batch_size: 2,
                normalization: norm,
                ..Default::default()
            },
        )
        .unwrap();
        let batches: Vec<Batch> = loader.batches().map(Result::unwrap).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[2].indices, vec![4]);
        assert_eq!(batches[2].shape, [1, 3, 4, 4]);
        let x = batches[1].as_f32().unwrap();
        // Image 3, channel 1, pixel 5 (NCHW) is byte (5 * 3 + 1) of the image.
        let want = data.image(3)[5 * 3 + 1] as f32 / 255.0;
        assert!((x[48 + 16 + 5] - want).abs() < 1e-6);
    }
}
