"""Which engine computes a loss: one rule, a function of the tensors' device, whether the Triton
kernels cover the loss, whether Triton can run here, and the engine asked for."""

from __future__ import annotations

import importlib.util
import os

ENGINES = ("auto", "native", "torch", "triton")

# What the Triton kernels cover, for the error that refuses the rest.
TRITON_COVERS = (
    "exponential kernels with p = 2, one-softmax mixtures of them and sums or Concatenation "
    "Sums of those, on float32, float16 or bfloat16 inputs"
)


def triton_available() -> bool:
    """Triton is installed (found without importing it: importing reads TRITON_INTERPRET)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """TRITON_INTERPRET=1: Triton runs its kernels on the CPU (numpy), slowly but as written."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def choose_engine(
    asked: str, device: str, triton_covers: bool, triton_available: bool, interpreted: bool
) -> str:
    """The engine that runs: "native" (the fused Rust engine, CPU tensors only), "torch" (the
    exact tiled path in torch operations, any device) or "triton" (fused kernels on CUDA, or on
    the CPU under TRITON_INTERPRET=1).

    "auto" takes the native engine for CPU tensors (the fastest there), Triton for CUDA tensors
    when its kernels cover the loss, the tiled path otherwise. An explicit engine that cannot
    run raises ValueError saying why.
    """
    if asked not in ENGINES:
        raise ValueError(f"engine: {asked!r} is not one of {', '.join(ENGINES)}")
    triton_here = device == "cuda" or (device == "cpu" and interpreted)
    if asked == "auto":
        if device == "cpu":
            return "native"
        if device == "cuda" and triton_available and triton_covers:
            return "triton"
        return "torch"
    if asked == "native" and device != "cpu":
        raise ValueError(
            f"engine: 'native' runs on CPU tensors, the inputs are on {device}; "
            "use engine='auto' or 'torch'"
        )
    if asked == "triton":
        if not triton_available:
            raise ValueError("engine: 'triton' needs the triton package, which is not installed")
        if not triton_here:
            raise ValueError(
                f"engine: 'triton' runs on cuda tensors (or on cpu under TRITON_INTERPRET=1), "
                f"the inputs are on {device}"
            )
        if not triton_covers:
            raise ValueError(
                f"engine: 'triton' covers {TRITON_COVERS}; use engine='torch' for this loss"
            )
    return asked
