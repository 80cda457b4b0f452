"""PyTorch reference for the Kernel-InfoNCE loss: forward + backward time and peak memory.

The loss is the one of Tan, Zhang, Yang and Yuan, "Contrastive Learning Is Spectral Clustering
On Similarity Graph" (ICLR 2024), written in the form of the official Kernel-InfoNCE code
(``gamma_loss`` of its ``simclr_module.py``), because that form is the baseline a user would
otherwise run and the one the project's own loss kernels are timed against.

SimCLR pairing: B positive pairs (z1_i, z2_i) give 2B views u = [z1; z2]; the positive of view
a is the other view of the same image, a+ = a +- B. With the exponential kernel

    K(x, y) = exp(-||x - y||_p ** gamma / tau),      p = 2, 0 < gamma <= 2, tau > 0,

the loss over the 2B anchors is

    L = -1/(2B) * sum_a log( K(u_a, u_a+) / (max(S_a, eps) + eps) ),
    S_a = sum_{b != a} K(u_a, u_b)              (the positive is part of the sum),

with eps = 1e-6, clamped and added exactly where the official code does. The official code
computes it with dense 2B x 2B tensors: ``torch.cdist`` raised to ``gamma``, ``exp``, the row sum
minus the diagonal, and the positive distances from ``torch.norm(z1 - z2)``. Autograd gives the
backward pass.

One configuration per process, so the peak memory is its own. The inputs are B x dim Gaussian
rows normalised to unit length (seed 0, z1 drawn before z2). One untimed warm-up call is
followed by --reps timed forward + backward calls; the median is reported.

Prints one JSON line on stdout:

    {"impl": "pytorch-reference", "torch": ..., "batch": ..., "dim": ..., "gamma": ...,
     "tau": ..., "threads": ..., "dtype": ..., "fwd_bwd_ms_median": ...,
     "baseline_rss_mib": ..., "peak_rss_mib": ..., "peak_extra_mib": ..., "loss": ...}

``peak_extra_mib`` = peak resident memory of the process (getrusage ru_maxrss) minus its
resident memory (/proc/self/statm) just before the first loss call, so the memory of importing
torch and of the inputs is not counted.

Needs torch==2.11.0. Example:

    python bench/reference/torch_kernel_infonce.py --batch 4096 --dim 128 --threads 2
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F

# Clamp and offset of the denominator, as in the official code.
EPS = 1e-6
# Order of the norm inside the kernel (the official code's default distance_p).
DISTANCE_P = 2.0


def kernel_infonce(z1, z2, gamma, tau, p=DISTANCE_P, eps=EPS):
    """Official-form Kernel-InfoNCE loss of B pairs (z1[i], z2[i]), averaged over 2B anchors."""
    views = torch.cat([z1, z2], dim=0)  # [2B, d]
    # Kernel between every two views: exp(-||u_a - u_b||^gamma / tau), [2B, 2B].
    kernel = torch.exp(-torch.cdist(views, views, p=p).pow(gamma) / tau)
    # Sum over b != a: the whole row minus the self-similarity on the diagonal.
    negatives = torch.clamp(kernel.sum(dim=-1) - kernel.diag(), min=eps)
    # Kernel of each positive pair, shared by its two anchors.
    positive = torch.exp(-torch.norm(z1 - z2, p=p, dim=-1).pow(gamma) / tau)
    positives = torch.cat([positive, positive], dim=0)
    return -torch.log(positives / (negatives + eps)).mean()


def resident_mib():
    """Resident memory of this process now, in MiB."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_resident_mib():
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_rows(rows, dim, dtype):
    """Gaussian rows normalised to unit length, as leaf tensors that collect gradients."""
    return F.normalize(torch.randn(rows, dim, dtype=dtype), dim=1).requires_grad_(True)


def parse_args():
    ap = argparse.ArgumentParser(
        description="Time the official-form Kernel-InfoNCE loss (forward + backward) in PyTorch "
        "on random unit vectors and report its peak extra memory, as one JSON line.")
    ap.add_argument("--batch", type=int, required=True,
                    help="positive pairs B; the loss sees 2B anchors and a 2B x 2B kernel matrix")
    ap.add_argument("--dim", type=int, default=128, help="embedding width d (default 128)")
    ap.add_argument("--gamma", type=float, default=1.0,
                    help="kernel exponent gamma in (0, 2]: 1 is the Laplacian kernel, 2 the "
                    "Gaussian one (default 1.0)")
    ap.add_argument("--tau", type=float, default=0.2, help="temperature tau > 0 (default 0.2)")
    ap.add_argument("--threads", type=int, default=2,
                    help="intra-op threads of torch (torch.set_num_threads; default 2)")
    ap.add_argument("--reps", type=int, default=5,
                    help="timed repetitions after one untimed warm-up; the median is reported "
                    "(default 5)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="precision of the inputs and of the whole computation (default float32)")
    args = ap.parse_args()
    if args.batch < 1 or args.dim < 1 or args.reps < 1:
        ap.error("need --batch >= 1, --dim >= 1 and --reps >= 1")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    z1 = unit_rows(args.batch, args.dim, dtype)
    z2 = unit_rows(args.batch, args.dim, dtype)

    baseline = resident_mib()
    times = []
    for rep in range(args.reps + 1):
        start = time.perf_counter()
        loss = kernel_infonce(z1, z2, args.gamma, args.tau)
        loss.backward()
        elapsed = time.perf_counter() - start
        z1.grad = None
        z2.grad = None
        if rep > 0:  # rep 0 is the warm-up
            times.append(elapsed)
    peak = peak_resident_mib()

    print(json.dumps({
        "impl": "pytorch-reference",
        "torch": torch.__version__,
        "batch": args.batch,
        "dim": args.dim,
        "gamma": args.gamma,
        "tau": args.tau,
        "threads": args.threads,
        "dtype": args.dtype,
        "fwd_bwd_ms_median": round(statistics.median(times) * 1000, 2),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_extra_mib": round(peak - baseline, 1),
        "loss": round(loss.item(), 6),
    }))


if __name__ == "__main__":
    main()
