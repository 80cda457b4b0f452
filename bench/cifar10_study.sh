#!/usr/bin/env bash
# The powered CIFAR-10 kernel study (docs/results/cifar10-study/): horizon A (5 epochs, gaussian,
# laplacian and simple-sum, seeds 0-9), then horizon B (30 epochs, gaussian and simple-sum,
# seeds 0-2). One `compare` per seed, so a study stopped at any point holds whole seeds of every
# kernel; `compare` skips finished runs, so running this again continues where it stopped.
#
#   bash bench/cifar10_study.sh BINARY DATA OUT     # train and evaluate what is missing
#   bash bench/cifar10_study.sh --save OUT KEEP      # copy finished runs' records to KEEP
#
# BINARY is one pinned `kinfonce` (every run of the study from the same build), DATA the
# CIFAR-10 binary archive, OUT the folder of both horizons (OUT/a, OUT/b). Runs at the lowest
# CPU priority, so it only takes what other work leaves.
#
# The study outlives one machine: `--save` copies each finished and evaluated run's
# config.toml, metrics.jsonl and eval-*.json (not its weights) into KEEP, which is committed;
# a later sitting copies KEEP back into a fresh OUT and runs the study again, and `compare`
# counts those weightless runs as done.
set -euo pipefail
if [ "${1:-}" = --save ]; then
  OUT="$2" KEEP="$3"
  for eval in "$OUT"/*/runs/*/eval-linear.json; do
    run="$(dirname "$eval")"
    dest="$KEEP/${run#"$OUT"/}"
    mkdir -p "$dest"
    cp "$run"/config.toml "$run"/metrics.jsonl "$run"/eval-*.json "$dest"/
  done
  exit 0
fi
BIN="$1" DATA="$2" OUT="$3"
COMMON=(--subset 10000 --arch resnet18 --width 16 --batch 128 --precision f32 --channels-last
  --threads 2 --data "$DATA")
export OMP_WAIT_POLICY=PASSIVE
for seed in 0 1 2 3 4 5 6 7 8 9; do
  nice -n 19 "$BIN" compare --kernels gaussian,laplacian,simple-sum --seeds "$seed" --epochs 5 \
    "${COMMON[@]}" --out "$OUT/a"
done
for seed in 0 1 2; do
  nice -n 19 "$BIN" compare --kernels gaussian,simple-sum --seeds "$seed" --epochs 30 \
    "${COMMON[@]}" --out "$OUT/b"
done
