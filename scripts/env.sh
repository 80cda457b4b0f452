# Sourced by the other scripts: one project-local Python environment holding the
# torch==2.11.0 wheel that tch 0.24 binds to, and the variables torch-sys needs.
# Idempotent: a second run only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TORCH_VERSION="2.11.0"

if ! command -v cargo >/dev/null; then
  echo "kinfonce: cargo not found; install the Rust toolchain 1.95.0 (rustup)" >&2
  exit 1
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "kinfonce: creating the project environment $VENV" >&2
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    if command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
    fi
    "$PYTHON" -m venv "$VENV"
  fi
fi
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  # The wheel and its CUDA libraries unpack to about 5 GB, and pip needs room for the
  # downloads beside them; say so plainly rather than fail half-way with ENOSPC.
  free_kb="$(df -Pk "$ROOT" | awk 'NR==2 {print $4}')"
  if [ "${free_kb:-0}" -lt $((9 * 1024 * 1024)) ]; then
    echo "kinfonce: installing torch==$TORCH_VERSION needs about 9 GB free on the disk holding $ROOT;" \
      "only $((free_kb / 1024 / 1024)) GB are free. Free some space (old cargo target folders are the usual culprit) and rerun." >&2
    exit 1
  fi
  echo "kinfonce: installing torch==$TORCH_VERSION into $VENV (about 5 GB, once)" >&2
  "$VENV/bin/pip" install --no-cache-dir --quiet "torch==$TORCH_VERSION" "numpy<2.4"
fi
# Triton 3.6's interpreter (the Triton kernels' tests without a GPU) calls int() on one-element
# arrays, which numpy 2.4 refuses (triton-lang/triton#9171, fixed after 3.6).
if ! "$VENV/bin/python" -c "import numpy, sys; sys.exit(tuple(map(int, numpy.__version__.split('.')[:2])) >= (2, 4))" 2>/dev/null; then
  echo "kinfonce: installing numpy<2.4 for Triton's interpreter" >&2
  "$VENV/bin/pip" install --no-cache-dir --quiet "numpy<2.4"
fi

# The CUDA headers the wheel leaves out, for building NCCL into kinfonce-dist (`--features
# cuda`); about 30 MB, headers only.
if [ ! -f "$VENV/lib/python3"*/site-packages/nvidia/cu13/include/crt/host_config.h ] ||
  [ ! -d "$VENV/lib/python3"*/site-packages/nvidia/cu13/include/cccl ]; then
  echo "kinfonce: installing the CUDA headers for the NCCL build" >&2
  "$VENV/bin/pip" install --no-cache-dir --quiet --no-deps "nvidia-cuda-crt==13.0.88" "nvidia-cuda-cccl==13.0.85"
fi

# The Python package's build and test tools (scripts/test.sh builds `kinfonce` with maturin;
# the loader's tests read `kinfonce data views` files with safetensors).
if ! "$VENV/bin/python" -c "import maturin, pytest, safetensors" 2>/dev/null; then
  echo "kinfonce: installing maturin, pytest and safetensors into $VENV" >&2
  "$VENV/bin/pip" install --no-cache-dir --quiet "maturin>=1.9,<2" "pytest>=8" "safetensors>=0.4"
fi

# torchvision for the streamed loader's comparison tests and bench/streaming.py (its release
# that matches torch 2.11.0; without dependencies, so pip never swaps the torch wheel).
if ! "$VENV/bin/python" -c "import torchvision, sys; sys.exit(torchvision.__version__.split('+')[0] != '0.26.0')" 2>/dev/null; then
  echo "kinfonce: installing torchvision==0.26.0 into $VENV" >&2
  "$VENV/bin/pip" install --no-cache-dir --quiet --no-deps "torchvision==0.26.0" "pillow>=10"
fi

# libjpeg-turbo's TurboJPEG API: streamed JPEG folders decode at the scale their crop needs
# (kinfonce-data's `turbojpeg` feature, found with pkg-config).
if ! pkg-config --exists libturbojpeg 2>/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "kinfonce: installing libturbojpeg0-dev and pkg-config" >&2
    apt-get update -qq && apt-get install -y -qq libturbojpeg0-dev pkg-config >/dev/null
  else
    echo "kinfonce: libturbojpeg (libjpeg-turbo's TurboJPEG API, >= 2.0) and pkg-config are needed;" \
      "install them, or build with --no-default-features" >&2
    exit 1
  fi
fi

# The search engine of `kinfonce search` (its driver runs in this environment; SQLite and the
# journal file need nothing more).
if ! "$VENV/bin/python" -c "import optuna, sys; sys.exit(optuna.__version__ != '4.6.0')" 2>/dev/null; then
  echo "kinfonce: installing optuna into $VENV" >&2
  "$VENV/bin/pip" install --no-cache-dir --quiet "optuna==4.6.0"
fi

# torch-sys finds Python as `python` when VIRTUAL_ENV is set.
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK=0
# Two cores: libtorch's OpenMP threads must not spin against rayon.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cd "$ROOT"
