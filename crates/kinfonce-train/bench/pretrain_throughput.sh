#!/usr/bin/env bash
# Training throughput, side by side in one invocation: our `kinfonce pretrain` (what
# `--precision auto` picks on this machine, f32, f32 + channels-last, bf16 + channels-last)
# against the PyTorch reference pipeline (bench/reference/torch_simclr_pipeline.py: official
# f32, best-effort bf16 + channels-last, and both again with --no-aug as the model-only step).
# Same model (ResNet-18, CIFAR stem), batch 128 pairs, 2 threads. It prints the CPU, its
# instruction sets and what auto picks beside the measured views/s of every mode.
#
# A shared 2-core VM drifts by 10-20% over minutes, so the seven configurations run in ROUNDS
# interleaved rounds and every figure is the median over rounds. Within a run both sides report
# the median step after 2 warm-up steps (the reference's own statistic); ours comes from the
# per-step `views_per_s` lines of metrics.jsonl (end to end: loader wait included).
#
# Usage: crates/kinfonce-train/bench/pretrain_throughput.sh [WIDTH] [STEPS] [ROUNDS]
# Needs: a release `kinfonce` (cargo build --release -p kinfonce-cli) and torchvision + pillow
# in .venv (pip install --no-cache-dir torchvision==0.26.0 pillow). Run it on a quiet machine:
# ratios taken while other jobs load the cores are noise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
source "$ROOT/scripts/env.sh"
WIDTH="${1:-16}"
STEPS="${2:-12}"
ROUNDS="${3:-3}"
DATA="${DATA:-$ROOT/../shared/data/cifar10/cifar-10-binary.tar.gz}"
REF="${REF:-$ROOT/bench/reference/torch_simclr_pipeline.py}"
BIN="${KINFONCE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/kinfonce}"
if ! python -c "import torchvision, PIL" 2>/dev/null; then
  echo "the reference needs torchvision: pip install --no-cache-dir torchvision==0.26.0 pillow" >&2
  exit 1
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
LINES="$OUT/lines.jsonl"
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  for mode in "auto" "f32 --channels-last=false" "f32 --channels-last" "bf16 --channels-last"; do
    run="$OUT/run-$round-${mode//[ =]/}"
    # shellcheck disable=SC2086
    "$BIN" pretrain --data "$DATA" --arch resnet18 --width "$WIDTH" --batch 128 \
      --max-steps "$((STEPS + 2))" --subset 5000 --threads 2 --precision $mode --knn-every 0 \
      --log-every 1 --checkpoint-minutes 0 --out "$run" --json 2>/dev/null | tail -1 |
      python -c "
import json, statistics, sys
d = json.load(sys.stdin)
steps = [json.loads(l) for l in open('$run/metrics.jsonl')]
steps = [s['views_per_s'] for s in steps if s['kind'] == 'step'][2:]  # docs/run-folder.md
print(json.dumps({'impl': 'kinfonce', 'mode': '$mode', 'width': $WIDTH, 'round': $round,
                  'median_step_views_per_s': round(statistics.median(steps), 1),
                  'model_step_views_per_s': round(d['views_per_s'], 1),
                  'end_to_end_views_per_s': round(d['views_per_s_end_to_end'], 1)}))" |
      tee -a "$LINES"
    rm -rf "$run"
  done
  for flags in "" "--channels-last --bf16" "--no-aug" "--no-aug --channels-last --bf16"; do
    # shellcheck disable=SC2086
    python "$REF" --data "$DATA" --width "$WIDTH" --batch 128 --steps "$STEPS" --warmup 2 \
      --workers 2 --threads 2 $flags 2>/dev/null | tail -1 | tee -a "$LINES"
  done
done
"$BIN" info --json | tail -1 >"$OUT/info.json"
python - "$LINES" "$OUT/info.json" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
info = json.load(open(sys.argv[2]))
cpu, auto = info["cpu"], info["auto"]["cpu"]
flags = [n for n in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if cpu[n]]
print(f"\nCPU: {cpu['model']} ({', '.join(flags)}), {info['cores']} cores")
print(f"auto picks: {auto['precision']}{' + channels-last' if auto['channels_last'] else ''} ({auto['reason']})")
med = lambda xs: round(statistics.median(xs), 1)
ours = {}
for r in (r for r in rows if r["impl"] == "kinfonce"):
    ours.setdefault(r["mode"], []).append(r)
ref = {}
for r in (r for r in rows if r["impl"] != "kinfonce"):
    ref.setdefault((r["augment"], r["bf16"]), []).append(r["images_per_s"])
ref = {k: med(v) for k, v in ref.items()}
official, best = ref[(True, False)], ref[(True, True)]
rounds = len(next(iter(ours.values())))
print(f"\nwidth {rows[0]['width']}, medians over {rounds} round(s), views/s")
print(f"reference: official pipeline {official}, best-effort bf16+CL pipeline {best}, "
      f"model-only f32 {ref[(False, False)]}, model-only bf16+CL {ref[(False, True)]}")
fastest = max(ours, key=lambda m: med([r["median_step_views_per_s"] for r in ours[m]]))
for mode, rs in ours.items():
    e2e = med([r["median_step_views_per_s"] for r in rs])
    cost = med([100 * (1 - r["end_to_end_views_per_s"] / r["model_step_views_per_s"]) for r in rs])
    print(f"kinfonce {mode:22s} {e2e:7.1f}  {e2e / official:.2f}x official  {e2e / best:.2f}x best-effort"
          f"  (per round: {', '.join(str(r['median_step_views_per_s']) for r in rs)};"
          f" input pipeline cost {cost:.1f}% of the step){'  <- fastest' if mode == fastest else ''}")
auto_vps = med([r["median_step_views_per_s"] for r in ours["auto"]])
best_vps = med([r["median_step_views_per_s"] for r in ours[fastest]])
print(f"auto reached {auto_vps / best_vps:.2f}x the fastest mode ({fastest})")
EOF
