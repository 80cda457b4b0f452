"""Streamed image folders: the crop taken at decode against torchvision, the loader over a
folder of mixed sizes, sharding by rank, and a damaged file named in one error.

The images are written here with a fixed seed: textured, noisy JPEGs (quality 90) of odd sizes,
a grayscale JPEG and a PNG.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import torchvision.transforms.functional as F

from kinfonce.data import TwoViewLoader, crop_at_decode

# Tolerance against torchvision's resized_crop of the full decode on the same box, in [0, 1]
# units. A full decode (denominator 1) is the same to 1e-4. A scaled decode: mean |difference|
# below 0.008 (2 levels of 255) and every pixel within 0.05; the DCT scaling averages 2x2 to 8x8
# blocks where the full-size antialiased resize weighs them with its triangle filter, so the two
# differ a little on edges and noise (measured: mean 0.002-0.005, max 0.011-0.033).
MEAN_TOL, MAX_TOL, FULL_TOL = 0.008, 0.05, 1e-4


def photo(w: int, h: int, seed: int, gray: bool = False) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for c in range(1 if gray else 3):
        tex = np.sin(x * 0.21 + c) * np.cos(y * 0.17) * 40
        v = 60 + 120 * (x / w) * (1 - y / h) + 50 * (y / h) + tex + rng.uniform(-25, 25, (h, w))
        chans.append(np.clip(v, 0, 255).astype(np.uint8))
    if gray:
        return Image.fromarray(chans[0], mode="L")
    return Image.fromarray(np.stack(chans, axis=-1), mode="RGB")


def save(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        img.save(path)
    else:
        img.save(path, quality=90)
    return path


def full_decode(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return F.to_tensor(im.convert("RGB"))


@pytest.mark.parametrize(
    "w,h,gray,ext",
    [(1203, 901, False, "jpg"), (517, 389, False, "jpg"), (811, 1299, True, "jpg"), (401, 353, False, "png")],
)
def test_a_crop_at_decode_matches_torchvision_resized_crop_of_the_full_decode(tmp_path, w, h, gray, ext):
    path = save(photo(w, h, seed=w, gray=gray), tmp_path / f"img.{ext}")
    full = full_decode(path)
    size = 64
    boxes = [(0, 0, h, w), (37, 51, 301, 283), (101, 9, 150, 211), (3, 5, 70, 60)]
    denominators = []
    for top, left, bh, bw in boxes:
        got, d = crop_at_decode(path, (top, left, bh, bw), size)
        denominators.append(d)
        want = F.resized_crop(full, top, left, bh, bw, [size, size], antialias=True)
        diff = (got - want).abs()
        mean_tol, max_tol = (MEAN_TOL, MAX_TOL) if d > 1 else (FULL_TOL, FULL_TOL)
        assert diff.mean() < mean_tol and diff.max() < max_tol, (
            f"{w}x{h} box {(top, left, bh, bw)} at 1/{d}: mean {diff.mean():.4f} max {diff.max():.4f}"
        )
    if ext == "png":
        assert denominators == [1, 1, 1, 1], "a PNG decodes at full size"
    else:
        assert 1 in denominators and max(denominators) >= 4, denominators


@pytest.fixture()
def mixed_folder(tmp_path):
    sizes = [(517, 389), (301, 257), (640, 480), (233, 611), (1001, 750), (350, 500)]
    for c, name in enumerate(["cat", "dog"]):
        for i, (w, h) in enumerate(sizes):
            ext = "png" if i == 1 else "jpg"
            save(photo(w, h, seed=10 * c + i, gray=(i == 3)), tmp_path / name / f"{i}.{ext}")
    return tmp_path


def test_the_loader_streams_a_folder_of_mixed_sizes_sharded_by_rank(mixed_folder):
    common = dict(batch_size=4, size=32, val_fraction=0.0, seed=3, threads=2)
    whole = TwoViewLoader(mixed_folder, **common)
    assert (whole.images, whole.num_classes, whole.size, whole.channels) == (12, 2, 32, 3)
    assert len(whole) == 3
    batches = list(whole)
    v1, v2, labels = batches[0]
    assert v1.shape == (4, 3, 32, 32) and v2.shape == (4, 3, 32, 32)
    assert torch.isfinite(v1).all() and not torch.equal(v1, v2)
    assert set(labels.tolist()) <= {0, 1}
    # Two ranks: disjoint halves of every global batch, each view the same as unsharded.
    ranks = [TwoViewLoader(mixed_folder, rank=r, world_size=2, **common) for r in range(2)]
    halves = [next(iter(r)) for r in ranks]
    assert torch.equal(torch.cat([halves[0][0], halves[1][0]]), v1)
    assert torch.equal(torch.cat([halves[0][1], halves[1][1]]), v2)
    idx = [r.batch_indices(0) for r in ranks]
    assert not set(idx[0]) & set(idx[1])
    with pytest.raises(ValueError, match="stream"):
        TwoViewLoader(mixed_folder, stream="sometimes", **common)


def test_a_truncated_jpeg_is_one_error_naming_it(mixed_folder):
    victim = mixed_folder / "dog" / "2.jpg"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    loader = TwoViewLoader(mixed_folder, batch_size=12, size=32, val_fraction=0.0)
    with pytest.raises(ValueError, match=r"dog.2\.jpg"):
        list(loader)
