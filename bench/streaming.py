"""Streamed JPEG folders: kinfonce's SimCLR two-view pipeline at 224 px against torchvision's
ImageFolder + the same SimCLR transforms in DataLoader workers, and the decode alone against
PIL with and without `Image.draft`, side by side in one invocation.

Two JPEG sets are written first with a fixed seed (textured and noisy, so files are as large as
photos: about 100 KB at 500 x 375): `imagenet-like` (sides 300 to 600 px, where DCT scaling
seldom applies) and `large` (800 to 1,500 px).

Per set, on one core each (kinfonce: one loader thread; torchvision: one DataLoader worker):
- views/s of the two-view pipeline (RandomResizedCrop 224, flip, jitter 0.8 s, grayscale, blur,
  normalise; two views per image): kinfonce with and without its scaled decode
  (KINFONCE_FULL_DECODE=1), torchvision;
- the decode alone, one RandomResizedCrop box per image resized to 224: kinfonce's
  `crop_at_decode` (scaled, and forced full), PIL full decode + `F.resized_crop`, PIL with
  `draft` (its DCT scaling, chosen to cover the box at 224) + `F.resized_crop`.

Each measurement runs in a fresh process; the rounds alternate them. Prints one JSON line per
run and a Markdown table of medians and ratios.

    .venv/bin/python bench/streaming.py [--dir /tmp/kinfonce-stream-bench] [--images 256]
        [--batches 6] [--rounds 2]

Needs the package installed (scripts/test.sh installs it into .venv), torch==2.11.0,
torchvision==0.26.0 and pillow (scripts/env.sh installs them).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETS = {"imagenet-like": (300, 600), "large": (800, 1500)}
PIPELINES = ("kinfonce", "kinfonce-full-decode", "torchvision")
DECODERS = ("kinfonce", "kinfonce-full-decode", "pil", "pil-draft")
CLASSES = 4


def write_set(root: Path, sides, images: int, seed: int) -> None:
    """`images` JPEGs (quality 90) in CLASSES folders, sides drawn in `sides`, from `seed`."""
    import numpy as np
    from PIL import Image

    done = root / ".complete"
    if done.exists():
        return
    rng = np.random.default_rng(seed)
    for i in range(images):
        w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = rng.uniform(0, 6.28, 3)
        freq = rng.uniform(0.02, 0.3, 2)
        chans = []
        for c in range(3):
            tex = np.sin(x * freq[0] + phase[c]) * np.cos(y * freq[1] + phase[c]) * 45
            v = 50 + 130 * (x / w) * (1 - y / h) + 60 * (y / h) + tex + rng.normal(0, 14, (h, w))
            chans.append(np.clip(v, 0, 255).astype(np.uint8))
        path = root / f"class{i % CLASSES}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack(chans, -1)).save(path, quality=90)
    done.write_text("ok\n")


def simclr_torchvision(size: int):
    """SimCLR's view as the official code builds it (pl_bolts, jitter strength 1.0, blur)."""
    from torchvision import transforms as T

    k = int(0.1 * size)
    k += 1 - k % 2
    return T.Compose(
        [
            T.RandomResizedCrop(size),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )


def run_pipeline(which: str, data: Path, batch: int, batches: int) -> dict:
    import torch

    torch.set_num_threads(1)
    if which.startswith("kinfonce"):
        from kinfonce.data import TwoViewLoader

        loader = TwoViewLoader(data, batch_size=batch, size=224, threads=1, prefetch=2, val_fraction=0.0)
        it = iter(loader)
        next(it)  # the start: index read, pool up
        t0 = time.perf_counter()
        for _ in range(batches):
            v1, v2, _ = next(it)
        secs = time.perf_counter() - t0
    else:
        from torchvision.datasets import ImageFolder

        view = simclr_torchvision(224)
        dataset = ImageFolder(str(data), transform=lambda im: (view(im), view(im)))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch, shuffle=True, num_workers=1, prefetch_factor=2, drop_last=True
        )
        it = iter(loader)
        next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            (v1, v2), _ = next(it)
        secs = time.perf_counter() - t0
    return {"views_per_s": 2 * batch * batches / secs}


def run_decoder(which: str, data: Path, limit: int) -> dict:
    import torch
    import torchvision.transforms.functional as F
    from PIL import Image
    from torchvision.transforms import RandomResizedCrop

    torch.set_num_threads(1)
    from kinfonce.data import crop_at_decode

    files = sorted(data.glob("class*/*.jpg"))[:limit]
    torch.manual_seed(0)
    boxes = []
    for f in files:
        with Image.open(f) as im:
            boxes.append(RandomResizedCrop.get_params(im, (0.08, 1.0), (3 / 4, 4 / 3)))
    scaled = 0
    t0 = time.perf_counter()
    for f, (top, left, h, w) in zip(files, boxes):
        if which.startswith("kinfonce"):
            _, d = crop_at_decode(f, (top, left, h, w), 224)
            scaled += d > 1
        else:
            with Image.open(f) as im:
                full_w, full_h = im.size
                if which == "pil-draft":
                    # The draft's size: the whole image shrunk as far as the box still covers 224.
                    need = max(224 * full_w / w, 224 * full_h / h)
                    im.draft("RGB", (int(need * full_w / max(full_w, full_h)), int(need * full_h / max(full_w, full_h))))
                sx, sy = im.size[0] / full_w, im.size[1] / full_h
                scaled += im.size[0] < full_w
                x = F.pil_to_tensor(im.convert("RGB"))
            F.resized_crop(x, round(top * sy), round(left * sx), round(h * sy), round(w * sx), [224, 224], antialias=True)
    secs = time.perf_counter() - t0
    return {"images_per_s": len(files) / secs, "scaled_share": scaled / len(files)}


def child(args) -> None:
    if args.what.endswith("full-decode"):
        os.environ["KINFONCE_FULL_DECODE"] = "1"
    data = Path(args.dir) / args.set
    if args.kind == "pipeline":
        out = run_pipeline(args.what, data, args.batch, args.batches)
    else:
        out = run_decoder(args.what, data, args.images)
    print(json.dumps({"set": args.set, "kind": args.kind, "what": args.what, **out}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default="/tmp/kinfonce-stream-bench")
    p.add_argument("--images", type=int, default=256, help="images per set")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=6, help="timed batches per pipeline run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--set", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--what", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    for i, (name, sides) in enumerate(SETS.items()):
        write_set(Path(args.dir) / name, sides, args.images, seed=i)
    cpu = next(
        (l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")),
        "unknown",
    )
    sizes = {
        name: sum(f.stat().st_size for f in (Path(args.dir) / name).glob("class*/*.jpg")) / args.images / 1e3
        for name in SETS
    }
    print(json.dumps({"cpu": cpu, "mean_file_kb": sizes}), flush=True)
    runs = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    for _ in range(args.rounds):
        for name in SETS:
            for kind, whats in (("pipeline", PIPELINES), ("decode", DECODERS)):
                for what in whats:
                    cmd = [sys.executable, __file__, "--child", "--dir", args.dir, "--set", name, "--kind", kind,
                           "--what", what, "--images", str(args.images), "--batch", str(args.batch),
                           "--batches", str(args.batches)]
                    line = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout.strip().splitlines()[-1]
                    print(line, flush=True)
                    r = json.loads(line)
                    key = "views_per_s" if kind == "pipeline" else "images_per_s"
                    runs.setdefault((name, kind, what), []).append(r[key])
                    if "scaled_share" in r:
                        runs.setdefault((name, kind, what, "share"), []).append(r["scaled_share"])
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\nCPU: {cpu}; one core per pipeline; medians of {args.rounds} rounds\n")
    print("| set | two-view pipeline at 224 px | views/s | vs torchvision |")
    print("|---|---|---:|---:|")
    for name in SETS:
        base = med[(name, "pipeline", "torchvision")]
        for what in PIPELINES:
            v = med[(name, "pipeline", what)]
            print(f"| {name} | {what} | {v:.1f} | {v / base:.2f}x |")
    print("\n| set | decode + crop to 224 | images/s | vs PIL full | scaled share |")
    print("|---|---|---:|---:|---:|")
    for name in SETS:
        base = med[(name, "decode", "pil")]
        for what in DECODERS:
            v = med[(name, "decode", what)]
            share = med.get((name, "decode", what, "share"), 0.0)
            print(f"| {name} | {what} | {v:.1f} | {v / base:.2f}x | {share:.0%} |")


if __name__ == "__main__":
    main()
