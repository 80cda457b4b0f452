#!/usr/bin/env bash
# The main job: pretrain a ResNet-18 on CIFAR-10 with a Kernel-InfoNCE loss, then print where
# the run folder (metrics, checkpoints, report) is. Installs everything first (scripts/env.sh)
# and builds the release binary. Arguments, if any, replace the default run below and go to
# `kinfonce pretrain` (e.g. `bash scripts/main.sh --preset gaussian --epochs 20 --width 16`).
set -euo pipefail
source "$(dirname "$0")/env.sh"

cargo build --release --locked -p kinfonce-cli
BIN="$ROOT/target/release/kinfonce"
DATA="${KINFONCE_DATA:-$ROOT/../shared/data/cifar10/cifar-10-binary.tar.gz}"
if [ ! -e "$DATA" ]; then
  echo "kinfonce: no CIFAR-10 at $DATA; fetching it into $ROOT/data" >&2
  "$BIN" data fetch cifar10 --dir "$ROOT/data"
  DATA="$ROOT/data/cifar-10-binary.tar.gz"
fi

if [ $# -gt 0 ]; then
  exec "$BIN" pretrain --data "$DATA" "$@"
fi
# A CPU-sized default run: ResNet-18 width 16, bf16 + channels-last, 10,000 images, 2 epochs.
exec "$BIN" pretrain --data "$DATA" --preset simple-sum --arch resnet18 --width 16 \
  --batch 128 --subset 10000 --epochs 2 --precision bf16 --channels-last \
  --out "$ROOT/runs/main-$(date +%Y%m%d-%H%M%S)"
