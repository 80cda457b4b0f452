//! The one rule that turns a batch buffer of the image pipeline into the network's input, shared
//! by training and evaluation.

use kinfonce_data::Layout;
use tch::{Device, Kind, Tensor};

use crate::layers::to_channels_last;

/// Where and how the network reads its images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    pub device: Device,
    /// Channels-last strides (the layout the convolutions are converted to).
    pub channels_last: bool,
    /// bf16 compute (the cast happens after the copy to the device).
    pub bf16: bool,
}

impl InputSpec {
    /// `data` of `shape` = [n, c, h, w], written by the pipeline in `layout`, as an NCHW-shaped
    /// tensor on the device, in the network's layout and precision.
    pub fn tensor(&self, data: &[f32], shape: [usize; 4], layout: Layout) -> Tensor {
        let [n, c, h, w] = shape.map(|d| d as i64);
        let x = match layout {
            Layout::Nchw => host_tensor(data, self.device).view([n, c, h, w]),
            // NHWC buffers are already channels-last in memory: only the view changes.
            Layout::Nhwc => host_tensor(data, self.device)
                .view([n, h, w, c])
                .permute([0, 3, 1, 2]),
        };
        // From pinned memory the copy to a GPU is asynchronous: this thread goes on queueing the
        // step's kernels while the DMA engine moves the batch.
        let x = x.to_device_(self.device, Kind::Float, true, false);
        let x = if self.channels_last && layout == Layout::Nchw {
            to_channels_last(&x)
        } else {
            x
        };
        if self.bf16 {
            x.to_kind(Kind::BFloat16)
        } else {
            x
        }
    }
}

/// `data` as a CPU tensor: a plain copy for CPU training; for a GPU, one copy into page-locked
/// (pinned) memory, which the caching host allocator keeps alive until the transfer is done.
fn host_tensor(data: &[f32], device: Device) -> Tensor {
    if device == Device::Cpu {
        return Tensor::from_slice(data);
    }
    // SAFETY: the borrowed view of `data` lives only for the copy into pinned memory.
    let borrowed = unsafe {
        Tensor::from_blob(
            data.as_ptr().cast(),
            &[data.len() as i64],
            &[1],
            Kind::Float,
            Device::Cpu,
        )
    };
    borrowed.pin_memory(device)
}
