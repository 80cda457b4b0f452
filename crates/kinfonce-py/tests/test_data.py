"""kinfonce.data: the Python loader yields the views `kinfonce data views` writes for the same
seed, epoch and image indices, in every format kinfonce-data reads; ranks get disjoint slices
whose union is the global batch; mistakes raise ValueError / TypeError naming the argument."""

import gzip
import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import kinfonce.data
from kinfonce.data import TwoViewLoader

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data"
CIFAR10 = SHARED / "cifar10" / "cifar-10-binary.tar.gz"
MNIST = SHARED / "mnist"


@pytest.fixture(scope="session")
def cli():
    """The `kinfonce` binary: $KINFONCE_BIN (scripts/test.sh sets it), else the test build's."""
    given = os.environ.get("KINFONCE_BIN")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = Path(given) if given else target / "debug" / "kinfonce"
    if not path.is_file():
        if given:
            pytest.fail(f"KINFONCE_BIN={given} is not a file")
        pytest.skip(f"no kinfonce binary at {path} (build it, or set KINFONCE_BIN)")
    return path


def cli_views(cli, tmp_path, data, seed, epoch, indices, *flags):
    out = tmp_path / f"views-{seed}-{epoch}.safetensors"
    args = [str(cli), "data", "views", str(data), "--seed", str(seed), "--epoch", str(epoch),
            "--indices", ",".join(map(str, indices)), "--out", str(out), *flags]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return load_file(str(out))


# --- small data sets in each layout, written here -----------------------------------------------

def pixels(n, h, w, c, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def write_png(path, image):
    """An 8-bit RGB PNG (stdlib zlib; no imaging library needed)."""
    h, w, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def cifar100(root):
    folder = root / "cifar-100-binary"
    folder.mkdir()
    images = pixels(40, 32, 32, 3, 1)
    records = b"".join(bytes([i % 20, i % 100]) + img.transpose(2, 0, 1).tobytes() for i, img in enumerate(images))
    (folder / "train.bin").write_bytes(records)
    (folder / "fine_label_names.txt").write_text("".join(f"class{i}\n" for i in range(100)))
    return folder


def fashion_mnist(root):
    folder = root / "fashion-mnist"
    folder.mkdir()
    images = pixels(40, 28, 28, 1, 2)
    labels = np.arange(40, dtype=np.uint8) % 10
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, 40, 28, 28) + images.tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, 40) + labels.tobytes())
    return folder


def stl10(root):
    folder = root / "stl10_binary"
    folder.mkdir()
    images = pixels(20, 96, 96, 3, 3)
    # Planes per channel, each column-major.
    (folder / "train_X.bin").write_bytes(images.transpose(0, 3, 2, 1).tobytes())
    (folder / "train_y.bin").write_bytes(bytes(1 + i % 10 for i in range(20)))
    return folder


def image_folder(root):
    folder = root / "pets"
    for k, name in enumerate(["cat", "dog", "fox"]):
        (folder / name).mkdir(parents=True)
        for i, img in enumerate(pixels(8, 20, 20, 3, 10 + k)):
            write_png(folder / name / f"{i}.png", img)
    return folder


def tiny_imagenet(root):
    folder = root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    for k, wnid in enumerate(wnids):
        (folder / "train" / wnid / "images").mkdir(parents=True)
        for i, img in enumerate(pixels(10, 64, 64, 3, 20 + k)):
            write_png(folder / "train" / wnid / "images" / f"{wnid}_{i}.png", img)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    return folder


FIXTURES = {"cifar100": cifar100, "fashion-mnist": fashion_mnist, "stl10": stl10,
            "imagefolder": image_folder, "tiny-imagenet": tiny_imagenet}
FORMATS = {"cifar100": "cifar100", "fashion-mnist": "mnist", "stl10": "stl10",
           "imagefolder": "imagefolder", "tiny-imagenet": "tiny-imagenet"}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {name: write(root) for name, write in FIXTURES.items()}


def data_path(name, fixtures):
    real = {"cifar10": CIFAR10, "mnist": MNIST}
    if name in real:
        if not real[name].exists():
            pytest.skip(f"{name} not found at {real[name]}")
        return real[name]
    return fixtures[name]


# --- the same views as the CLI --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "mnist", *FIXTURES])
def test_the_loader_yields_the_views_of_kinfonce_data_views(name, fixtures, cli, tmp_path):
    path = data_path(name, fixtures)
    seed, epoch = 5, 2
    loader = TwoViewLoader(path, batch_size=6, seed=seed)
    if name in FORMATS:
        assert loader.format == FORMATS[name]
    loader.set_epoch(epoch)
    batches = loader.iter_from(1)
    view1, view2, labels = next(batches)
    indices = loader.batch_indices(1)
    assert len(indices) == 6
    want = cli_views(cli, tmp_path, path, seed, epoch, indices)
    assert view1.shape == (6, loader.channels, loader.size, loader.size)
    assert torch.equal(view1, want["view1"])
    assert torch.equal(view2, want["view2"])
    assert torch.equal(labels, want["labels"])
    assert not torch.equal(view1, view2)


def test_channels_last_bf16_and_moco_views_match_the_cli(fixtures, cli, tmp_path):
    path = fixtures["stl10"]
    loader = TwoViewLoader(path, batch_size=4, seed=1, augment="moco-v2", size=48,
                           dtype=torch.bfloat16, channels_last=True)
    view1, view2, _ = next(iter(loader))
    assert view1.dtype == torch.bfloat16 and view1.shape == (4, 3, 48, 48)
    assert view1.is_contiguous(memory_format=torch.channels_last)
    want = cli_views(cli, tmp_path, path, 1, 0, loader.batch_indices(0), "--augment", "moco-v2",
                     "--size", "48", "--bf16", "--channels-last")
    # The CLI writes the memory order, [N, S, S, C].
    assert torch.equal(view1.permute(0, 2, 3, 1), want["view1"])
    assert torch.equal(view2.permute(0, 2, 3, 1), want["view2"])


def test_epochs_shuffle_and_draw_anew_and_repeat_exactly(fixtures):
    loader = TwoViewLoader(fixtures["cifar100"], batch_size=8, seed=0, val_fraction=0.0)
    assert loader.images == 40 and len(loader) == 5
    first = list(loader)
    assert len(first) == 5
    assert torch.equal(torch.cat([b[0] for b in first]), torch.cat([b[0] for b in loader]))
    order0 = [i for b in range(5) for i in loader.batch_indices(b)]
    assert sorted(order0) == list(range(40))
    loader.set_epoch(1)
    assert [i for b in range(5) for i in loader.batch_indices(b)] != order0
    assert not torch.equal(first[0][0], next(iter(loader))[0])
    # Batches outlive their loader (each tensor owns its Rust buffer).
    keep = first[0][0].clone()
    del loader
    assert torch.equal(first[0][0], keep)
    last = TwoViewLoader(fixtures["cifar100"], batch_size=16, val_fraction=0.0, drop_last=False)
    assert len(last) == 3 and [b[0].shape[0] for b in last] == [16, 16, 8]


# --- sharding -------------------------------------------------------------------------------------

def test_ranks_get_disjoint_slices_whose_union_is_the_global_batch(fixtures):
    path = fixtures["fashion-mnist"]
    whole = TwoViewLoader(path, batch_size=12, seed=4, val_fraction=0.0)
    ranks = [TwoViewLoader(path, batch_size=12, seed=4, val_fraction=0.0, rank=r, world_size=3)
             for r in range(3)]
    for loader in [whole, *ranks]:
        loader.set_epoch(3)
    assert all(len(r) == len(whole) for r in ranks)
    for b, (v1, v2, y) in enumerate(whole):
        slices = [r.batch_indices(b) for r in ranks]
        assert all(len(s) == 4 for s in slices)
        assert len(set().union(*slices)) == 12, "disjoint"
        assert sum(slices, []) == whole.batch_indices(b), "in rank order, the global batch"
        parts = [next(r.iter_from(b)) for r in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), v1)
        assert torch.equal(torch.cat([p[1] for p in parts]), v2)
        assert torch.equal(torch.cat([p[2] for p in parts]), y)


def test_the_rank_comes_from_torch_distributed_when_initialised(fixtures, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    loader = TwoViewLoader(fixtures["cifar100"], batch_size=8, val_fraction=0.0)
    assert (loader.rank, loader.world_size) == (1, 2)
    explicit = TwoViewLoader(fixtures["cifar100"], batch_size=8, val_fraction=0.0, rank=1, world_size=2)
    assert loader.batch_indices(0) == explicit.batch_indices(0)
    assert next(iter(loader))[0].shape[0] == 4


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 1000}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"augment": "byol"}, ValueError, "augment: 'byol'"),
        ({"format": "png"}, ValueError, "format: 'png'"),
        ({"format": "mnist"}, ValueError, "train-images"),
        ({"dtype": torch.float16}, TypeError, "dtype"),
        ({"size": 0}, ValueError, "size"),
        ({"val_fraction": 1.5}, ValueError, "val_fraction"),
        ({"rank": 1}, ValueError, "rank, world_size"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank: 2"),
        ({"batch_size": 8, "rank": 0, "world_size": 3}, ValueError, "batch_size"),
        ({"channels_last": 1}, TypeError, "channels_last"),
        ({"threads": 0}, ValueError, "threads"),
    ],
)
def test_mistakes_raise_errors_naming_the_argument(fixtures, kwargs, error, words):
    with pytest.raises(error) as info:
        TwoViewLoader(fixtures["cifar100"], **kwargs)
    assert words in str(info.value)


def test_a_missing_path_and_a_bad_epoch_are_named(tmp_path, fixtures):
    with pytest.raises(ValueError) as info:
        TwoViewLoader(tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "no such file" in str(info.value)
    with pytest.raises(TypeError, match="path"):
        TwoViewLoader(3)
    loader = TwoViewLoader(fixtures["cifar100"], batch_size=8)
    with pytest.raises(ValueError, match="epoch"):
        loader.set_epoch(-1)
    with pytest.raises(ValueError, match="batch: 9 is out of range"):
        loader.batch_indices(9)
    assert "cifar100" in kinfonce.data.FORMATS and "moco-v2" in kinfonce.data.AUGMENT_PRESETS
