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

# --- the two-view loader (kinfonce.data) -------------------------------------------------------

AUGMENT_PRESETS: List[str]
DATA_FORMATS: List[str]

class BatchBuffer:
    """One batch's pixels, lent through the buffer protocol (1-D float32, or bfloat16 as
    uint16); ``torch.frombuffer(buffer, dtype=...)`` wraps it without a copy."""

    dtype: str
    def __len__(self) -> int: ...

class Epoch:
    """The batches of one epoch, built ahead; dropping it stops the producer."""

    def __iter__(self) -> "Epoch": ...
    def __next__(self) -> Tuple[BatchBuffer, Tuple[int, int, int, int], List[int]]:
        """(buffer, memory shape [2B, C, S, S] or [2B, S, S, C], labels of the B images)."""
    def __len__(self) -> int: ...

class TwoViewLoader:
    """kinfonce-data's ContrastiveLoader over the train split (see kinfonce.data.TwoViewLoader,
    which checks the arguments' types; this raises ValueError naming a bad value)."""

    images: int
    num_classes: int
    channels: int
    size: int
    format: str
    def __init__(
        self,
        path: str,
        *,
        format: Optional[str],
        val_fraction: float,
        subset: Optional[int],
        image_size: Optional[Tuple[int, int]],
        resize: bool,
        stream: str,
        augment: str,
        size: Optional[int],
        batch_size: int,
        seed: int,
        shuffle: bool,
        drop_last: bool,
        threads: int,
        prefetch: int,
        channels_last: bool,
        bf16: bool,
        rank: int,
        world_size: int,
    ) -> None: ...
    def __len__(self) -> int: ...
    def epoch(self, epoch: int, start: int = 0) -> Epoch: ...
    def batch_indices(self, epoch: int, batch: int) -> List[int]: ...

def crop_at_decode(
    path: str, top: int, left: int, height: int, width: int, size: int
) -> Tuple[BatchBuffer, int]:
    """kinfonce-data's crop_at_decode: the box resampled to size x size (f32 HWC RGB in [0, 1])
    as a streamed view takes it, and the decode's scale denominator."""
