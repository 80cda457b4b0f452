#!/usr/bin/env bash
# The GPU check: one prepared script for a machine with an NVIDIA GPU and PyTorch 2.11.0, run
# with a `kinfonce` built on any x86-64 Linux machine.
#
#   build (from the repository root; the set-up installs the CUDA headers NCCL needs):
#     source scripts/env.sh && cargo build --release --locked --features cuda -p kinfonce-cli
#   run (the GPU machine, whose python3 has torch==2.11.0 with CUDA and torchvision 0.26):
#     bash scripts/cuda_check.sh [BINARY] [CIFAR-10 ARCHIVE OR FOLDER] [CASES.json]
#
# What it runs, in this order, each part timed and kept short (about 3 minutes in all):
#   1. `kinfonce info` and nvidia-smi: what the binary sees;
#   2. the loss cases (CASES.json, e.g. the golden vectors) through the tensor path on CUDA in
#      f64 and f32, against the values the file holds (else the fused CPU engine), by the golden
#      rule: every value within tol x the case's largest magnitude (1e-9 f64, 1e-4 f32); and the
#      golden cases through the Python package's engines on CUDA (`engine="torch"` in f64 and f32,
#      `engine="triton"` in f32 on the cases its kernels cover), when $PYTHON imports `kinfonce`
#      (pip install the wheel built by maturin from crates/kinfonce-py);
#   3. SimCLR training steps at widths 16 and 64, in f32 and bf16 + channels-last, each beside
#      the PyTorch reference pipeline (bench/reference/torch_simclr_pipeline.py) on the same GPU
#      with the same batch (needs the CIFAR-10 argument; without it kinfonce runs alone);
#   4. a world-size-1 NCCL run (torchrun's variables, --backend nccl);
#   5. a resume: 8 steps, then --resume to 16, against 16 steps straight (--deterministic).
# Prints one JSON summary as its last line and writes it to $SUMMARY (default
# cuda_check.json in the current folder).
#
# DEVICE=cpu runs the same script on the CPU (Gloo instead of NCCL, small sizes) to check the
# script itself on a machine without a GPU.
set -euo pipefail
BIN="$(realpath "${1:-target/release/kinfonce}")"
DATA="${2:-}"
CASES="${3:-}"
DEVICE="${DEVICE:-cuda}"
PYTHON="${PYTHON:-python3}"
SUMMARY="$(realpath -m "${SUMMARY:-cuda_check.json}")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_LIB="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
if [ "$DEVICE" = cpu ]; then
  STEPS=6 BATCH=32 WIDTHS="8" SUBSET=512 BACKEND=gloo THREADS=2
else
  STEPS=40 BATCH=256 WIDTHS="16 64" SUBSET=20000 BACKEND=nccl THREADS=8
fi
DATA_ARGS=()
[ -n "$DATA" ] && DATA_ARGS=(--data "$DATA")
part() { echo "== $1 ($(date +%T))" >&2; }

part "what the binary sees"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" >&2
"$BIN" info | tee "$OUT/info.txt" >&2

part "loss cases through the tensor path on $DEVICE"
if [ -n "$CASES" ]; then
  "$BIN" loss --cases "$CASES" --dtype f64 >"$OUT/loss-fused.json"
  for dtype in f64 f32; do
    "$BIN" loss --cases "$CASES" --dtype "$dtype" --engine tensor --device "$DEVICE" >"$OUT/loss-$dtype.json"
  done
  if "$PYTHON" -c 'import kinfonce' 2>/dev/null; then
    # Without a GPU (DEVICE=cpu) the Triton kernels run in Triton's interpreter.
    TRITON_INTERPRET="$([ "$DEVICE" = cpu ] && echo 1 || echo 0)" "$PYTHON" \
      "$ROOT/crates/kinfonce-py/tests/golden.py" "$CASES" --device "$DEVICE" 2>"$OUT/python-golden.err" |
      tail -1 >"$OUT/python-golden.json" || { tail -5 "$OUT/python-golden.err" >&2; echo '{"failed": true}' >"$OUT/python-golden.json"; }
  else
    echo '{"skipped": "kinfonce is not installed for '"$PYTHON"'"}' >"$OUT/python-golden.json"
  fi
fi

# A short pretraining run with kinfonce; extra arguments go to `kinfonce pretrain`.
pretrain() {
  local name="$1"
  shift
  "$BIN" pretrain "${DATA_ARGS[@]}" --device "$DEVICE" --arch resnet18 --subset "$SUBSET" \
    --knn-every 0 --log-every 1 --checkpoint-minutes 0 --threads "$THREADS" \
    --out "$OUT/$name" --json "$@" 2>"$OUT/$name.err" | tail -1 >"$OUT/$name.json" ||
    { tail -5 "$OUT/$name.err" >&2; echo '{"failed": true}' >"$OUT/$name.json"; }
}

part "SimCLR steps, kinfonce beside the PyTorch reference"
for width in $WIDTHS; do
  for mode in f32 bf16; do
    if [ "$mode" = f32 ]; then flags=(--precision f32 --channels-last=false); ref=(); else
      flags=(--precision bf16 --channels-last); ref=(--bf16 --channels-last); fi
    pretrain "train-w$width-$mode" --width "$width" --batch "$BATCH" --max-steps "$STEPS" "${flags[@]}"
    if [ -n "$DATA" ]; then
      "$PYTHON" "$ROOT/bench/reference/torch_simclr_pipeline.py" --data "$DATA" --device "$DEVICE" \
        --width "$width" --batch "$BATCH" --steps "$STEPS" --warmup 5 --workers "$THREADS" \
        --threads "$THREADS" "${ref[@]}" >"$OUT/ref-w$width-$mode.json" 2>"$OUT/ref-w$width-$mode.err" ||
        { tail -5 "$OUT/ref-w$width-$mode.err" >&2; echo '{"failed": true}' >"$OUT/ref-w$width-$mode.json"; }
    fi
  done
done

part "a world-size-1 run on $BACKEND"
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT="$PORT" \
  pretrain "nccl" --backend "$BACKEND" --width 16 --batch "$BATCH" --max-steps 8

part "a resume against a straight run"
# One epoch fixes the schedule, so stopping at step 8 does not change the learning rates.
same=(--width 16 --batch "$BATCH" --epochs 1 --deterministic --checkpoint-every 4)
pretrain "straight" "${same[@]}" --max-steps 16
pretrain "resumed" "${same[@]}" --max-steps 8
"$BIN" pretrain --resume "$OUT/resumed" --max-steps 16 --json 2>>"$OUT/resumed.err" | tail -1 >"$OUT/resumed.json" ||
  echo '{"failed": true}' >"$OUT/resumed.json"

part "summary"
CASES="$CASES" "$PYTHON" - "$OUT" "$DEVICE" "$WIDTHS" "$SUMMARY" <<'EOF'
import json, os, sys

out, device, widths, summary_path = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]

def read(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        text = f.read().strip()
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return {"failed": True, "output": text[-300:]}

def numbers(v):
    if isinstance(v, (int, float)):
        return [float(v)]
    if isinstance(v, list):
        return [x for item in v for x in numbers(item)]
    return []

summary = {"device": device}
if os.path.exists(os.path.join(out, "gpu.txt")):
    summary["gpu"] = open(os.path.join(out, "gpu.txt")).read().strip()
summary["info"] = open(os.path.join(out, "info.txt")).read().strip().splitlines()

# 2. Loss cases: expected values from the case file when it holds them, else the fused engine.
fused = read("loss-fused.json")
if fused is not None:
    expected = {c["name"]: c for c in fused["cases"]}
    # The case file's own values (the golden vectors) when it holds them.
    with open(os.environ["CASES"]) as f:
        doc = json.load(f)
    for c in doc.get("cases", doc) if isinstance(doc, dict) else doc:
        if "loss" in c and "grads" in c:
            expected[c["name"]] = c
    losses = {}
    for dtype, tol in (("f64", 1e-9), ("f32", 1e-4)):
        got = read(f"loss-{dtype}.json") or {"cases": [], "skipped": []}
        worst, failed = 0.0, []
        for case in got["cases"]:
            want = expected[case["name"]]
            a, b = numbers([case["loss"], case["grads"]]), numbers([want["loss"], want["grads"]])
            scale = max(abs(x) for x in b)
            err = max(abs(x - y) for x, y in zip(a, b)) / scale
            worst = max(worst, err)
            if err > tol:
                failed.append(case["name"])
        losses[dtype] = {"checked": len(got["cases"]), "failed": failed,
                         "worst_relative_error": worst, "tolerance": tol,
                         "skipped": [s["name"] for s in got.get("skipped", [])],
                         "pass": not failed and len(got["cases"]) > 0}
    summary["loss_cases"] = losses
    # The same cases through the Python package's tiled and Triton engines.
    summary["python_loss_cases"] = read("python-golden.json")

# 3. Throughput, kinfonce beside the reference.
runs = []
for width in widths:
    for mode in ("f32", "bf16"):
        k = read(f"train-w{width}-{mode}.json") or {"failed": True}
        r = read(f"ref-w{width}-{mode}.json")
        row = {"width": int(width), "precision": mode,
               "kinfonce_views_per_s": k.get("views_per_s"),
               "kinfonce_views_per_s_end_to_end": k.get("views_per_s_end_to_end"),
               "kinfonce_loss": [k.get("first_loss"), k.get("final_loss")]}
        if r is not None:
            row["reference_views_per_s"] = r.get("images_per_s")
            if row["kinfonce_views_per_s_end_to_end"] and r.get("images_per_s"):
                row["ratio_end_to_end"] = round(
                    row["kinfonce_views_per_s_end_to_end"] / r["images_per_s"], 2)
        runs.append(row)
summary["throughput"] = runs

# 4. One process on the collective backend.
n = read("nccl.json") or {"failed": True}
summary["world_size_1"] = {"ok": "final_loss" in n, "final_loss": n.get("final_loss"),
                           "steps": n.get("steps")}

# 5. Resume: per-step losses of the straight and the resumed run.
def step_losses(name):
    path = os.path.join(out, name, "metrics.jsonl")
    losses = {}
    if os.path.exists(path):
        for line in open(path):
            rec = json.loads(line)
            if rec.get("kind") == "step":
                losses[rec["step"]] = rec["loss"]
    return losses
a, b = step_losses("straight"), step_losses("resumed")
common = sorted(set(a) & set(b))
diff = max((abs(a[s] - b[s]) for s in common), default=None)
summary["resume"] = {"steps_compared": len(common), "max_loss_difference": diff,
                     "pass": len(common) >= 16 and diff is not None and diff <= 1e-5}

text = json.dumps(summary)
with open(summary_path, "w") as f:
    f.write(text + "\n")
print(text)
EOF
