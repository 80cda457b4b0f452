#!/usr/bin/env bash
# Training throughput, side by side in one invocation: our `kinfonce pretrain` (f32 and
# bf16 + channels-last) against the PyTorch reference pipeline (../shared/reference/).
# Usage: crates/kinfonce-train/bench/pretrain_throughput.sh [WIDTH] [STEPS]
# Needs: a built `kinfonce` (cargo build -p kinfonce-cli), torchvision + pillow in .venv for
# the reference. Run on a quiet machine: ratios taken while other jobs load the cores are noise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
source "$ROOT/scripts/env.sh"
WIDTH="${1:-16}"
STEPS="${2:-12}"
DATA="${DATA:-$ROOT/../shared/data/cifar10/cifar-10-binary.tar.gz}"
REF="${REF:-$ROOT/../shared/reference/torch_simclr_pipeline.py}"
BIN="${KINFONCE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/kinfonce}"
OUT="$(mktemp -d)"
export OMP_WAIT_POLICY=PASSIVE
for mode in "f32" "bf16 --channels-last"; do
  set -- $mode
  "$BIN" pretrain --data "$DATA" --arch resnet18 --width "$WIDTH" --batch 128 --max-steps "$STEPS" \
    --subset 5000 --threads 2 --precision "$@" --knn-every 0 --log-every 1 --checkpoint-minutes 0 \
    --out "$OUT/$1$#" --json 2>/dev/null | tail -1 |
    python -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'impl':'kinfonce','mode':'$mode','width':$WIDTH,'model_step_views_per_s':round(d['views_per_s'],1),'end_to_end_views_per_s':round(d['views_per_s_end_to_end'],1),'final_loss':round(d['final_loss'],4)}))"
done
if python -c "import torchvision, PIL" 2>/dev/null; then
  for flags in "" "--channels-last --bf16"; do
    python "$REF" --data "$DATA" --width "$WIDTH" --batch 128 --steps "$STEPS" --warmup 2 --workers 2 --threads 2 $flags
  done
else
  echo "reference skipped: pip install --no-cache-dir torchvision==0.26.0 pillow" >&2
fi
rm -rf "$OUT"
