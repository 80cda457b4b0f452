//! Output layouts and element types of batches.

/// Memory order of a batch buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[N, C, H, W]`, C-contiguous: `Tensor::from_slice(buf).view([n, c, h, w])`.
    #[default]
    Nchw,
    /// `[N, H, W, C]`, C-contiguous (channels-last): view it as `[n, h, w, c]` and
    /// `permute([0, 3, 1, 2])` to get an NCHW tensor with channels-last strides, no copy.
    Nhwc,
}

/// Element type of a batch buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// 32-bit float.
    #[default]
    F32,
    /// bfloat16 (`half::bf16`), rounded to nearest even from the f32 result.
    Bf16,
}

/// A type a batch can be written in.
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// Converts (rounding) from `f32`.
    fn from_f32(x: f32) -> Self;
}

impl Element for f32 {
    #[inline]
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Element for half::bf16 {
    #[inline]
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}
