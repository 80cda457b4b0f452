//! ResNet-18/34/50 encoders with torchvision's parameter names (`conv1.weight`,
//! `layer1.0.downsample.0.weight`, ...), so the safetensors keys load into
//! `torchvision.models.resnet*` (without `fc`) in PyTorch.

pub use crate::layers::InitScheme;
use crate::layers::{to_channels_last, BatchNorm, Conv2d};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// ResNet depth: 18 and 34 use BasicBlock (two 3x3 convs), 50 uses Bottleneck (1x1, 3x3, 1x1, x4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Resnet18,
    Resnet34,
    Resnet50,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet34 => "resnet34",
            Arch::Resnet50 => "resnet50",
        }
    }

    /// Blocks per stage.
    pub fn layers(self) -> [i64; 4] {
        match self {
            Arch::Resnet18 => [2, 2, 2, 2],
            Arch::Resnet34 | Arch::Resnet50 => [3, 4, 6, 3],
        }
    }

    /// Output channels of a block relative to its `planes` (1 for BasicBlock, 4 for Bottleneck).
    pub fn expansion(self) -> i64 {
        match self {
            Arch::Resnet50 => 4,
            _ => 1,
        }
    }

    /// Input channels of the narrowest 1x1 stride-2 convolution at `width`: the first shortcut
    /// of stage 2 (`layer2.0.downsample.0`), fed by stage 1's output.
    pub fn strided_shortcut_channels(self, width: i64) -> i64 {
        width * self.expansion()
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The first layers, as pl_bolts' `first_conv` and `maxpool1` choose them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3x3 conv, stride 1, no max-pool (CIFAR: `first_conv` and `maxpool1` off).
    Cifar,
    /// 7x7 conv, stride 2, then 3x3 max-pool, stride 2 (ImageNet; 64x64 and larger).
    Imagenet,
    /// 7x7 conv, stride 2, no max-pool (the official STL-10 stem: `first_conv` on, `maxpool1` off).
    Stl10,
}

impl Stem {
    /// How much smaller the first stage's maps are than the image.
    pub fn downsampling(self) -> usize {
        match self {
            Stem::Cifar => 1,
            Stem::Stl10 => 2,
            Stem::Imagenet => 4,
        }
    }
}

/// Configuration of a ResNet encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Depth. Default resnet18.
    pub arch: Arch,
    /// Base channel count of the first stage; stages have width, 2w, 4w, 8w (times the block
    /// expansion). Default 64 (the standard ResNet); 16 or 8 make small CPU runs.
    pub width: i64,
    /// Default Cifar.
    pub stem: Stem,
    /// Input channels. Default 3.
    pub in_channels: i64,
    /// A ReLU after the stem's batch norm. Default true (torchvision's); false: the official
    /// MoCo backbone (lightly's ResNet without its `forward`).
    #[serde(default = "yes")]
    pub stem_relu: bool,
    /// The convolutions' initialisation. Default Kaiming normal, fan-out.
    #[serde(default)]
    pub init: InitScheme,
}

fn yes() -> bool {
    true
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            arch: Arch::Resnet18,
            width: 64,
            stem: Stem::Cifar,
            in_channels: 3,
            stem_relu: true,
            init: InitScheme::KaimingFanOut,
        }
    }
}

impl ResNetConfig {
    /// Dimension of the pooled features: 8 * width * expansion (512 for resnet18 at width 64).
    pub fn feature_dim(&self) -> i64 {
        8 * self.width * self.arch.expansion()
    }

    /// Creates the parameters under `p` (use the var store's root for torchvision names).
    pub fn init(&self, p: nn::Path) -> ResNet {
        let (kernel, stride, padding) = match self.stem {
            Stem::Cifar => (3, 1, 1),
            Stem::Imagenet | Stem::Stl10 => (7, 2, 3),
        };
        let init = self.init;
        let conv1 = Conv2d::new(
            &p / "conv1",
            self.in_channels,
            self.width,
            kernel,
            stride,
            padding,
            init,
        );
        let bn1 = BatchNorm::new(&p / "bn1", self.width);
        let expansion = self.arch.expansion();
        let mut in_planes = self.width;
        let mut stages = Vec::new();
        for (stage, &blocks) in self.arch.layers().iter().enumerate() {
            let planes = self.width << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let sp = &p / format!("layer{}", stage + 1);
            let mut stage_blocks = Vec::new();
            for b in 0..blocks {
                let bp = &sp / b;
                let s = if b == 0 { stride } else { 1 };
                let downsample = (s != 1 || in_planes != planes * expansion).then(|| {
                    let dp = &bp / "downsample";
                    (
                        Conv2d::new(&dp / 0, in_planes, planes * expansion, 1, s, 0, init),
                        BatchNorm::new(&dp / 1, planes * expansion),
                    )
                });
                let block = match self.arch {
                    Arch::Resnet50 => Block::Bottleneck {
                        conv1: Conv2d::new(&bp / "conv1", in_planes, planes, 1, 1, 0, init),
                        bn1: BatchNorm::new(&bp / "bn1", planes),
                        conv2: Conv2d::new(&bp / "conv2", planes, planes, 3, s, 1, init),
                        bn2: BatchNorm::new(&bp / "bn2", planes),
                        conv3: Conv2d::new(&bp / "conv3", planes, planes * 4, 1, 1, 0, init),
                        bn3: BatchNorm::new(&bp / "bn3", planes * 4),
                        downsample,
                    },
                    _ => Block::Basic {
                        conv1: Conv2d::new(&bp / "conv1", in_planes, planes, 3, s, 1, init),
                        bn1: BatchNorm::new(&bp / "bn1", planes),
                        conv2: Conv2d::new(&bp / "conv2", planes, planes, 3, 1, 1, init),
                        bn2: BatchNorm::new(&bp / "bn2", planes),
                        downsample,
                    },
                };
                stage_blocks.push(block);
                in_planes = planes * expansion;
            }
            stages.push(stage_blocks);
        }
        ResNet {
            config: self.clone(),
            conv1,
            bn1,
            stages,
        }
    }
}

#[derive(Debug)]
enum Block {
    Basic {
        conv1: Conv2d,
        bn1: BatchNorm,
        conv2: Conv2d,
        bn2: BatchNorm,
        downsample: Option<(Conv2d, BatchNorm)>,
    },
    Bottleneck {
        conv1: Conv2d,
        bn1: BatchNorm,
        conv2: Conv2d,
        bn2: BatchNorm,
        conv3: Conv2d,
        bn3: BatchNorm,
        downsample: Option<(Conv2d, BatchNorm)>,
    },
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (mut out, downsample) = match self {
            Block::Basic {
                conv1,
                bn1,
                conv2,
                bn2,
                downsample,
            } => {
                let h = relu_in_place(bn1.forward(&conv1.forward(x), train));
                (bn2.forward(&conv2.forward(&h), train), downsample)
            }
            Block::Bottleneck {
                conv1,
                bn1,
                conv2,
                bn2,
                conv3,
                bn3,
                downsample,
            } => {
                let h = relu_in_place(bn1.forward(&conv1.forward(x), train));
                let h = relu_in_place(bn2.forward(&conv2.forward(&h), train));
                (bn3.forward(&conv3.forward(&h), train), downsample)
            }
        };
        let identity = match downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x), train),
            None => x.shallow_clone(),
        };
        out += identity;
        relu_in_place(out)
    }

    fn convs(&self) -> Vec<&Conv2d> {
        let mut v = match self {
            Block::Basic { conv1, conv2, .. } => vec![conv1, conv2],
            Block::Bottleneck {
                conv1,
                conv2,
                conv3,
                ..
            } => vec![conv1, conv2, conv3],
        };
        let (Block::Basic { downsample, .. } | Block::Bottleneck { downsample, .. }) = self;
        if let Some((conv, _)) = downsample {
            v.push(conv);
        }
        v
    }
}

/// ReLU written over a batch norm's output, as torchvision's `ReLU(inplace=True)`: batch norm's
/// backward needs its input, not its output, and at width 64 every fresh activation is tens of
/// MB more memory to allocate and walk through.
fn relu_in_place(mut t: Tensor) -> Tensor {
    let _ = t.relu_();
    t
}

/// A ResNet encoder without the classifier: image batch to pooled features.
#[derive(Debug)]
pub struct ResNet {
    pub config: ResNetConfig,
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    stages: Vec<Vec<Block>>,
}

impl ResNet {
    /// Pooled features.
    ///
    /// # Shapes
    /// input `[N, C, H, W]` (any memory layout, f32 or bf16), output `[N, feature_dim]` in the
    /// input's dtype.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = self.bn1.forward(&self.conv1.forward(x), train);
        if self.config.stem_relu {
            h = relu_in_place(h);
        }
        if self.config.stem == Stem::Imagenet {
            h = h.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for stage in &self.stages {
            for block in stage {
                h = block.forward(&h, train);
            }
        }
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// Rewrites every convolution weight in channels-last layout (same values; libtorch then
    /// runs the NHWC kernels when the input is channels-last too).
    pub fn convert_to_channels_last(&self) {
        tch::no_grad(|| {
            let mut convs = vec![&self.conv1];
            for block in self.stages.iter().flatten() {
                convs.extend(block.convs());
            }
            for conv in convs {
                let mut w = conv.weight.shallow_clone();
                w.set_data(&to_channels_last(&conv.weight));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn trainable_count(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    /// Parameter names of torchvision.models.resnet18() (named_parameters plus the BN buffers
    /// running_mean / running_var), `fc` removed. Generated with
    /// `[k for k in resnet18().state_dict() if 'num_batches' not in k and not k.startswith('fc')]`.
    fn torchvision_resnet18_names() -> Vec<String> {
        let mut names = vec!["conv1.weight".to_string()];
        let bn = |p: &str| -> Vec<String> {
            ["weight", "bias", "running_mean", "running_var"]
                .iter()
                .map(|s| format!("{p}.{s}"))
                .collect()
        };
        names.extend(bn("bn1"));
        for layer in 1..=4 {
            for block in 0..2 {
                let p = format!("layer{layer}.{block}");
                names.push(format!("{p}.conv1.weight"));
                names.extend(bn(&format!("{p}.bn1")));
                names.push(format!("{p}.conv2.weight"));
                names.extend(bn(&format!("{p}.bn2")));
                if layer > 1 && block == 0 {
                    names.push(format!("{p}.downsample.0.weight"));
                    names.extend(bn(&format!("{p}.downsample.1")));
                }
            }
        }
        names.sort();
        names
    }

    #[test]
    fn resnet18_names_are_torchvisions() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = ResNetConfig {
            width: 8,
            ..Default::default()
        }
        .init(vs.root());
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names, torchvision_resnet18_names());
        assert_eq!(names.len(), 1 + 4 + 4 * 2 * 10 + 3 * 5);
    }

    /// torchvision's totals minus the 1000-class fc (resnet18 11,689,512 - 513,000; resnet34
    /// 21,797,672 - 513,000; resnet50 25,557,032 - 2,049,000); the CIFAR stem's 3x3 conv1 has
    /// 64 * 3 * (49 - 9) = 7,680 fewer weights than the 7x7 one.
    #[test]
    fn parameter_counts_match_torchvision() {
        for (arch, expected) in [
            (Arch::Resnet18, 11_176_512),
            (Arch::Resnet34, 21_284_672),
            (Arch::Resnet50, 23_508_032),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = ResNetConfig {
                arch,
                stem: Stem::Imagenet,
                ..Default::default()
            }
            .init(vs.root());
            assert_eq!(trainable_count(&vs), expected, "{arch:?}");
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = ResNetConfig::default().init(vs.root());
        assert_eq!(trainable_count(&vs), 11_176_512 - 7_680);
    }

    #[test]
    fn output_shapes_per_stem_and_arch() {
        tch::manual_seed(0);
        for (arch, stem, size) in [
            (Arch::Resnet18, Stem::Cifar, 32),
            (Arch::Resnet34, Stem::Cifar, 16),
            (Arch::Resnet50, Stem::Imagenet, 64),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let config = ResNetConfig {
                arch,
                stem,
                width: 4,
                ..Default::default()
            };
            let net = config.init(vs.root());
            let x = Tensor::randn([3, 3, size, size], (Kind::Float, Device::Cpu));
            let y = net.forward(&x, true);
            assert_eq!(y.size(), vec![3, config.feature_dim()]);
            assert_eq!(
                config.feature_dim(),
                if arch == Arch::Resnet50 { 128 } else { 32 }
            );
        }
    }

    #[test]
    fn the_stl10_stem_is_the_imagenet_conv_without_max_pool() {
        let net = |stem| {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let config = ResNetConfig {
                stem,
                width: 4,
                ..Default::default()
            };
            (config.init(vs.root()), vs)
        };
        let ((stl, _a), (imagenet, _b)) = (net(Stem::Stl10), net(Stem::Imagenet));
        assert_eq!(stl.conv1.weight.size(), vec![4, 3, 7, 7]);
        assert_eq!(stl.conv1.stride, 2);
        let x = Tensor::randn([2, 3, 24, 24], (Kind::Float, Device::Cpu));
        // Through the stages by hand, from the stem's output without a max-pool.
        let mut h = stl.bn1.forward(&stl.conv1.forward(&x), false).relu();
        assert_eq!(h.size(), vec![2, 4, 12, 12]);
        for block in stl.stages.iter().flatten() {
            h = block.forward(&h, false);
        }
        let by_hand = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let (a, b) = (stl.forward(&x, false), imagenet.forward(&x, false));
        assert!(f64::try_from((&a - &by_hand).abs().max()).unwrap() < 1e-6);
        assert!(f64::try_from((&a - &b).abs().max()).unwrap() > 1e-4);
    }

    /// `torch-default` draws as `nn.Conv2d.reset_parameters` (Kaiming uniform, a = sqrt(5)):
    /// uniform in +-1/sqrt(fan-in), standard deviation bound/sqrt(3).
    #[test]
    fn torch_default_init_is_uniform_in_one_over_root_fan_in() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNetConfig {
            init: InitScheme::TorchDefault,
            ..Default::default()
        }
        .init(vs.root());
        let w = &net.stages[3][1].convs()[0].weight; // 512 x 512 x 3 x 3
        let bound = 1.0 / (512.0 * 9.0f64).sqrt();
        let max = f64::try_from(w.abs().max()).unwrap();
        let std = f64::try_from(w.std(true)).unwrap();
        assert!(max <= bound && max > 0.99 * bound, "{max} vs {bound}");
        assert!((std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.01, "{std}");
    }

    #[test]
    fn channels_last_and_bf16_agree_with_f32() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNetConfig {
            width: 8,
            ..Default::default()
        }
        .init(vs.root());
        let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        let reference = net.forward(&x, false);
        net.convert_to_channels_last();
        let cl = net.forward(&to_channels_last(&x), false);
        let err = f64::try_from((&cl - &reference).abs().max()).unwrap();
        assert!(err < 1e-4, "channels-last differs by {err}");
        let bf = net.forward(&to_channels_last(&x).to_kind(Kind::BFloat16), false);
        assert_eq!(bf.kind(), Kind::BFloat16);
        let scale = f64::try_from(reference.abs().max()).unwrap();
        let err = f64::try_from((bf.to_kind(Kind::Float) - &reference).abs().max()).unwrap();
        assert!(err < 0.05 * scale, "bf16 differs by {err} (scale {scale})");
        // Gradients reach the f32 master weights through the casts.
        net.forward(&x.to_kind(Kind::BFloat16), true)
            .to_kind(Kind::Float)
            .sum(Kind::Float)
            .backward();
        let g = net.conv1.weight.grad();
        assert_eq!(g.kind(), Kind::Float);
        assert!(f64::try_from(g.abs().sum(Kind::Float)).unwrap() > 0.0);
    }
}
