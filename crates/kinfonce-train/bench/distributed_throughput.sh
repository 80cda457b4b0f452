#!/usr/bin/env bash
# Data parallelism on one machine, side by side in one invocation: `kinfonce pretrain` as one
# process with all the threads against N processes (`--nproc-per-node N`) sharing them, at the
# same global batch. Prints, per configuration, the median step's views/s (metrics.jsonl, loader
# wait included) and the share of rank 0's step time spent inside collectives (waiting for the
# other ranks included), as one JSON line each.
#
# The configurations run in ROUNDS interleaved rounds (a shared VM drifts by 10-20% over
# minutes); compare the medians over rounds.
#
# Usage: crates/kinfonce-train/bench/distributed_throughput.sh [WIDTHS] [STEPS] [ROUNDS] [PROCS]
#   e.g. distributed_throughput.sh "16 64" 12 2 2
# Needs a release `kinfonce` (cargo build --release -p kinfonce-cli) and CIFAR-10 ($DATA).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
source "$ROOT/scripts/env.sh"
WIDTHS="${1:-16 64}"
STEPS="${2:-12}"
ROUNDS="${3:-2}"
PROCS="${4:-2}"
DATA="${DATA:-$ROOT/../shared/data/cifar10/cifar-10-binary.tar.gz}"
BIN="${KINFONCE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/kinfonce}"
THREADS="$(nproc)"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for round in $(seq "$ROUNDS"); do
  for width in $WIDTHS; do
    for procs in 1 "$PROCS"; do
      run="$OUT/run-$round-$width-$procs"
      launch=()
      [ "$procs" -gt 1 ] && launch=(--nproc-per-node "$procs")
      "$BIN" pretrain "${launch[@]}" --data "$DATA" --arch resnet18 --width "$width" \
        --batch "$((128 / procs))" --max-steps "$((STEPS + 2))" --subset 5000 \
        --threads "$THREADS" --knn-every 0 --log-every 1 --checkpoint-minutes 0 --out "$run" \
        --json 2>/dev/null | tail -1 |
        python -c "
import json, statistics, sys
d = json.load(sys.stdin)
steps = [json.loads(l) for l in open('$run/metrics.jsonl')]
steps = [s['views_per_s'] for s in steps if s['kind'] == 'step'][2:]
print(json.dumps({'round': $round, 'width': $width, 'processes': $procs,
                  'threads_per_process': max(1, $THREADS // $procs),
                  'median_step_views_per_s': round(statistics.median(steps), 1),
                  'communicating_share': round(d['communicating_share'], 3)}))"
      rm -rf "$run"
    done
  done
done
"$BIN" info --json | tail -1 | python -c "
import json, sys
d = json.load(sys.stdin)
print(json.dumps({'cpu': d.get('cpu', {}).get('model', '?')}))" || true
