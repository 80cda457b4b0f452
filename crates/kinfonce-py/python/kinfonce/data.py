"""kinfonce.data: SimCLR two-view batches from kinfonce's Rust loader, in place of torchvision
transforms and DataLoader workers.

    from kinfonce.data import TwoViewLoader
    loader = TwoViewLoader("cifar-10-binary.tar.gz", batch_size=256, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for view1, view2, labels in loader:      # (B, C, S, S) each, labels (B,)
            ...

Every view is a pure function of (seed, epoch, image index, view): the views the CLI's
trainer draws, and those `kinfonce data views` writes for chosen indices. See docs/python.md.
"""

from __future__ import annotations

import os
from typing import Iterator, List, Optional, Tuple, Union

import torch
import torch.distributed as dist

from . import _native

AUGMENT_PRESETS: Tuple[str, ...] = tuple(_native.AUGMENT_PRESETS)
FORMATS: Tuple[str, ...] = tuple(_native.DATA_FORMATS)
#: When an image folder is streamed from its files (see ``TwoViewLoader``).
STREAM_MODES: Tuple[str, ...] = ("auto", "always", "never")
DTYPES = {torch.float32: False, torch.bfloat16: True}

Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _check_int(name: str, value, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected at least {minimum}, got {value}")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")


def _shard(rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
    """(rank, world size): as given, else torch.distributed's when initialised, else (0, 1)."""
    if (rank is None) != (world_size is None):
        raise ValueError("rank, world_size: give both or neither (neither: from torch.distributed)")
    if rank is None:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    _check_int("rank", rank, 0)
    _check_int("world_size", world_size, 1)
    if rank >= world_size:
        raise ValueError(f"rank: {rank} is not below world_size {world_size}")
    return rank, world_size


class TwoViewLoader:
    """Two augmented views of every image of a data set's train split, batch after batch.

    Iterating yields ``(view1, view2, labels)``: two float tensors of shape (B, C, S, S)
    (channels-last strides with ``channels_last=True``) and the int64 labels (B,) (0 for
    unlabelled images). Batches are augmented ahead on ``threads`` Rust threads while the
    model runs, and handed over without a copy.

    Data (as ``kinfonce pretrain``): ``path`` is a CIFAR-10/100 archive or folder, an MNIST or
    Fashion-MNIST IDX folder, STL-10, an ImageFolder or the TinyImageNet layout; ``format``
    one of ``kinfonce.data.FORMATS`` when detection from the path is not enough. The train
    split is the official training images minus a seeded class-balanced ``val_fraction``, then
    a class-balanced ``subset`` of that many images; ``image_size`` (H, W) and ``resize`` read
    folders of images of mixed sizes into memory at one size.

    Streaming: with ``stream="auto"`` (default) an image folder whose images differ in size, or
    would take more than 2 GiB decoded, is streamed: only an index of its files is held, and
    each view is decoded from its file on the loader's threads, the random crop drawn on the
    original size and the JPEG decoded at the largest DCT scale (1/2, 1/4, 1/8) that still
    covers the crop at ``size`` (default 224 for streamed folders). ``"always"`` and
    ``"never"`` force the choice. A file that does not decode raises ``ValueError`` naming it.

    Views: ``augment`` is ``"auto"`` (the data set's SimCLR preset: CIFAR and MNIST jitter 0.5
    without blur, STL-10 / TinyImageNet / folders jitter 1.0 with blur, each with its
    normalisation), ``"moco-v2"`` (lightly's MoCo v2 views: crop 0.2-1, jitter 0.4/0.4/0.4/0.1)
    or ``"moco-v2-simclr-views"`` (lightly's before 1.4.24); ``size`` the views' side (default
    the images' larger side). ``seed`` seeds the split, the shuffle and the views; ``set_epoch(e)`` picks the
    epoch (as ``DistributedSampler``: call it before each epoch, or every epoch repeats).

    Batches: ``batch_size`` is the global batch. Under ``torch.distributed`` (or with explicit
    ``rank`` and ``world_size``) each rank gets its own disjoint slice of ``batch_size //
    world_size`` images of every global batch, and the slices of all ranks make the global
    batch; a view does not depend on the number of ranks. ``len(loader)`` is the number of
    batches per epoch (the last incomplete one dropped with ``drop_last``).
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        batch_size: int = 256,
        seed: int = 0,
        augment: str = "auto",
        size: Optional[int] = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        format: Optional[str] = None,
        val_fraction: float = 0.1,
        subset: Optional[int] = None,
        image_size: Optional[Tuple[int, int]] = None,
        resize: bool = False,
        stream: str = "auto",
        shuffle: bool = True,
        drop_last: bool = True,
        threads: int = 2,
        prefetch: int = 2,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a str or a path, got {type(path).__name__}")
        _check_int("batch_size", batch_size, 1)
        _check_int("seed", seed, 0)
        _check_int("size", size, 1, optional=True)
        _check_int("subset", subset, 1, optional=True)
        _check_int("threads", threads, 1)
        _check_int("prefetch", prefetch, 1)
        for name, flag in (("channels_last", channels_last), ("resize", resize), ("shuffle", shuffle), ("drop_last", drop_last)):
            _check_bool(name, flag)
        if stream not in STREAM_MODES:
            raise ValueError(f"stream: {stream!r} is not one of {', '.join(STREAM_MODES)}")
        if not isinstance(augment, str):
            raise TypeError(f"augment: expected a str, got {type(augment).__name__}")
        if augment not in AUGMENT_PRESETS:
            raise ValueError(f"augment: {augment!r} is not one of {', '.join(AUGMENT_PRESETS)}")
        if format is not None and format not in FORMATS:
            raise ValueError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
        if dtype not in DTYPES:
            raise TypeError(f"dtype: expected torch.float32 or torch.bfloat16, got {dtype!r}")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
            raise TypeError(f"val_fraction: expected a float, got {type(val_fraction).__name__}")
        if image_size is not None:
            if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2):
                raise TypeError(f"image_size: expected (height, width), got {image_size!r}")
            for side in image_size:
                _check_int("image_size", side, 1)
            image_size = tuple(image_size)
        rank, world_size = _shard(rank, world_size)
        if batch_size % world_size:
            raise ValueError(
                f"batch_size: the global batch {batch_size} must split evenly over {world_size} ranks"
            )
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.seed = seed
        self.dtype = dtype
        self.channels_last = channels_last
        self.epoch = 0
        self._native = _native.TwoViewLoader(
            os.fspath(path),
            format=format,
            val_fraction=float(val_fraction),
            subset=subset,
            image_size=image_size,
            resize=resize,
            stream=stream,
            augment=augment,
            size=size,
            batch_size=batch_size,
            seed=seed,
            shuffle=shuffle,
            drop_last=drop_last,
            threads=threads,
            prefetch=prefetch,
            channels_last=channels_last,
            bf16=DTYPES[dtype],
            rank=rank,
            world_size=world_size,
        )

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration yields (its shuffle and its views)."""
        _check_int("epoch", epoch, 0)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._native)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[Batch]:
        """The batches of the current epoch from batch ``start`` on (resuming mid-epoch)."""
        _check_int("start", start, 0)
        for buffer, shape, labels in self._native.epoch(self.epoch, start):
            yield self._tensors(buffer, shape, labels)

    def batch_indices(self, batch: int) -> List[int]:
        """This rank's image indices (in the train split) of batch ``batch`` of the current
        epoch: the keys of its views, for ``kinfonce data views --indices``."""
        _check_int("batch", batch, 0)
        return self._native.batch_indices(self.epoch, batch)

    def _tensors(self, buffer, shape, labels) -> Batch:
        # The Rust buffer becomes the tensor's storage (no copy); it lives as long as the tensor.
        flat = torch.frombuffer(buffer, dtype=self.dtype)
        if self.channels_last:
            n, h, w, c = shape
            both = flat.view(n, h, w, c).permute(0, 3, 1, 2)
        else:
            both = flat.view(*shape)
        b = shape[0] // 2
        return both[:b], both[b:], torch.tensor(labels, dtype=torch.int64)

    @property
    def images(self) -> int:
        """Images in the train split (all ranks)."""
        return self._native.images

    @property
    def num_classes(self) -> int:
        return self._native.num_classes

    @property
    def channels(self) -> int:
        return self._native.channels

    @property
    def size(self) -> int:
        """Side of the views in pixels."""
        return self._native.size

    @property
    def format(self) -> str:
        """The format that was read."""
        return self._native.format

    def __repr__(self) -> str:
        return (
            f"TwoViewLoader(format={self.format!r}, images={self.images}, batch_size={self.batch_size}, "
            f"size={self.size}, dtype={self.dtype}, channels_last={self.channels_last}, "
            f"rank={self.rank}, world_size={self.world_size}, epoch={self.epoch})"
        )


def crop_at_decode(
    path: Union[str, os.PathLike], box: Tuple[int, int, int, int], size: int
) -> Tuple[torch.Tensor, int]:
    """The box ``(top, left, height, width)`` (in the image's own pixels) of the JPEG or PNG file
    ``path`` resized to ``size x size`` as a streamed view takes it: decoded at the largest DCT
    scale that still covers the box at ``size``, then resampled (antialiased bilinear).

    Returns ``(image, denominator)``: a float tensor (3, size, size) in [0, 1] (RGB, not
    normalised; EXIF orientation ignored, as torchvision's ``ImageFolder``) and the decode's
    scale denominator (1 for a full decode, else 2, 4 or 8)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or a path, got {type(path).__name__}")
    if not (isinstance(box, (tuple, list)) and len(box) == 4):
        raise TypeError(f"box: expected (top, left, height, width), got {box!r}")
    for v in box:
        _check_int("box", v, 0)
    _check_int("size", size, 1)
    buffer, denominator = _native.crop_at_decode(os.fspath(path), *box, size)
    image = torch.frombuffer(buffer, dtype=torch.float32).view(size, size, 3).permute(2, 0, 1)
    return image, denominator
