"""PyTorch reference for end-to-end SimCLR / Kernel-InfoNCE training throughput (CPU or GPU).

The training step as the official Kernel-InfoNCE code runs it on CIFAR-10 (its
``simclr_module.py`` and ``transforms.py``, which follow the SimCLR recipe of PyTorch Lightning
Bolts), timed end to end so the project's own trainer can be measured against it:

  data        the CIFAR-10 binary archive (the five ``data_batch_*.bin`` files: records of one
              label byte and a 32x32 image as three 1024-byte colour planes), decoded once into
              memory and shuffled by a DataLoader (drop_last) with --workers worker processes;
  views       each image becomes two views, each drawn independently in the workers with the
              torchvision PIL transforms of the official CIFAR-10 setting:
                RandomResizedCrop(32) -> RandomHorizontalFlip(0.5)
                -> RandomApply([ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s)], p=0.8), s = 0.5
                -> RandomGrayscale(0.2) -> ToTensor -> Normalize(CIFAR-10 mean, std)
              (no Gaussian blur for CIFAR; --no-aug keeps only ToTensor + Normalize), and a
              third view for the online evaluator, RandomResizedCrop(32) -> flip -> ToTensor
              -> Normalize (the official ``online_transform``; --no-online-probe leaves it out);
  encoder     ResNet (18 by default) with the CIFAR stem: a 3x3 stride-1 first convolution and no
              max-pool; the four stages have width, 2 width, 4 width, 8 width channels (the
              standard network is width 64), followed by global average pooling;
  head        Linear(features, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, 128, no bias),
              then L2 normalisation;
  forward     each view's batch goes through the encoder and the head on its own, so
              BatchNorm's statistics are per view (the official ``shared_step``; --joint-views
              forwards the 2B views as one batch instead, as google-research/simclr);
  loss        the official Kernel-InfoNCE formula (see torch_kernel_infonce.py beside this file):
                L = -1/(2B) sum_a log( K(u_a, u_a+) / (max(sum_{b != a} K(u_a, u_b), eps) + eps) ),
                K(x, y) = exp(-||x - y||_2 ** gamma / tau), eps = 1e-6;
  optimiser   Adam, learning rate 1e-3, weight decay 1e-6 (the official defaults; the learning
              rate schedule costs nothing and is left out);
  online      after the step, pl_bolts' SSLOnlineEvaluator: the third view through the encoder
              in eval mode without gradient, a linear layer (dropout 0) trained by Adam 1e-4.

The official code runs f32 NCHW on CPU (its fp16 mixed precision is for GPUs). --channels-last
and --bf16 (autocast of the encoder and head; the loss stays f32) are the best a PyTorch user
could do by hand. --device cuda runs the model on the GPU, fed as a PyTorch user would: the
DataLoader pins its batches (pin_memory) and each is copied with non_blocking=True; the step
is timed after a torch.cuda.synchronize().

A step is timed from the end of the previous step to the end of this one, so the wait for the
loader's next batch is included. After --warmup untimed steps, --steps steps are timed and the
median is reported. Prints one JSON line on stdout:

    {"impl": "pytorch-reference", "torch": ..., "arch": ..., "width": ..., "batch": ...,
     "views_per_step": ..., "workers": ..., "threads": ..., "augment": ..., "channels_last": ...,
     "bf16": ..., "compile": ..., "step_ms_median": ..., "images_per_s": ..., "last_loss": ...}

where images_per_s counts augmented views (two per source image) per second of the median step.

Needs torch==2.11.0, torchvision==0.26.0, pillow, numpy. Example:

    python bench/reference/torch_simclr_pipeline.py --data cifar-10-binary.tar.gz \\
        --width 16 --batch 128 --steps 12 --warmup 2 --workers 2 --threads 2
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_kernel_infonce import kernel_infonce  # noqa: E402  (the loss, one definition)

CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte + three colour planes
# CIFAR-10 per-channel mean and standard deviation (the official cifar10_normalization).
CIFAR_MEAN = [x / 255.0 for x in (125.3, 123.0, 113.9)]
CIFAR_STD = [x / 255.0 for x in (63.0, 62.1, 66.7)]
# Colour-jitter strength s of the official CIFAR-10 setting.
JITTER_STRENGTH = 0.5
# Output width of the projection head (the official feat_dim).
PROJECTION_DIM = 128
# ResNet depths: block type and the number of blocks of each of the four stages.
ARCHS = {"resnet18": ("basic", [2, 2, 2, 2]),
         "resnet34": ("basic", [3, 4, 6, 3]),
         "resnet50": ("bottleneck", [3, 4, 6, 3])}


# --- data -------------------------------------------------------------------------------------

def load_cifar10_train(path):
    """The 50,000 training images of CIFAR-10 as uint8 [N, 32, 32, 3] (HWC, RGB) and their
    labels [N].

    path: a folder holding data_batch_1.bin .. data_batch_5.bin, or the
    cifar-10-binary.tar.gz archive that contains them.
    """
    if os.path.isdir(path):
        names = [os.path.join(path, f"data_batch_{i}.bin") for i in range(1, 6)]
        blobs = []
        for name in names:
            with open(name, "rb") as f:
                blobs.append(f.read())
    else:
        with tarfile.open(path) as archive:
            members = sorted((m for m in archive.getmembers()
                              if os.path.basename(m.name).startswith("data_batch_")),
                             key=lambda m: m.name)
            blobs = [archive.extractfile(m).read() for m in members]
    if not blobs:
        raise SystemExit(f"no CIFAR-10 data_batch_*.bin found in {path}")
    records = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    planes = records[:, 1:].reshape(-1, 3, 32, 32)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), records[:, 0].copy()


def view_transform(augment):
    """The per-view transform: the official CIFAR-10 SimCLR augmentation, or none."""
    normalise = [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    if not augment:
        return T.Compose(normalise)
    s = JITTER_STRENGTH
    return T.Compose([
        T.RandomResizedCrop(32),
        T.RandomHorizontalFlip(p=0.5),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        T.RandomGrayscale(p=0.2),
        *normalise,
    ])


def online_transform():
    """The online evaluator's view (the official ``online_transform``): crop and flip only."""
    return T.Compose([T.RandomResizedCrop(32), T.RandomHorizontalFlip(p=0.5), T.ToTensor(),
                      T.Normalize(CIFAR_MEAN, CIFAR_STD)])


class TwoViewCifar(torch.utils.data.Dataset):
    """Each item is two independently transformed views of one image (PIL, in the workers),
    its label, and the online evaluator's view when ``online`` is a transform."""

    def __init__(self, images, labels, transform, online=None):
        self.images = images
        self.labels = labels
        self.transform = transform
        self.online = online

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = Image.fromarray(self.images[index])
        views = (self.transform(image), self.transform(image))
        if self.online is not None:
            views += (self.online(image),)
        return views + (int(self.labels[index]),)


def endless(loader):
    """Batches of the loader, epoch after epoch."""
    while True:
        yield from loader


# --- model ------------------------------------------------------------------------------------

def conv3x3(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""
    expansion = 1

    def __init__(self, c_in, planes, stride):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1, self.bn1 = conv3x3(c_in, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, c_out), nn.BatchNorm2d(c_out)
        self.shortcut = shortcut(c_in, c_out, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        y += self.shortcut(x)
        return F.relu(y, inplace=True)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50)."""
    expansion = 4

    def __init__(self, c_in, planes, stride):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1, self.bn1 = conv1x1(c_in, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, c_out), nn.BatchNorm2d(c_out)
        self.shortcut = shortcut(c_in, c_out, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        y += self.shortcut(x)
        return F.relu(y, inplace=True)


def shortcut(c_in, c_out, stride):
    """Identity, or a strided 1x1 projection where the shape changes."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class CifarResNet(nn.Module):
    """ResNet with the CIFAR stem (3x3 stride-1 convolution, no max-pool), global-pooled features."""

    def __init__(self, arch, width):
        super().__init__()
        kind, depths = ARCHS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.stem = nn.Sequential(conv3x3(3, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages, c_in = [], width
        for i, depth in enumerate(depths):
            planes = width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(c_in, planes, stride=2 if i > 0 and j == 0 else 1))
                c_in = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.features = c_in
        for m in self.modules():  # the torchvision / Bolts initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class ProjectionHead(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear (no bias), then L2 normalisation."""

    def __init__(self, d_in, hidden, d_out=PROJECTION_DIM):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, d_out, bias=False))

    def forward(self, h):
        return F.normalize(self.mlp(h), dim=1)


# --- benchmark --------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(
        description="Time the official PyTorch SimCLR / Kernel-InfoNCE training step on CPU end "
        "to end (PIL augmentation in DataLoader workers, CIFAR ResNet, projection head, loss, "
        "Adam) and print the median step as one JSON line.")
    ap.add_argument("--data", required=True, metavar="DIR_OR_TAR",
                    help="CIFAR-10 binary version: a folder with data_batch_1.bin .. "
                    "data_batch_5.bin, or the cifar-10-binary.tar.gz archive")
    ap.add_argument("--arch", default="resnet18", choices=sorted(ARCHS),
                    help="encoder depth (default resnet18)")
    ap.add_argument("--width", type=int, default=64,
                    help="channels of the first stage; the stages have width, 2x, 4x, 8x "
                    "(64 is the standard network; default 64)")
    ap.add_argument("--batch", type=int, default=128,
                    help="source images per step; the step sees two views of each "
                    "(default 128, i.e. 256 views)")
    ap.add_argument("--steps", type=int, default=8,
                    help="timed steps; their median is reported (default 8)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed steps before the timed ones (default 2)")
    ap.add_argument("--workers", type=int, default=2,
                    help="DataLoader worker processes running the PIL augmentation; 0 runs it "
                    "in the training process (default 2)")
    ap.add_argument("--threads", type=int, default=2,
                    help="intra-op threads of torch in the training process "
                    "(torch.set_num_threads; default 2)")
    ap.add_argument("--gamma", type=float, default=1.0,
                    help="kernel exponent gamma in (0, 2] of the loss (default 1.0)")
    ap.add_argument("--tau", type=float, default=0.2,
                    help="temperature tau > 0 of the loss (default 0.2)")
    ap.add_argument("--hidden", type=int, default=2048,
                    help="hidden width of the projection head (default 2048)")
    ap.add_argument("--no-aug", action="store_true",
                    help="skip the augmentation (ToTensor + Normalize only), which leaves the "
                    "model step alone")
    ap.add_argument("--channels-last", action="store_true",
                    help="run the encoder in the channels-last (NHWC) memory format")
    ap.add_argument("--bf16", action="store_true",
                    help="CPU autocast to bfloat16 for the encoder and the head "
                    "(the loss stays float32)")
    ap.add_argument("--device", default="cpu",
                    help="cpu, cuda or cuda:N (the model, the loss and the probe)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the encoder and the head (inductor)")
    ap.add_argument("--joint-views", action="store_true",
                    help="forward both views as one batch (BatchNorm statistics over the pair) "
                    "instead of one forward per view")
    ap.add_argument("--no-online-probe", action="store_true",
                    help="leave out the online evaluator (its view, forward and update)")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch < 2 or args.width < 1:
        ap.error("need --steps >= 1, --warmup >= 0, --batch >= 2 and --width >= 1")
    return args


def main():
    args = parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    images, labels = load_cifar10_train(args.data)
    online = None if args.no_online_probe else online_transform()
    dataset = TwoViewCifar(images, labels, view_transform(augment=not args.no_aug), online)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                         drop_last=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0,
                                         pin_memory=on_gpu)

    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    encoder = CifarResNet(args.arch, args.width).to(device, memory_format=memory_format)
    head = ProjectionHead(encoder.features, args.hidden).to(device)
    optimiser = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()),
                                 lr=1e-3, weight_decay=1e-6)
    probe = nn.Linear(encoder.features, 10).to(device)
    probe_optimiser = torch.optim.Adam(probe.parameters(), lr=1e-4)
    if args.compile:
        encoder, head = torch.compile(encoder), torch.compile(head)

    def autocast():
        if args.bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    batches = endless(loader)
    times = []
    last = time.perf_counter()
    for step in range(args.warmup + args.steps):
        *views, y = next(batches)
        views = [v.to(device, non_blocking=True) for v in views]
        y = y.to(device, non_blocking=True)
        x1, x2 = (v.contiguous(memory_format=memory_format) for v in views[:2])
        with autocast():
            if args.joint_views:
                z = head(encoder(torch.cat([x1, x2]))).float()
                z1, z2 = z[:args.batch], z[args.batch:]
            else:
                z1, z2 = head(encoder(x1)).float(), head(encoder(x2)).float()
        loss = kernel_infonce(z1, z2, args.gamma, args.tau)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if online is not None:
            encoder.eval()
            with torch.no_grad(), autocast():
                h = encoder(views[2].contiguous(memory_format=memory_format)).float()
            encoder.train()
            probe_loss = F.cross_entropy(probe(h), y)
            probe_optimiser.zero_grad(set_to_none=True)
            probe_loss.backward()
            probe_optimiser.step()
        last_loss = loss.item()
        if on_gpu:
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        if step >= args.warmup:
            times.append(now - last)
        last = now

    median = statistics.median(times)
    print(json.dumps({
        "impl": "pytorch-reference",
        "torch": torch.__version__,
        "arch": args.arch,
        "width": args.width,
        "batch": args.batch,
        "views_per_step": 2 * args.batch,
        "workers": args.workers,
        "threads": args.threads,
        "augment": not args.no_aug,
        "channels_last": args.channels_last,
        "bf16": args.bf16,
        "compile": args.compile,
        "device": args.device,
        "bn_views": "joint" if args.joint_views else "separate",
        "online_probe": online is not None,
        "step_ms_median": round(median * 1000, 1),
        "images_per_s": round(2 * args.batch / median, 1),
        "last_loss": round(last_loss, 4),
    }))


if __name__ == "__main__":
    main()
