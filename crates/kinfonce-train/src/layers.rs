//! The few layers a ResNet and its projection head need, written on raw tensors so that one
//! forward pass can run in bf16 while the weights stay f32 ("autocast by hand"): every layer
//! casts its weights to the input's dtype, and autograd carries the gradient back to the f32
//! master copy through the cast.

use serde::{Deserialize, Serialize};
use tch::nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// How convolution weights start (batch norm always starts at weight 1, bias 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitScheme {
    /// Kaiming normal, fan-out, ReLU gain (torchvision's ResNet).
    #[default]
    KaimingFanOut,
    /// PyTorch's `nn.Conv2d` default, Kaiming uniform with a = sqrt(5): uniform in
    /// +-1/sqrt(fan-in) (lightly's ResNet, which sets no initialisation of its own).
    TorchDefault,
}

/// `weight` as `kind`: a no-op (same tensor, same autograd node) when it already is.
pub(crate) fn cast(weight: &Tensor, kind: Kind) -> Tensor {
    if weight.kind() == kind {
        weight.shallow_clone()
    } else {
        weight.to_kind(kind)
    }
}

/// `x` in channels-last memory layout (NHWC strides, NCHW shape): libtorch picks the
/// channels-last convolution kernels from the strides alone.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// 2-D convolution without bias, as torchvision's ResNet uses it.
///
/// Weight initialisation: [`InitScheme`].
///
/// # Shapes
/// input `[N, C_in, H, W]`, weight `[C_out, C_in, k, k]`, output `[N, C_out, H', W']`.
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub stride: i64,
    pub padding: i64,
}

impl Conv2d {
    pub fn new(
        p: nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
        scheme: InitScheme,
    ) -> Self {
        let init = match scheme {
            InitScheme::KaimingFanOut => Init::Kaiming {
                dist: NormalOrUniform::Normal,
                fan: FanInOut::FanOut,
                non_linearity: NonLinearity::ReLU,
            },
            InitScheme::TorchDefault => {
                let bound = 1.0 / ((c_in * kernel * kernel) as f64).sqrt();
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                }
            }
        };
        let weight = p.var("weight", &[c_out, c_in, kernel, kernel], init);
        Conv2d {
            weight,
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &cast(&self.weight, x.kind()),
            None::<Tensor>,
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }
}

/// Batch normalisation (1-D or 2-D: the statistics run over every axis but the channel axis 1).
///
/// y = (x - mean) / sqrt(var + eps) * weight + bias; in training the batch statistics are used
/// and the running ones updated with momentum 0.1; eps = 1e-5 (PyTorch's defaults).
/// Weight and bias stay f32 whatever the input dtype (libtorch's mixed-type batch norm).
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm {
    pub fn new(p: nn::Path, channels: i64) -> Self {
        BatchNorm {
            weight: p.var("weight", &[channels], Init::Const(1.0)),
            bias: p.var("bias", &[channels], Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            // MoCo's split statistics inside `batch_norm::split` (the encoders' layers, never
            // over several ranks); elsewhere the statistics over every rank's rows inside
            // `batch_norm::synchronised`.
            if crate::batch_norm::is_split(x) {
                if let Some(y) = crate::batch_norm::split_forward(self, x) {
                    return y;
                }
            } else if let Some(y) = crate::batch_norm::synchronised_forward(self, x) {
                return y;
            }
        }
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            1e-5,
            true,
        )
    }
}

/// Fully connected layer y = x W^T + b, PyTorch's default initialisation
/// (weight and bias uniform in +-1/sqrt(in)).
///
/// # Shapes
/// input `[N, in]`, weight `[out, in]`, output `[N, out]`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, bias: bool) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = p.var("weight", &[d_out, d_in], init);
        let bias = bias.then(|| p.var("bias", &[d_out], init));
        Linear { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        x.linear(
            &cast(&self.weight, kind),
            self.bias.as_ref().map(|b| cast(b, kind)).as_ref(),
        )
    }
}
