"""Mistakes raise ValueError or TypeError naming the argument; a panic in the engine is a
RuntimeError naming the function; nothing takes the interpreter down."""

import pytest
import torch

import kinfonce
from kinfonce import _native


def views(b=4, d=3, dtype=torch.float32):
    return torch.randn(b, d, dtype=dtype), torch.randn(b, d, dtype=dtype)


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"gamma": 2.5, "tau": 0.2}, "`gamma` = 2.5"),
        ({"gamma": 1.0, "tau": 0.0}, "`tau` = 0"),
        ({"gamma": 1.0, "tau": -1.0}, "`tau` = -1"),
        ({"gamma": 1.0}, "gamma= and tau="),
        ({"gamma": 1.0, "tau": 0.2, "p": 3}, "`p`"),
        ({"preset": "cosine"}, "unknown preset \"cosine\""),
        ({}, "exactly one of"),
        ({"preset": "laplacian", "gamma": 1.0}, "exactly one of"),
        ({"spec": {"loss": "info_nce"}}, "spec: not a loss specification"),
        ({"spec": {"loss": "sum", "parts": [[-1.0, {"type": "exp", "gamma": 1.0, "tau": 0.2}]]}}, "`weight` = -1"),
        ({"spec": {"loss": "info_nce", "kernel": {"type": "arc_cos", "order": 4, "tau": 0.5}}}, "`order` = 4"),
        ({"preset": "laplacian", "pairing": "byol"}, "pairing: 'byol'"),
        ({"preset": "laplacian", "pairing": "clip", "gather": True}, "gather"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(kwargs, words):
    with pytest.raises(ValueError, match=None) as info:
        kinfonce.KernelInfoNCE(**kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "kwargs,words",
    [({"gamma": "one", "tau": 0.2}, "gamma"), ({"spec": 3}, "spec"), ({"preset": "gaussian", "gather": 1}, "gather"), ({"preset": 5}, "preset")],
)
def test_parameters_of_the_wrong_type_raise_type_error_naming_them(kwargs, words):
    with pytest.raises(TypeError) as info:
        kinfonce.KernelInfoNCE(**kwargs)
    assert words in str(info.value)


def test_a_concat_split_outside_the_width_names_split():
    spec = {"loss": "concat", "split": 8, "lambda": 0.5, "first": {"type": "exp", "gamma": 1.0, "tau": 0.2}, "second": {"type": "exp", "gamma": 2.0, "tau": 0.2}}
    with pytest.raises(ValueError, match="`split` = 8"):
        kinfonce.kernel_infonce(*views(d=8), spec=spec)


def test_bad_inputs_name_the_argument():
    loss = kinfonce.KernelInfoNCE("laplacian")
    z1, z2 = views()
    cases = [
        ((z1, z2.double()), TypeError, "z2: dtype torch.float64 differs from z1's torch.float32"),
        ((z1.long(), z2.long()), TypeError, "z1: dtype torch.int64 is not supported"),
        ((z1, z2.numpy()), TypeError, "z2: expected a torch.Tensor"),
        ((z1, z2[0]), ValueError, "z2: expected a 2-D tensor"),
        ((z1, torch.randn(4, 5)), ValueError, "z2 has 5 columns, z1 has 3"),
        ((z1, torch.randn(5, 3)), ValueError, "same number of rows"),
        ((z1[:0], z2[:0]), ValueError, "z1 is 0 x 3"),
        ((z1, z2.to("meta")), ValueError, "z2 is on meta"),
    ]
    for args, error, words in cases:
        with pytest.raises(error) as info:
            loss(*args)
        assert words in str(info.value), (words, str(info.value))
    bad = z1.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="`z1` has a non-finite value NaN at row 2, column 1"):
        loss(bad, z2)


def test_queue_goes_with_moco_only():
    z1, z2 = views()
    with pytest.raises(ValueError, match="queue: the MoCo pairing needs a queue"):
        kinfonce.kernel_infonce(z1, z2, preset="laplacian", pairing="moco")
    with pytest.raises(ValueError, match="queue: only the MoCo pairing"):
        kinfonce.kernel_infonce(z1, z2, torch.randn(6, 3), preset="laplacian")
    with pytest.raises(ValueError, match="queue has 2 columns"):
        kinfonce.kernel_infonce(z1, z2, torch.randn(6, 2), preset="laplacian", pairing="moco")


def test_the_spectral_loss_refuses_other_pairings():
    with pytest.raises(ValueError, match="SimCLR pairing only"):
        kinfonce.kernel_infonce(*views(), spec={"loss": "spectral"}, pairing="clip")


def test_gather_without_a_process_group_is_refused():
    with pytest.raises(ValueError, match="gather: gather=True needs an initialised torch.distributed"):
        kinfonce.kernel_infonce(*views(), preset="laplacian", gather=True)


def test_a_panic_in_the_engine_is_a_runtime_error_naming_the_function():
    with pytest.raises(RuntimeError, match="kinfonce.kernel_infonce: internal error"):
        _native._panic_for_test()
    # The interpreter is still fine and the engine still answers.
    assert torch.isfinite(kinfonce.kernel_infonce(*views(), preset="gaussian"))
