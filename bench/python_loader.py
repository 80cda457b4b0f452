"""examples/simclr_torch.py's training loop fed by kinfonce.data against the same loop fed by
torchvision transforms in DataLoader workers, side by side in one invocation.

Both feeds give the same step (the example's `Step`: a torchvision ResNet and projection head,
both views as one batch, `kinfonce.KernelInfoNCE`, Adam) the same batches of CIFAR-10 views:

- `kinfonce.data`: `TwoViewLoader` (the CIFAR-10 SimCLR preset), augmenting on
  --loader-threads Rust threads in the training process while the step runs;
- `torchvision`: the official PIL pipeline of bench/reference/torch_simclr_pipeline.py
  (RandomResizedCrop, flip, colour jitter 0.5, grayscale, ToTensor, Normalize) in a DataLoader
  with --workers worker processes.

Each feed runs in a fresh process; the rounds alternate the two so that drift in the machine's
load hits both. A step is timed from the end of the previous one, so it includes the wait for
its batch; after --warmup steps the median step gives views/s, and the share of the timed
steps' wall time spent inside `next(batches)` is the data wait. Each round also times each
feed alone (5 x --steps batches, no model), what it can deliver at most. Prints one JSON line
per run and a Markdown table.

    .venv/bin/python bench/python_loader.py --data cifar-10-binary.tar.gz \\
        [--batch 128] [--steps 8] [--warmup 2] [--rounds 2] [--threads 2] [--workers 2] \\
        [--loader-threads 2] [--arch resnet18] [--stem imagenet]

Needs the package installed (scripts/test.sh installs it into .venv), torch==2.11.0 and, for
the torchvision feed, torchvision==0.26.0 and pillow (see bench/reference/README.md).
"""

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "simclr_torch.py"
FEEDS = ("kinfonce.data", "torchvision")


def load_example():
    spec = importlib.util.spec_from_file_location("simclr_torch", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def endless(make_epoch):
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


def run_feed(args):
    """One feed in this process; prints its JSON line."""
    import torch

    import kinfonce

    example = load_example()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.feed == "kinfonce.data":
        loader = kinfonce.data.TwoViewLoader(args.data, batch_size=args.batch, seed=0,
                                             threads=args.loader_threads)

        def epoch_batches(epoch):
            loader.set_epoch(epoch)
            return iter(loader)

        batches = endless(epoch_batches)
        workers = 0
    else:
        sys.path.insert(0, str(HERE / "reference"))
        import torch_simclr_pipeline as reference

        images, labels = reference.load_cifar10_train(args.data)
        dataset = reference.TwoViewCifar(images, labels, reference.view_transform(augment=True))
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                             drop_last=True, num_workers=args.workers,
                                             persistent_workers=args.workers > 0)
        batches = endless(lambda epoch: iter(loader))
        workers = args.workers
    if args.data_only:
        # The feed alone: how fast it delivers batches when nothing else runs.
        def step(view1, view2):
            return 0.0

        steps = 5 * args.steps
    else:
        model = example.SimCLR(args.arch, 3, 32, args.stem)
        step = example.Step(model, kinfonce.KernelInfoNCE("laplacian"), channels_last=False, bf16=False)
        steps = args.steps
    records = example.train(batches, step, args.warmup + steps)
    result = {"feed": args.feed, "round": args.round, "data_only": args.data_only,
              "arch": args.arch, "stem": args.stem,
              "batch": args.batch, "threads": args.threads, "workers": workers,
              "loader_threads": args.loader_threads if args.feed == "kinfonce.data" else 0,
              **example.summary(records, 2 * args.batch, args.warmup)}
    print(json.dumps(result), flush=True)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="CIFAR-10 binary: cifar-10-binary.tar.gz or its folder")
    ap.add_argument("--batch", type=int, default=128, help="images per step, two views each (default 128)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per run (default 8)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per run (default 2)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each feed, alternating (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the torchvision feed (default 2)")
    ap.add_argument("--loader-threads", type=int, default=2, help="augmentation threads of kinfonce.data (default 2)")
    ap.add_argument("--arch", default="resnet18", help="torchvision ResNet (default resnet18)")
    ap.add_argument("--stem", default="imagenet", choices=["cifar", "imagenet"],
                    help="the example's --stem (default imagenet: torchvision's ResNet unchanged)")
    ap.add_argument("--feed", choices=FEEDS, help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--data-only", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


def main():
    args = parse_args()
    if args.feed:
        run_feed(args)
        return
    results = []
    runs = [(r, feed, data_only) for r in range(args.rounds) for data_only in (False, True) for feed in FEEDS]
    for r, feed, data_only in runs:
        argv = [sys.executable, __file__, "--feed", feed, "--round", str(r)] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("feed", "round", "rounds", "data_only")] + (["--data-only"] if data_only else [])
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{feed} failed:\n{done.stderr}")
        line = done.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        results.append(json.loads(line))
    print(f"\n{args.arch} ({args.stem} stem), batch {args.batch} (x2 views), {args.threads} torch threads, "
          f"median of {args.steps} steps per run, {args.rounds} alternating rounds\n")
    print("| feed | training views/s (per round) | median | data wait share (per round) | feed alone, views/s (per round) | median |")
    print("|---|---|---|---|---|---|")
    medians, alone = {}, {}
    for feed in FEEDS:
        train = [r for r in results if r["feed"] == feed and not r["data_only"]]
        only = [r for r in results if r["feed"] == feed and r["data_only"]]
        medians[feed] = statistics.median(r["views_per_s"] for r in train)
        alone[feed] = statistics.median(r["views_per_s"] for r in only)
        vps = ", ".join(f"{r['views_per_s']:.1f}" for r in train)
        wait = ", ".join(f"{100 * r['wait_share']:.1f}%" for r in train)
        only_vps = ", ".join(f"{r['views_per_s']:.0f}" for r in only)
        print(f"| {feed} | {vps} | {medians[feed]:.1f} | {wait} | {only_vps} | {alone[feed]:.0f} |")
    print(f"\nkinfonce.data / torchvision: {medians['kinfonce.data'] / medians['torchvision']:.2f}x views/s "
          f"training, {alone['kinfonce.data'] / alone['torchvision']:.1f}x views/s from the feed alone")


if __name__ == "__main__":
    main()
