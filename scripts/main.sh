#!/usr/bin/env bash
# The main job: pretrain a ResNet-18 on CIFAR-10 with a Kernel-InfoNCE loss, then print where
# the run folder (metrics, checkpoints, report) is. Installs everything first (scripts/env.sh)
# and builds the release binary. Arguments, if any, replace the default run below and go to
# `kinfonce pretrain` (e.g. `bash scripts/main.sh --preset gaussian --epochs 20 --width 16`).
set -euo pipefail
source "$(dirname "$0")/env.sh"

cargo build --release --locked -p kinfonce-cli
BIN="$ROOT/target/release/kinfonce"
cd "$ROOT"
# Without --data, `kinfonce pretrain` takes CIFAR-10 from $KINFONCE_DATA, the cache folder or
# ../shared/data/cifar10/, downloads it when missing, and offline trains on its built-in
# synthetic set, so this demo always completes.
if [ $# -gt 0 ]; then
  exec "$BIN" pretrain "$@"
fi
# A CPU-sized default run (about 2 minutes on 2 cores): ResNet-18 width 16, bf16 +
# channels-last, 10,000 images, 2 epochs; it ends by printing the k-NN accuracy and the run folder.
exec "$BIN" pretrain --preset simple-sum --arch resnet18 --width 16 \
  --batch 128 --subset 10000 --epochs 2 --precision bf16 --channels-last \
  --out "$ROOT/runs/main-$(date +%Y%m%d-%H%M%S)"
