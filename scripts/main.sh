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
# Without --data, `kinfonce pretrain` takes CIFAR-10 from $KINFONCE_DATA or the cache folder,
# downloads it when missing, and offline trains on its built-in synthetic set, so this demo
# always completes. A CIFAR-10 copy beside the checkout is used first.
DATA=()
if [ -f "$ROOT/../shared/data/cifar10/cifar-10-binary.tar.gz" ]; then
  DATA=(--data "$ROOT/../shared/data/cifar10/cifar-10-binary.tar.gz")
fi
if [ $# -gt 0 ]; then
  exec "$BIN" pretrain "$@"
fi
# A CPU-sized default run: ResNet-18 width 16, 10,000 images, 2 epochs; precision and layout
# are chosen from the hardware (`kinfonce info` shows the choice). It ends by printing the k-NN
# accuracy and the run folder. How long it takes on each kind of CPU: README.md.
exec "$BIN" pretrain "${DATA[@]}" --preset simple-sum --arch resnet18 --width 16 \
  --batch 128 --subset 10000 --epochs 2 \
  --out "$ROOT/runs/main-$(date +%Y%m%d-%H%M%S)"
