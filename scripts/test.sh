#!/usr/bin/env bash
# Every test of the workspace. Installs what it needs first (scripts/env.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"

echo "== format and lints" >&2
cargo fmt --all -- --check
# The pure crates first, so their failures show even when libtorch is the problem.
PURE=(-p kinfonce-loss -p kinfonce-graph -p kinfonce-data)
cargo clippy --locked "${PURE[@]}" --all-targets -- -D warnings
echo "== pure crates" >&2
cargo test --locked "${PURE[@]}"
echo "== the CLI without torch" >&2
cargo test --locked -p kinfonce-cli --no-default-features
echo "== the whole workspace (libtorch)" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace
