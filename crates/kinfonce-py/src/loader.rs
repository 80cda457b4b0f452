//! `kinfonce._native.TwoViewLoader`: `kinfonce-data`'s [`ContrastiveLoader`] for Python.
//!
//! The views are those the CLI's trainer draws (one pure function of seed, epoch, index and
//! view; the same presets by name). Batches are built ahead on the loader's own threads and
//! handed over without a copy: each is a [`BatchBuffer`] exposing the buffer protocol, which
//! `torch.frombuffer` wraps in place. Waiting for a batch releases the GIL, so the next
//! batches are augmented while Python runs the model step.

use std::ffi::{c_int, CStr};
use std::sync::{Arc, Mutex};

use kinfonce_data::{
    AugmentConfig, Batch, BatchData, Batches, ContrastiveLoader, DataConfig, DataError, Dtype,
    FolderOptions, Layout, LoaderConfig, Split, StreamMode,
};
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::guarded;

/// The Python function whose failures these are.
const FUNCTION: &str = "kinfonce.data.TwoViewLoader";

fn data_error(e: DataError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// The loader over the train split of one data set (the split the trainer pretrains on).
#[pyclass(frozen, module = "kinfonce._native")]
pub struct TwoViewLoader {
    loader: ContrastiveLoader,
    format: &'static str,
}

#[pymethods]
impl TwoViewLoader {
    #[new]
    #[pyo3(signature = (path, *, format, val_fraction, subset, image_size, resize, stream, augment,
                        size, batch_size, seed, shuffle, drop_last, threads, prefetch,
                        channels_last, bf16, rank, world_size))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        format: Option<String>,
        val_fraction: f64,
        subset: Option<usize>,
        image_size: Option<(usize, usize)>,
        resize: bool,
        stream: String,
        augment: String,
        size: Option<usize>,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
        drop_last: bool,
        threads: usize,
        prefetch: usize,
        channels_last: bool,
        bf16: bool,
        rank: usize,
        world_size: usize,
    ) -> PyResult<Self> {
        let mut data = DataConfig::new(path);
        data.format = format.map(|f| f.parse().map_err(data_error)).transpose()?;
        data.val_fraction = val_fraction;
        // The split and the views share the seed, as in `kinfonce pretrain --seed`.
        data.seed = seed;
        data.subset = subset;
        let stream = match stream.as_str() {
            "auto" => StreamMode::Auto,
            "always" => StreamMode::Always,
            "never" => StreamMode::Never,
            other => {
                return Err(PyValueError::new_err(format!(
                    "stream: expected auto, always or never, got {other:?}"
                )))
            }
        };
        data.folder = FolderOptions {
            image_size,
            resize,
            stream,
            // A streamed folder's views are `size` (default 224) pixels.
            view_size: size.unwrap_or(224).max(1),
        };
        let format = data.resolved_format().map_err(data_error)?;
        // Reading decodes every image (in parallel for folders): without the GIL.
        let train = guarded(py, FUNCTION, || data.load(Split::Train))?.map_err(data_error)?;
        if size == Some(0) {
            return Err(PyValueError::new_err(
                "size: expected a positive side, got 0",
            ));
        }
        let size = size.unwrap_or(train.height().max(train.width()));
        let augment = AugmentConfig::named(&augment, format, size).map_err(data_error)?;
        let cfg = LoaderConfig {
            batch_size,
            views: 2,
            threads,
            prefetch,
            shuffle,
            drop_last,
            seed,
            layout: if channels_last {
                Layout::Nhwc
            } else {
                Layout::Nchw
            },
            dtype: if bf16 { Dtype::Bf16 } else { Dtype::F32 },
            shard: (rank, world_size),
        };
        let loader = ContrastiveLoader::new(Arc::new(train), augment, cfg).map_err(data_error)?;
        Ok(Self {
            loader,
            format: format.name(),
        })
    }

    /// Batches per epoch.
    fn __len__(&self) -> usize {
        self.loader.batches_per_epoch()
    }

    /// The batches of `epoch` from batch `start` on, built ahead on the loader's threads.
    #[pyo3(signature = (epoch, start=0))]
    fn epoch(&self, epoch: u64, start: usize) -> Epoch {
        Epoch {
            batches: Mutex::new(self.loader.epoch_from(epoch, start)),
        }
    }

    /// This rank's image indices (in the train split) of batch `batch` of `epoch`.
    fn batch_indices(&self, epoch: u64, batch: usize) -> PyResult<Vec<usize>> {
        let batches = self.loader.batches_per_epoch();
        if batch >= batches {
            return Err(PyValueError::new_err(format!(
                "batch: {batch} is out of range: an epoch has {batches} batches"
            )));
        }
        let cfg = self.loader.config();
        let order = self.loader.epoch_order(epoch);
        let global =
            &order[batch * cfg.batch_size..((batch + 1) * cfg.batch_size).min(order.len())];
        let (rank, ranks) = cfg.shard;
        let per = global.len().div_ceil(ranks);
        Ok(global[(rank * per).min(global.len())..((rank + 1) * per).min(global.len())].to_vec())
    }

    /// Images in the train split.
    #[getter]
    fn images(&self) -> usize {
        self.loader.dataset().len()
    }

    /// Classes of the data set (1 for unlabelled images).
    #[getter]
    fn num_classes(&self) -> usize {
        self.loader.dataset().num_classes()
    }

    /// Channels of the images (1 for MNIST, 3 otherwise).
    #[getter]
    fn channels(&self) -> usize {
        self.loader.dataset().channels()
    }

    /// Side of the views in pixels.
    #[getter]
    fn size(&self) -> usize {
        self.loader.augment().size
    }

    /// The format that was read (`cifar10`, `mnist`, ...).
    #[getter]
    fn format(&self) -> &'static str {
        self.format
    }
}

/// The box `(top, left, height, width)` of the image file `path` resampled to `size x size` as
/// a streamed view takes it (decoded at the largest DCT scaling that still covers the box):
/// `(pixels, denominator)`, the pixels `[size, size, 3]` RGB f32 in [0, 1] as a buffer, the
/// denominator 1, 2, 4 or 8.
#[pyfunction]
#[pyo3(signature = (path, top, left, height, width, size))]
pub fn crop_at_decode(
    py: Python<'_>,
    path: std::path::PathBuf,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
    size: usize,
) -> PyResult<(BatchBuffer, usize)> {
    let crop = kinfonce_data::Crop {
        top,
        left,
        height,
        width,
    };
    let (pixels, d) = guarded(py, "kinfonce.data.crop_at_decode", || {
        kinfonce_data::crop_at_decode(&path, crop, size)
    })?
    .map_err(data_error)?;
    Ok((BatchBuffer::new(BatchData::F32(pixels)), d))
}

/// A batch for Python: its pixels, their shape in memory, the labels.
type PyBatch = (BatchBuffer, [usize; 4], Vec<i64>);

/// The batches of one epoch; dropping it stops the loader's producer.
#[pyclass(frozen, module = "kinfonce._native")]
pub struct Epoch {
    batches: Mutex<Batches>,
}

#[pymethods]
impl Epoch {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// `(buffer, memory_shape, labels)`, or the end of the epoch. `buffer` holds the
    /// `[2B, ...]` views in `memory_shape`; `labels` the B labels.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyBatch>> {
        // The wait (the producer is usually ahead) and any panic of the producer, re-raised
        // by `Batches`, happen without the GIL.
        let next: Option<Result<Batch, DataError>> = guarded(py, FUNCTION, || {
            self.batches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next()
        })?;
        next.transpose().map_err(data_error).map(|next| {
            next.map(|batch| {
                let shape = batch.memory_shape();
                (BatchBuffer::new(batch.data), shape, batch.labels)
            })
        })
    }

    /// Batches left in the epoch.
    fn __len__(&self) -> usize {
        self.batches.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One batch's pixels, owned here and lent to Python through the buffer protocol (1-D, f32,
/// or bf16 as 16-bit unsigned integers). `torch.frombuffer` keeps this object alive for as
/// long as the tensor lives.
#[pyclass(frozen, module = "kinfonce._native")]
pub struct BatchBuffer {
    data: BatchData,
    /// The exported shape: the element count (the protocol points into this object).
    len: [ffi::Py_ssize_t; 1],
}

impl BatchBuffer {
    fn new(data: BatchData) -> Self {
        let len = match &data {
            BatchData::F32(v) => v.len(),
            BatchData::Bf16(v) => v.len(),
        };
        BatchBuffer {
            data,
            len: [len as ffi::Py_ssize_t],
        }
    }
}

#[pymethods]
impl BatchBuffer {
    /// "float32" or "bfloat16".
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.data {
            BatchData::F32(_) => "float32",
            BatchData::Bf16(_) => "bfloat16",
        }
    }

    fn __len__(&self) -> usize {
        self.len[0] as usize
    }

    /// Exports the buffer. Writable, since PyTorch expects to own its tensors' memory; Rust
    /// never reads the pixels again once they are handed over.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        let this = slf.get();
        let (ptr, itemsize, format): (*const u8, usize, &'static CStr) = match &this.data {
            BatchData::F32(v) => (v.as_ptr().cast(), 4, c"f"),
            BatchData::Bf16(v) => (v.as_ptr().cast(), 2, c"H"),
        };
        // SAFETY: `view` is the caller's Py_buffer to fill (checked non-null); every pointer
        // stored in it points into `slf`, which the buffer keeps alive through `obj` (a new
        // reference) until the consumer releases it.
        unsafe {
            (*view).buf = ptr as *mut std::ffi::c_void;
            (*view).len = (this.len[0] as usize * itemsize) as ffi::Py_ssize_t;
            (*view).readonly = 0;
            (*view).itemsize = itemsize as ffi::Py_ssize_t;
            (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
                format.as_ptr() as *mut _
            } else {
                std::ptr::null_mut()
            };
            (*view).ndim = 1;
            (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
                this.len.as_ptr() as *mut _
            } else {
                std::ptr::null_mut()
            };
            (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
                &mut (*view).itemsize
            } else {
                std::ptr::null_mut()
            };
            (*view).suboffsets = std::ptr::null_mut();
            (*view).internal = std::ptr::null_mut();
            (*view).obj = slf.into_any().into_ptr();
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
