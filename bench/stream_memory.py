"""Resident memory of `kinfonce pretrain` on streamed JPEG folders of 20,000 and 40,000 images
(224 px views, ResNet-18 width 8, batch 32, 200 steps, the k-NN monitor on), side by side.

The folders are written here with a fixed seed: --distinct textured, noisy JPEGs with sides of
300 to 1,500 px, each hard-linked under as many names as the folder needs (100 class folders).
Every name is a file of its own to the index and the loader (its header is read, its bytes
decoded at every view); the links only save disk and the time to encode.

Peak resident memory (VmHWM) of the run is read from /proc while it trains. Prints one JSON line
per run and a Markdown table.

    .venv/bin/python bench/stream_memory.py --kinfonce target/release/kinfonce \\
        [--dir /tmp/kinfonce-stream-memory] [--counts 20000 40000] [--steps 200]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from streaming import write_set  # noqa: E402

CLASSES = 100


def linked_folder(source: Path, root: Path, count: int) -> None:
    if (root / ".complete").exists():
        return
    files = sorted(source.glob("class*/*.jpg"))
    for i in range(count):
        dst = root / f"c{i % CLASSES:03d}" / f"{i:06d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.link(files[i % len(files)], dst)
    (root / ".complete").write_text("ok\n")


def peak_rss(cmd, env) -> tuple:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    t0 = time.time()
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err[-3000:]}")
    return peak / 1024, time.time() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinfonce", required=True, help="the kinfonce binary")
    p.add_argument("--dir", default="/tmp/kinfonce-stream-memory")
    p.add_argument("--distinct", type=int, default=400)
    p.add_argument("--counts", type=int, nargs="+", default=[20000, 40000])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    base = Path(args.dir)
    write_set(base / "distinct", (300, 1500), args.distinct, seed=7)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    rows = []
    for count in args.counts:
        data = base / f"n{count}"
        linked_folder(base / "distinct", data, count)
        out = base / f"run{count}"
        cmd = [args.kinfonce, "pretrain", "--data", str(data), "--view-size", "224", "--arch", "resnet18",
               "--width", "8", "--batch", "32", "--max-steps", str(args.steps), "--threads", str(args.threads),
               "--knn-every", "1", "--knn-bank", "512", "--knn-queries", "256", "--val-fraction", "0.02",
               "--out", str(out), "--json"]
        peak_mib, secs, stdout = peak_rss(cmd, env)
        summary = json.loads(stdout.strip().splitlines()[-1])
        row = {"images": count, "peak_rss_mib": round(peak_mib), "seconds": round(secs), "steps": args.steps,
               "knn_top1": summary.get("knn_top1")}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| images | peak resident memory | wall time |\n|---:|---:|---:|")
    for r in rows:
        print(f"| {r['images']:,} | {r['peak_rss_mib']:,} MiB | {r['seconds']} s |")
    if len(rows) > 1:
        lo, hi = min(r["peak_rss_mib"] for r in rows), max(r["peak_rss_mib"] for r in rows)
        print(f"\nlargest / smallest: {hi / lo:.3f}")


if __name__ == "__main__":
    main()
