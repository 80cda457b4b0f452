"""The `kinfonce` Python module's CPU forward + backward against plain PyTorch, side by side.

For each batch size B (2B views of width --dim, Gaussian rows normalised to unit length, seed 0)
it runs, each in a fresh process so that the peak memory is that configuration's own:

- `kinfonce`: ``kinfonce.KernelInfoNCE(gamma=..., tau=...)`` on f32 CPU tensors, loss.backward();
- `pytorch`: the official code's loss in PyTorch with autograd
  (bench/reference/torch_kernel_infonce.py, dense 2B x 2B matrices).

Both are timed the same way (one untimed call, then the median of --reps calls) and report the
peak extra resident memory: the process's peak RSS (getrusage) minus its RSS just before the first
loss call. Prints one JSON line per run and a Markdown table at the end.

    .venv/bin/python bench/python_loss.py [--batches 1024 4096] [--dim 128] [--threads 2]

Needs the package installed (scripts/test.sh installs it into .venv) and torch==2.11.0.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = Path(__file__).parent / "reference" / "torch_kernel_infonce.py"


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_kinfonce(args):
    """One configuration in this process; prints its JSON line."""
    import torch

    import kinfonce

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    z1 = torch.nn.functional.normalize(torch.randn(args.batch, args.dim, generator=g), dim=1)
    z2 = torch.nn.functional.normalize(torch.randn(args.batch, args.dim, generator=g), dim=1)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss_fn = kinfonce.KernelInfoNCE(gamma=args.gamma, tau=args.tau)
    baseline = rss_mib()

    def call():
        z1.grad = z2.grad = None
        loss = loss_fn(z1, z2)
        loss.backward()
        return loss.item()

    value = call()
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "impl": "kinfonce", "batch": args.batch, "dim": args.dim, "gamma": args.gamma,
        "tau": args.tau, "threads": args.threads, "fwd_bwd_ms_median": statistics.median(times),
        "peak_extra_mib": peak - baseline, "loss": value,
    }))


def run(cmd, env):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return measure_kinfonce(args)
    # Two cores: OpenMP threads must not spin against rayon, and both sides get the same count.
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", RAYON_NUM_THREADS=str(args.threads))
    common = ["--dim", str(args.dim), "--gamma", str(args.gamma), "--tau", str(args.tau),
              "--threads", str(args.threads), "--reps", str(args.reps)]
    rows = []
    for b in args.batches:
        ours = run([sys.executable, __file__, "--worker", "--batch", str(b), *common], env)
        ref = run([sys.executable, str(REFERENCE), "--batch", str(b), "--dtype", "float32", *common], env)
        for r in (ours, ref):
            print(json.dumps(r), flush=True)
        rows.append((b, ours, ref))
    print(f"\ngamma {args.gamma}, tau {args.tau}, d {args.dim}, f32, {args.threads} threads, median of {args.reps}\n")
    print("| B (pairs) | kinfonce fwd+bwd | PyTorch fwd+bwd | speed-up | kinfonce peak extra | PyTorch peak extra | loss kinfonce / PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for b, ours, ref in rows:
        print(f"| {b:,} | {ours['fwd_bwd_ms_median']:.1f} ms | {ref['fwd_bwd_ms_median']:.1f} ms | "
              f"{ref['fwd_bwd_ms_median'] / ours['fwd_bwd_ms_median']:.2f}x | "
              f"{ours['peak_extra_mib']:.1f} MiB | {ref['peak_extra_mib']:.1f} MiB | "
              f"{ours['loss']:.6f} / {ref['loss']:.6f} |")


if __name__ == "__main__":
    main()
