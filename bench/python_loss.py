"""The `kinfonce` Python module's engines against the plain PyTorch formula, side by side.

For each batch size B (2B views of width --dim, Gaussian rows normalised to unit length, seed 0)
and dtype it runs, each configuration in a fresh process so that the peak memory is its own:

- `native`: ``kinfonce.KernelInfoNCE(..., engine="native")``, the fused Rust engine (CPU);
- `torch`: ``engine="torch"``, the exact tiled path in torch operations (any device);
- `triton`: ``engine="triton"``, the fused Triton kernels (CUDA);
- `formula`: the official code's loss in plain PyTorch with autograd, dense 2B x 2B matrices
  (``kernel_infonce`` of bench/reference/torch_kernel_infonce.py), up to --formula-max.

Each is timed the same way, forward + loss.backward() (one untimed call, then the median of
--reps calls; from --once-from pairs on a single timed call), and reports its peak extra memory:
on the CPU the process's peak resident memory (getrusage) minus its resident memory just before
the first loss call, on CUDA torch's peak allocated memory minus what was allocated before. An
out-of-memory is recorded as such. Prints one JSON line per run and a Markdown table at the end.

    .venv/bin/python bench/python_loss.py                      # CPU: the figures of
                                                               # docs/results/python-loss.md
    python bench/python_loss.py --device cuda                  # a GPU: triton, torch, formula,
                                                               # B 1,024 to 65,536, f32 and bf16

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

sys.path.insert(0, str(Path(__file__).parent / "reference"))

DEFAULTS = {
    "cpu": {"impls": ["native", "torch", "formula"], "batches": [4096, 8192, 16384, 65536],
            "dtypes": ["f32"], "formula_max": 8192, "native_max": 16384},
    "cuda": {"impls": ["triton", "torch", "formula"], "batches": [1024, 4096, 16384, 65536],
             "dtypes": ["f32", "bf16"], "formula_max": 65536, "native_max": 0},
}


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(args):
    """One configuration in this process; prints its JSON line."""
    import torch

    import kinfonce
    from torch_kernel_infonce import kernel_infonce as formula

    torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.nn.functional.normalize(torch.randn(args.batch, args.dim, generator=g), dim=1)
              .to(device=device, dtype=dtype).requires_grad_(True) for _ in range(2))
    if args.impl == "formula":
        loss_fn = lambda a, b: formula(a, b, args.gamma, args.tau)  # noqa: E731
    else:
        loss_fn = kinfonce.KernelInfoNCE(gamma=args.gamma, tau=args.tau, engine=args.impl)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated() / 2**20
    else:
        baseline = rss_mib()

    def call():
        z1.grad = z2.grad = None
        loss = loss_fn(z1, z2)
        loss.backward()
        sync()
        return loss.item()

    row = {"impl": args.impl, "batch": args.batch, "dim": args.dim, "dtype": args.dtype,
           "device": args.device, "gamma": args.gamma, "tau": args.tau, "threads": args.threads}
    try:
        once = args.batch >= args.once_from
        value = None if once else call()
        times = []
        for _ in range(1 if once else args.reps):
            t = time.perf_counter()
            value = call()
            times.append((time.perf_counter() - t) * 1e3)
    except torch.OutOfMemoryError:
        print(json.dumps({**row, "oom": True}))
        return
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**row, "fwd_bwd_ms_median": statistics.median(times), "calls_timed": len(times),
                      "peak_extra_mib": peak - baseline, "loss": value}))


def run(cmd, env, row):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        # A process killed by the kernel's out-of-memory killer has no chance to say so.
        killed = out.returncode in (-9, 137)
        return {**row, "oom": killed, "error": None if killed else out.stderr.strip()[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell(r, key, fmt):
    if r is None:
        return "-"
    if r.get("oom"):
        return "out of memory"
    if "error" in r:
        return "error"
    return fmt(r[key])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--impls", nargs="+", choices=["native", "torch", "triton", "formula"])
    ap.add_argument("--batches", type=int, nargs="+")
    ap.add_argument("--dtypes", nargs="+", choices=["f32", "bf16"])
    ap.add_argument("--formula-max", type=int, help="the formula runs up to this batch")
    ap.add_argument("--native-max", type=int, help="the native engine runs up to this batch")
    ap.add_argument("--once-from", type=int, default=16384, help="from this batch on, one timed call")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--tau", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return measure(args)
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # Few cores: OpenMP threads must not spin against rayon, and every side gets the same count.
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", RAYON_NUM_THREADS=str(args.threads))
    common = ["--device", args.device, "--dim", str(args.dim), "--gamma", str(args.gamma), "--tau",
              str(args.tau), "--threads", str(args.threads), "--reps", str(args.reps), "--once-from",
              str(args.once_from)]
    limits = {"formula": args.formula_max, "native": args.native_max}
    rows = {}
    for dtype in args.dtypes:
        for b in args.batches:
            for impl in args.impls:
                if b > limits.get(impl, b):
                    continue
                row = {"impl": impl, "batch": b, "dtype": dtype}
                cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--batch", str(b), "--dtype", dtype, *common]
                rows[impl, b, dtype] = r = run(cmd, env, row)
                print(json.dumps(r), flush=True)
    print(f"\n{args.device}, gamma {args.gamma}, tau {args.tau}, d {args.dim}, {args.threads} threads, "
          f"median of {args.reps} (one call from {args.once_from:,} pairs)\n")
    print("| B (pairs) | dtype | " + " | ".join(f"{i} fwd+bwd" for i in args.impls) + " | "
          + " | ".join(f"{i} peak extra" for i in args.impls) + " | loss |")
    print("|---|---|" + "---|" * (2 * len(args.impls) + 1))
    for dtype in args.dtypes:
        for b in args.batches:
            rs = [rows.get((i, b, dtype)) for i in args.impls]
            times = [cell(r, "fwd_bwd_ms_median", lambda v: f"{v:,.1f} ms") for r in rs]
            mems = [cell(r, "peak_extra_mib", lambda v: f"{v:,.1f} MiB") for r in rs]
            losses = " / ".join(f"{r['loss']:.6f}" for r in rs if r and "loss" in r)
            print(f"| {b:,} | {dtype} | " + " | ".join(times) + " | " + " | ".join(mems) + f" | {losses} |")


if __name__ == "__main__":
    main()
