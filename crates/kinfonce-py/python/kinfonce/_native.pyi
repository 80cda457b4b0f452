"""Type stubs of the native module `kinfonce._native` (Rust, pyo3): the loss engine itself.

Use :class:`kinfonce.KernelInfoNCE` instead; this is its back end.
"""

from typing import List, Optional, Sequence, Tuple

PRESETS: List[str]

class Loss:
    """A loss description, checked when built (ValueError naming the parameter).

    Exactly one of: ``preset``; ``gamma`` and ``tau`` (one kernel exp(-||x - y||_p^gamma / tau),
    ``p`` one of "1", "2", "inf"); ``spec`` (kinfonce-loss's LossSpec as JSON).
    """

    def __init__(
        self,
        *,
        preset: Optional[str] = None,
        gamma: Optional[float] = None,
        tau: Optional[float] = None,
        p: Optional[str] = None,
        spec: Optional[str] = None,
    ) -> None: ...
    def spec_json(self, dim: int) -> str:
        """The loss as kinfonce-loss JSON for embeddings of width ``dim``."""
    def compute(
        self,
        pairing: str,
        inputs: Sequence[object],
        grads: Sequence[object],
        names: Sequence[str],
        local_rows: Optional[Tuple[int, int]] = None,
    ) -> float:
        """Mean loss over the anchors; writes d loss / d input into ``grads``.

        ``pairing``: "simclr" (z1, z2: B x d), "moco" (q, k: B x d, queue: K x d), "clip"
        (a, b: B x d) or "gathered" (z1_all, z2_all: B_total x d; with ``local_rows`` =
        (offset, count) this rank's anchors are the rows ``offset .. offset + count`` of both). ``inputs`` and ``grads``: C-contiguous 2-D
        float32 or float64 buffers (``tensor.numpy()``), all of one dtype, ``grads`` writable
        and shaped like ``inputs``. ``names`` name the inputs in error messages.
        Raises ValueError (bad shape or parameter, non-finite input), TypeError (dtype) and
        RuntimeError (an internal error of the engine, naming ``kinfonce.kernel_infonce``).
        """

def _panic_for_test() -> None: ...
