"""SimCLR in plain PyTorch, fed by kinfonce's Rust two-view loader and trained with a
Kernel-InfoNCE loss.

    python examples/simclr_torch.py --data cifar-10-binary.tar.gz --epochs 1
    python examples/simclr_torch.py --data stl10_binary --batch 64 --steps 20 --channels-last --bf16

The loop is what a PyTorch user writes; only two lines are kinfonce's:

    loader = kinfonce.data.TwoViewLoader(path, batch_size=B, seed=0)    # views, in Rust threads
    loss_fn = kinfonce.KernelInfoNCE("laplacian")                       # the paper's loss

Model: a torchvision ResNet (with --stem auto, the CIFAR stem, a 3x3 stride-1 first convolution
and no max-pool, for images under 64 pixels, else torchvision's own; the first convolution takes
the data's channels, 1 for MNIST), its
features through Linear -> BatchNorm1d -> ReLU -> Linear(128) and L2 normalisation. Both views
go through the network as one batch of 2B. Adam, learning rate 1e-3, weight decay 1e-6.

Under torchrun the loader gives each rank its slice of the global batch and the loss gathers
both views from every rank (``gather=True``), wrapped in DistributedDataParallel.

On few cores run it with OMP_WAIT_POLICY=PASSIVE in the environment (scripts/env.sh sets it):
libtorch's idle OpenMP threads otherwise spin against the loader's threads.

Every step prints (or, with --json, records) how long it waited for its batch: the share of the
step spent waiting for data, which torchvision transforms in DataLoader workers make large on a
few cores (bench/python_loader.py measures both side by side).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from typing import Iterable, Iterator, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import kinfonce
from kinfonce.data import TwoViewLoader

PROJECTION_DIM = 128


class SimCLR(nn.Module):
    """A torchvision ResNet encoder and the SimCLR projection head; returns unit vectors."""

    def __init__(self, arch: str, channels: int, image_side: int, stem: str = "auto", hidden: int = 2048) -> None:
        super().__init__()
        encoder = getattr(torchvision.models, arch)(weights=None)
        if stem == "cifar" or (stem == "auto" and image_side < 64):
            encoder.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
            encoder.maxpool = nn.Identity()
        elif channels != 3:
            encoder.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
        features = encoder.fc.in_features
        encoder.fc = nn.Identity()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                  nn.Linear(hidden, PROJECTION_DIM, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.encoder(x)), dim=1)


class Step:
    """One SimCLR step: both views through the model as one batch, the loss, Adam."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module, channels_last: bool, bf16: bool) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.bf16 = bf16
        self.optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)

    def __call__(self, view1: torch.Tensor, view2: torch.Tensor) -> float:
        x = torch.cat([view1, view2]).contiguous(memory_format=self.memory_format)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:
            z = self.model(x)
        z1, z2 = z.float().chunk(2)
        loss = self.loss_fn(z1, z2)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return loss.item()


def train(batches: Iterable[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]], step: Step,
          steps: int, log_every: int = 0) -> list:
    """Runs up to `steps` steps; returns (seconds waiting for the batch, seconds of the whole
    step, loss) per step. A step is timed from the end of the previous one."""
    records = []
    it: Iterator = iter(batches)
    last = time.perf_counter()
    for k in range(steps):
        try:
            view1, view2, _labels = next(it)
        except StopIteration:
            break
        got = time.perf_counter()
        loss = step(view1, view2)
        now = time.perf_counter()
        records.append((got - last, now - last, loss))
        if log_every and (k + 1) % log_every == 0:
            print(f"step {k + 1}: loss {loss:.4f}, {now - last:.3f} s, waited {got - last:.3f} s for data", flush=True)
        last = now
    return records


def summary(records: list, views_per_step: int, warmup: int) -> dict:
    """Views per second of the median step and the share of the time spent waiting for data,
    after `warmup` steps."""
    timed = records[warmup:]
    if not timed:
        raise SystemExit(f"no step after the {warmup} warm-up steps: raise --steps")
    wait, total = sum(r[0] for r in timed), sum(r[1] for r in timed)
    median = statistics.median(r[1] for r in timed)
    return {"steps": len(timed), "step_ms_median": round(median * 1000, 1),
            "views_per_s": round(views_per_step / median, 1),
            "wait_share": round(wait / total, 3), "last_loss": round(timed[-1][2], 4)}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="any data set kinfonce reads (CIFAR, MNIST, STL-10, ImageFolder, TinyImageNet)")
    ap.add_argument("--arch", default="resnet18", help="a torchvision ResNet (default resnet18)")
    ap.add_argument("--stem", default="auto", choices=["auto", "cifar", "imagenet"],
                    help="first layers: cifar (3x3 stride 1, no max-pool), imagenet (torchvision's "
                    "7x7 stride 2 and max-pool), auto: cifar under 64 pixels (default)")
    ap.add_argument("--batch", type=int, default=128, help="global batch of images, two views each (default 128)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (default 0: whole epochs)")
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the summary (default 2)")
    ap.add_argument("--loss", default="laplacian", choices=kinfonce.PRESETS, help="Kernel-InfoNCE preset (default laplacian)")
    ap.add_argument("--augment", default="auto", choices=kinfonce.data.AUGMENT_PRESETS, help="views (default auto: the data set's SimCLR preset)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split, the shuffle, the views and the model (default 0)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--loader-threads", type=int, default=2, help="kinfonce.data augmentation threads (default 2)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last views and model")
    ap.add_argument("--bf16", action="store_true", help="bf16 views and autocast (the loss stays f32)")
    ap.add_argument("--log-every", type=int, default=10, help="print every N steps (default 10; 0: never)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary line at the end")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("gloo")
    loader = TwoViewLoader(args.data, batch_size=args.batch, seed=args.seed, augment=args.augment,
                           dtype=torch.bfloat16 if args.bf16 else torch.float32,
                           channels_last=args.channels_last, threads=args.loader_threads)
    model: nn.Module = SimCLR(args.arch, loader.channels, loader.size, args.stem)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    step = Step(model, kinfonce.KernelInfoNCE(args.loss, gather=distributed), args.channels_last, args.bf16)
    steps = args.steps or args.epochs * len(loader)
    records = []
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        records += train(loader, step, steps - len(records), args.log_every)
        if len(records) >= steps:
            break
    result = {"loader": "kinfonce.data", "data": loader.format, "batch": args.batch,
              "views_per_step": 2 * args.batch // loader.world_size, "rank": loader.rank,
              **summary(records, 2 * args.batch // loader.world_size, min(args.warmup, len(records) - 1))}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['steps']} steps: {result['views_per_s']} views/s, "
              f"{100 * result['wait_share']:.1f}% of the time waiting for data, loss {result['last_loss']}")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
