#!/usr/bin/env bash
# Every test of the workspace. Installs what it needs first (scripts/env.sh). Each stage prints
# its wall time, and the total at the end.
set -euo pipefail
START=$SECONDS
STAGE_START=$SECONDS
STAGE=""
stage() {
  if [ -n "$STAGE" ]; then
    echo "== $STAGE: $((SECONDS - STAGE_START)) s" >&2
  fi
  STAGE="$1"
  STAGE_START=$SECONDS
  [ -n "$STAGE" ] && echo "== $STAGE" >&2
  return 0
}

stage "set-up (the torch wheel, once)"
source "$(dirname "$0")/env.sh"

stage "format and lints (the workspace; the CLI also without torch)"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The CLI's loss, theory and data commands also build without libtorch (a check build: its
# tests are a subset of those run with torch below). `--workspace` keeps the dependencies'
# features, so only the CLI is checked again.
cargo clippy --locked --workspace --no-default-features --all-targets -- -D warnings
# Every test binary in one build of one package set: selecting packages (`-p`) would resolve
# other dependency features and compile the shared dependencies again.
stage "build the tests"
cargo test --locked --workspace --no-run
stage "run the tests (pure crates, engine, CLI)"
cargo test --locked --workspace
# oneDNN takes other kernels on CPUs without AVX-512 (docs/onednn-avx2.md): on a machine with
# AVX-512, the narrow-network training tests run a second time with libtorch held to AVX2, so a
# difference between the kinds of CPU CI lands on shows here first.
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  stage "the narrow-network training tests again, libtorch held to AVX2 (this CPU has AVX-512)"
  ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \
    cargo test --locked --workspace --test default_data --test eval_cli --test pretrain_errors --test resume
else
  stage "the narrow-network training tests under AVX2: already run above (this CPU has no AVX-512)"
fi
# NCCL is compiled only with the cuda feature; on this CPU machine its tests check that it links
# and fails in one line (on a GPU machine they run a world of one on NCCL). `--workspace` with
# one test target keeps the dependencies' features, so only kinfonce-dist is compiled again.
stage "the NCCL build (kinfonce-dist --features cuda)"
cargo test --locked --workspace --features kinfonce-dist/cuda --test two_ranks
# The Python package: built by maturin into the project environment (sharing target/, release
# profile), then its tests (golden values, a PyTorch reference, gradcheck, two processes; the
# two-view loader against `kinfonce data views` of the CLI built above).
stage "the Python package (maturin build, pytest)"
MATURIN_PEP517_ARGS="--locked" pip install --quiet --no-build-isolation --no-deps ./crates/kinfonce-py
KINFONCE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/kinfonce" python -m pytest -q crates/kinfonce-py/tests
stage ""
echo "== all stages: $((SECONDS - START)) s" >&2
