#!/usr/bin/env bash
# CUDA smoke run: a few training steps on an NVIDIA GPU with a `kinfonce` built on a CPU machine.
#
#   build (any x86-64 Linux machine, from the repository root):
#     source scripts/env.sh && cargo build --release --locked --features cuda -p kinfonce-cli
#   run (the GPU machine, whose python3 has torch==2.11.0 with CUDA):
#     bash scripts/cuda_check.sh [BINARY] [DATA]
#
# Prints what `kinfonce info` sees (devices, compute capability, what --precision auto picks),
# then views/s of the training step (model only) and end to end, with auto, in f32 and in
# bf16 + channels-last. Without DATA it uses CIFAR-10 from the cache, or the built-in
# synthetic set when offline.
set -euo pipefail
BIN="${1:-target/release/kinfonce}"
PYTHON="${PYTHON:-python3}"
TORCH_LIB="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$BIN" info
DATA_ARGS=()
[ $# -ge 2 ] && DATA_ARGS=(--data "$2")
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for mode in "auto" "f32 --channels-last=false" "bf16 --channels-last"; do
  # shellcheck disable=SC2086
  "$BIN" pretrain "${DATA_ARGS[@]}" --device cuda --arch resnet18 --width 64 --batch 256 \
    --max-steps 30 --subset 10000 --precision $mode --knn-every 0 --log-every 10 \
    --checkpoint-minutes 0 --out "$OUT/run-${mode//[ =]/}" --json | tail -1 |
    "$PYTHON" -c "import json, sys; d = json.load(sys.stdin); print(f\"cuda $mode: model step {d['views_per_s']:.0f} views/s, end to end {d['views_per_s_end_to_end']:.0f} views/s, loss {d['first_loss']:.3f} -> {d['final_loss']:.3f}\")"
done
