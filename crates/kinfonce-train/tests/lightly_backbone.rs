//! The MoCo presets' encoder is the official MoCo backbone: `moco/moco.py` builds
//! `nn.Sequential(*list(ResNetGenerator("resnet-18", ...).children())[:-1],
//! nn.AdaptiveAvgPool2d(1))` of lightly's ResNet. The Python below writes lightly's ResNet out
//! in plain PyTorch (its stem ReLU lives in `forward`, so `children()` drops it), loads the
//! weights of a kinfonce encoder built with the preset's settings, and both networks' forwards
//! must agree, with batch statistics (train mode) and with running ones (eval mode).

use kinfonce_train::config::run_preset;
use kinfonce_train::resnet::{ResNetConfig, Stem};
use kinfonce_train::tch::{nn, Device, Kind, Tensor};
use kinfonce_train::TrainConfig;
use std::path::Path;
use std::process::Command;

/// lightly's ResNet-18 (BasicBlock, `shortcut` = conv 1x1 + batch norm when the shape changes,
/// a 3x3 stride-1 stem) as the official code cuts it, compared with kinfonce's outputs.
const LIGHTLY_REFERENCE: &str = r#"
import sys, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import load_file

class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))

class ResNet(nn.Module):
    def __init__(self, base, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        cin, stages = base, []
        for i in range(4):
            planes = base << i
            blocks = [BasicBlock(cin, planes, 1 if i == 0 else 2), BasicBlock(planes, planes, 1)]
            stages.append(nn.Sequential(*blocks))
            cin = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(8 * base, classes)
    def forward(self, x):  # never called by the official backbone
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))

weights = load_file(sys.argv[1])
base = weights["conv1.weight"].shape[0]
resnet = ResNet(base)
backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1))
state = {k.replace("downsample", "shortcut"): v for k, v in weights.items()
         if k not in ("x", "train", "eval")}
missing, unexpected = resnet.load_state_dict(state, strict=False)
assert missing == ["linear.weight", "linear.bias"] and not unexpected, (missing, unexpected)
x = weights["x"]
with torch.no_grad():
    backbone.eval()
    err_eval = (backbone(x).flatten(1) - weights["eval"]).abs().max().item()
    backbone.train()
    err_train = (backbone(x).flatten(1) - weights["train"]).abs().max().item()
print(err_train, err_eval)
"#;

#[test]
fn the_moco_presets_encoder_is_lightlys_resnet_as_the_official_code_cuts_it() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    // The preset's network settings, as `kinfonce pretrain --run-preset moco-sum` resolves them.
    let preset: TrainConfig = toml::Value::Table(run_preset("moco-sum").unwrap())
        .try_into()
        .unwrap();
    let m = &preset.model;
    assert_eq!(m.stem, kinfonce_train::config::StemChoice::Cifar);
    tch_seed();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ResNetConfig {
        width: 8,
        stem: Stem::Cifar,
        stem_relu: m.stem_relu,
        init: m.init,
        ..Default::default()
    }
    .init(vs.root());
    // Running statistics away from 0 and 1, so that eval mode tests them too.
    kinfonce_train::tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("running_mean") {
                t.copy_(&(Tensor::randn_like(&t) * 0.1));
            } else if name.ends_with("running_var") {
                t.copy_(&(Tensor::rand_like(&t) + 0.5));
            }
        }
    });
    let x = Tensor::randn([6, 3, 16, 16], (Kind::Float, Device::Cpu));
    let eval = net.forward(&x, false);
    // The training forward updates the running statistics: run it after the eval one, and
    // write the weights as they were (the copies below were taken before it).
    let mut tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.detach().copy()))
        .collect();
    let train = kinfonce_train::tch::no_grad(|| net.forward(&x, true));
    tensors.extend([
        ("x".to_string(), x),
        ("eval".to_string(), eval),
        ("train".to_string(), train),
    ]);
    let dir = std::env::temp_dir().join(format!("kinfonce-lightly-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("net.safetensors");
    Tensor::write_safetensors(&tensors, &file).unwrap();
    let out = Command::new(&python)
        .args(["-c", LIGHTLY_REFERENCE])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/env.sh creates it)", python.display()));
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let errs: Vec<f64> = stdout
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        errs.len() == 2 && errs.iter().all(|&e| e < 1e-5),
        "max |kinfonce - lightly| (train, eval): {errs:?}"
    );
}

/// With the ReLU after the stem (kinfonce's SimCLR default) the forward differs: the test
/// above can tell the two networks apart.
#[test]
fn the_stem_relu_changes_the_forward() {
    let forward = |stem_relu| {
        tch_seed();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNetConfig {
            width: 4,
            stem_relu,
            ..Default::default()
        }
        .init(vs.root());
        let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
        net.forward(&x, true)
    };
    let diff = f64::try_from((forward(true) - forward(false)).abs().max()).unwrap();
    assert!(diff > 1e-3, "{diff}");
}

fn tch_seed() {
    kinfonce_train::tch::manual_seed(7);
}
