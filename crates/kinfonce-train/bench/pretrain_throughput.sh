#!/usr/bin/env bash
# Training throughput, side by side in one invocation: our `kinfonce pretrain` (f32, f32 +
# channels-last, bf16 + channels-last) against the PyTorch reference pipeline
# (../shared/reference/torch_simclr_pipeline.py: official f32, best-effort bf16 + channels-last,
# and both again with --no-aug as the model-only step). Prints one JSON line per run, then a
# table of ratios. Same model (ResNet-18, CIFAR stem), batch 128 pairs, 2 threads.
#
# Usage: crates/kinfonce-train/bench/pretrain_throughput.sh [WIDTH] [STEPS]
# Needs: a release `kinfonce` (cargo build --release -p kinfonce-cli) and torchvision + pillow
# in .venv (pip install --no-cache-dir torchvision==0.26.0 pillow). Run it on a quiet machine:
# ratios taken while other jobs load the cores are noise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
source "$ROOT/scripts/env.sh"
WIDTH="${1:-16}"
STEPS="${2:-12}"
DATA="${DATA:-$ROOT/../shared/data/cifar10/cifar-10-binary.tar.gz}"
REF="${REF:-$ROOT/../shared/reference/torch_simclr_pipeline.py}"
BIN="${KINFONCE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/kinfonce}"
if ! python -c "import torchvision, PIL" 2>/dev/null; then
  echo "the reference needs torchvision: pip install --no-cache-dir torchvision==0.26.0 pillow" >&2
  exit 1
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
LINES="$OUT/lines.jsonl"
for mode in "f32" "f32 --channels-last" "bf16 --channels-last"; do
  # shellcheck disable=SC2086
  "$BIN" pretrain --data "$DATA" --arch resnet18 --width "$WIDTH" --batch 128 --max-steps "$STEPS" \
    --subset 5000 --threads 2 --precision $mode --knn-every 0 --log-every 1 --checkpoint-minutes 0 \
    --out "$OUT/run-$RANDOM" --json 2>/dev/null | tail -1 |
    python -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'impl':'kinfonce','mode':'$mode','width':$WIDTH,'model_step_views_per_s':round(d['views_per_s'],1),'end_to_end_views_per_s':round(d['views_per_s_end_to_end'],1)}))" |
    tee -a "$LINES"
done
for flags in "" "--channels-last --bf16" "--no-aug" "--no-aug --channels-last --bf16"; do
  # shellcheck disable=SC2086
  python "$REF" --data "$DATA" --width "$WIDTH" --batch 128 --steps "$STEPS" --warmup 2 --workers 2 \
    --threads 2 $flags 2>/dev/null | tail -1 | tee -a "$LINES"
done
python - "$LINES" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ours = {r["mode"]: r for r in rows if r["impl"] == "kinfonce"}
ref = {(r["augment"], r["bf16"]): r["images_per_s"] for r in rows if r["impl"] != "kinfonce"}
official, best = ref[(True, False)], ref[(True, True)]
print(f"\nwidth {rows[0]['width']}: views/s (x official pipeline {official}, x best-effort bf16+CL pipeline {best})")
print(f"reference model-only: f32 {ref[(False, False)]}, bf16+CL {ref[(False, True)]}")
for mode, r in ours.items():
    e2e, step = r["end_to_end_views_per_s"], r["model_step_views_per_s"]
    print(f"kinfonce {mode:22s} end-to-end {e2e:7.1f} ({e2e / official:.2f}x official, {e2e / best:.2f}x best-effort)"
          f"  model step {step:7.1f}  input pipeline cost {100 * (1 - e2e / step):.1f}%")
EOF
