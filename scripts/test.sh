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

stage "format and lints of the pure crates"
cargo fmt --all -- --check
# The pure crates first, so their failures show even when libtorch is the problem.
PURE=(-p kinfonce-loss -p kinfonce-graph -p kinfonce-data)
cargo clippy --locked "${PURE[@]}" --all-targets -- -D warnings
stage "pure crates"
cargo test --locked "${PURE[@]}"
stage "the CLI without torch"
cargo test --locked -p kinfonce-cli --no-default-features
stage "lints of the whole workspace (libtorch)"
cargo clippy --locked --workspace --all-targets -- -D warnings
stage "tests of the whole workspace (libtorch)"
cargo test --locked --workspace
stage ""
echo "== all stages: $((SECONDS - START)) s" >&2
