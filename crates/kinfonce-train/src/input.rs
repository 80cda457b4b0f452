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
            Layout::Nchw => Tensor::from_slice(data).view([n, c, h, w]),
            // NHWC buffers are already channels-last in memory: only the view changes.
            Layout::Nhwc => Tensor::from_slice(data)
                .view([n, h, w, c])
                .permute([0, 3, 1, 2]),
        };
        let x = x.to_device(self.device);
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
