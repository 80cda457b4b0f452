"""kinfonce: the exact Kernel-InfoNCE losses (Tan et al., "Contrastive Learning Is Spectral
Clustering On Similarity Graph", ICLR 2024) for PyTorch: kinfonce's fused Rust engine on the CPU,
fused Triton kernels and an exact tiled path in torch operations on GPUs.

    import kinfonce
    loss_fn = kinfonce.KernelInfoNCE("laplacian")       # or gamma=1.0, tau=0.2, p=2
    loss = loss_fn(z1, z2)                              # z1, z2: (B, d)
    loss.backward()

K(x, y) = exp(-||x - y||_p^gamma / tau); see :class:`KernelInfoNCE` and docs/python.md.

:mod:`kinfonce.data` feeds a training loop two augmented views per image from the Rust loader
(:class:`kinfonce.data.TwoViewLoader`), in place of torchvision transforms in DataLoader workers.
"""

from . import data
from ._engine import ENGINES
from ._loss import PAIRINGS, PRESETS, KernelInfoNCE, kernel_infonce, last_engine

__all__ = ["KernelInfoNCE", "kernel_infonce", "last_engine", "PRESETS", "PAIRINGS", "ENGINES", "data"]
__version__ = "0.1.0"
